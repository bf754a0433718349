#!/usr/bin/env node
/**
 * The `postcopy` command line. Each subcommand lives in its own file and is loaded only
 * when used, so `postcopy --help` stays instant.
 */
import { Command, Option } from 'commander';
import { PostcopyError } from '../errors.js';

const program = new Command();
program
  .name('postcopy')
  .description('Postcopy live migration engine: migrate, replay and explain migrations (ours or QEMU\'s).')
  .version('0.1.0')
  .showHelpAfterError();

program
  .command('start')
  .description('The main job with good defaults: a verified migration, journaled and replayed')
  .option('--journal <path>', 'journal file', 'postcopy-journal.db')
  .action(async (o: { journal: string }) => {
    const { simulateCommand } = await import('./simulateCommand.js');
    return exit(simulateCommand({ size: '256M', vcpus: '2', workload: 'sequential-increment', seed: '1', journal: o.journal }));
  });

program
  .command('simulate')
  .description('A whole migration in one process on a simulated clock (mock backend), journaled, replayed and verified')
  .option('--size <bytes>', 'guest RAM (e.g. 64M, 1G)', '64M')
  .option('--vcpus <n>', 'vCPUs', '2')
  .addOption(new Option('--workload <name>', 'vCPU access pattern').choices(['sequential-increment', 'random', 'hot-set']).default('sequential-increment'))
  .option('--seed <n>', 'seed of the guest image and the workload', '1')
  .option('--preempt', 'postcopy-preempt: a second channel for urgent pages')
  .option('--huge-pages', 'one 2 MiB huge-page block instead of 4 KiB pages')
  .option('--break-at <fraction>', 'cut the connection once this fraction of postcopy pages was sent, then recover')
  .option('--journal <path>', 'journal file', 'postcopy-sim.db')
  .option('--json', 'print the result as JSON')
  .action(async (o) => {
    const { simulateCommand } = await import('./simulateCommand.js');
    return exit(simulateCommand(o));
  });

program
  .command('replay')
  .description('Replay a journal through a fresh engine and report the first divergence (exit 0 match, 1 divergence, 2 unreadable)')
  .argument('<journal>', 'journal file')
  .option('--to <seq>', 'stop at this sequence number')
  .option('--json', 'print the result as JSON')
  .action(async (path: string, o) => {
    const { replayCommand } = await import('./replayCommand.js');
    return exit(replayCommand(path, o));
  });

program
  .command('report')
  .description('Write one self-contained HTML report of a journal: state timeline, pages received, vCPUs blocked, fault latency (exit 0 written, 2 unreadable journal)')
  .argument('<journal>', 'journal file (an engine run or an imported QEMU trace)')
  .option('-o, --output <file>', 'HTML file to write', 'report.html')
  .option('--title <text>', 'heading of the report (default: names the journal file)')
  .action(async (path: string, o) => {
    const { reportCommand } = await import('./reportCommand.js');
    return exit(reportCommand(path, o));
  });

function exit(code: number): void {
  process.exitCode = code;
}

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof PostcopyError) {
    console.error(`postcopy: ${err.message}`);
    process.exitCode = 2;
    return;
  }
  console.error(err);
  process.exitCode = 70;
});
