#!/usr/bin/env node
/**
 * The `postcopy` command line. Each subcommand lives in its own file and is loaded only
 * when used, so `postcopy --help` stays instant.
 */
import { Command, CommanderError, Option } from 'commander';
import { PostcopyError } from '../errors.js';
import { installInterruptHandler } from './interrupt.js';
import { EXIT_CODES_HELP, ExitCode, injectInternalError, installLastResort, reportInternalError, setCurrentCommand, setCurrentJournal } from './lastResort.js';
import { PACKAGE_VERSION } from '../paths.js';
import { DEFAULT_PREFETCH_PAGES } from './options.js';
import { RECEIVE_HELP } from './receiveHelp.js';

const program = new Command();
program
  .name('postcopy')
  .description('Postcopy live migration engine: migrate, replay and explain migrations (ours or QEMU\'s).')
  .version(PACKAGE_VERSION)
  .showHelpAfterError()
  // Commander's own errors (unknown option, missing argument, bad choice) throw, and exit 2 below.
  .exitOverride()
  .addHelpText('afterAll', EXIT_CODES_HELP)
  .hook('preAction', (_root, action) => {
    setCurrentCommand(action.name());
    // A command that reads a journal names it in an internal error's line.
    if (action.registeredArguments[0]?.name() === 'journal' && typeof action.args[0] === 'string') setCurrentJournal(action.args[0]);
    injectInternalError();
  });
installLastResort();
installInterruptHandler();

/** `--prefetch`, shared by migrate, start and simulate. */
function prefetchOption(): Option {
  return new Option('--prefetch <pages>', 'largest window of 4 KiB pages the source sends ahead of a vCPU that faults its way forward (0 = none)').default(String(DEFAULT_PREFETCH_PAGES));
}

/** The options of `migrate`, shared by `start` (which only changes nothing: good defaults). */
function migrateOptions(cmd: Command): Command {
  return cmd
    .option('--size <bytes>', 'guest RAM (e.g. 256M, 1G)', '256M')
    .option('--vcpus <n>', 'vCPU threads on the destination', '2')
    .option('--huge-pages', 'back guest RAM with 2 MiB huge pages (one host page = 512 target pages)')
    .addOption(new Option('--workload <name>', 'what the destination vCPUs do').choices(['sequential-increment', 'random', 'hot-set', 'bootblock', 'bootblock-random']).default('sequential-increment'))
    .option('--bandwidth <bytes-per-second>', 'cap on the wire, e.g. 100M (0 = unlimited); requested pages and the pages prefetched after them go at once and count against it', '0')
    .option('--max-postcopy-bandwidth <bytes-per-second>', 'cap on postcopy only, from the switch on, as QEMU\'s max-postcopy-bandwidth, e.g. 32M (0 = none): it holds back the background push; requested pages go past it (with --preempt also uncharged), the pages prefetched after them wait for it', '0')
    .option('--dirty-rate <pages-per-second>', 'pages the guest dirties per second on the source during precopy', '40000')
    .option('--preempt', 'postcopy-preempt: urgent pages on a second channel')
    .option('--journal <path>', 'destination journal file (default: postcopy-journal.db, or the next free postcopy-journal-N.db: an earlier run\'s journal is kept)')
    .option('--force', 'replace the --journal file if it exists')
    .addOption(new Option('--backend <kind>', 'destination backend').choices(['auto', 'uffd', 'mock']).default('auto'))
    .addOption(new Option('--fault-reader <mode>', 'who reads the userfault fd: loop (the JavaScript thread, also between the pages of a read) or thread (a reader thread)').choices(['thread', 'loop']).default('loop'))
    .option('--vcpu-nice <n>', 'nice value of the destination vCPU threads, so the fault path wins a core (0 = same priority)', '5')
    .addOption(prefetchOption())
    .option('--seed <n>', 'seed of the guest image and the workload', '1')
    .option('--break-at <fraction>', 'cut the connection once this fraction of postcopy pages was sent and the destination listens; it recovers')
    .option('--tap-journal <file>', 'put postcopy tap between the source and the destination and journal what crosses the wire there (the instrument used on QEMU migrations)')
    .option('--kill-source-at <fraction>', 'SIGKILL the source once this fraction of postcopy pages was sent and the destination listens; the destination stays paused')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no progress bar or progress lines');
}

migrateOptions(program.command('start').description('The main job with good defaults: a real, verified postcopy migration between two processes (same options as migrate)'))
  .action(async (o) => {
    const { migrateCommand } = await import('./migrateCommand.js');
    return exit(await migrateCommand(o));
  });

migrateOptions(program.command('migrate').description('A real postcopy migration between two processes on 127.0.0.1: userfaultfd, vCPU threads, journal, verified memory (exit 0 only when verified, 3 when left paused)'))
  .action(async (o) => {
    const { migrateCommand } = await import('./migrateCommand.js');
    return exit(await migrateCommand(o));
  });

program
  .command('simulate')
  .description('A whole migration in one process on a simulated clock (mock backend), journaled, replayed and verified')
  .option('--size <bytes>', 'guest RAM (e.g. 64M, 1G)', '64M')
  .option('--vcpus <n>', 'vCPUs', '2')
  .addOption(new Option('--workload <name>', 'vCPU access pattern').choices(['sequential-increment', 'random', 'hot-set', 'bootblock', 'bootblock-random']).default('sequential-increment'))
  .option('--seed <n>', 'seed of the guest image and the workload', '1')
  .option('--preempt', 'postcopy-preempt: a second channel for urgent pages')
  .option('--huge-pages', 'one 2 MiB huge-page block instead of 4 KiB pages')
  .option('--break-at <fraction>', 'cut the connection once this fraction of postcopy pages was sent, then recover')
  .addOption(prefetchOption())
  .option('--journal <path>', 'journal file (default: postcopy-sim.db, or the next free postcopy-sim-N.db: an earlier run\'s journal is kept)')
  .option('--force', 'replace the --journal file if it exists')
  .option('--quiet', 'no progress bar or progress lines')
  .option('--json', 'print the result as JSON')
  .action(async (o) => {
    const { simulateCommand } = await import('./simulateCommand.js');
    return exit(simulateCommand(o));
  });

program
  .command('receive')
  .description('Our destination for a real QEMU source: listen, decode QEMU\'s stream into the engine (userfaultfd, vCPU threads, journal), recover after a break (exit 0 completed, 3 left paused, 1 failed, 2 refused input)')
  .requiredOption('--listen <host:port>', 'where the QEMU source connects (migrate uri=tcp:HOST:PORT)')
  .option('--recover-listen <host:port>', 'also listen here once paused (like QEMU\'s migrate-recover URI); the source resumes with migrate uri=tcp:… resume=true')
  .option('--preempt', 'the source has postcopy-preempt on: its second connection is the preempt channel')
  .option('--journal <path>', 'journal file', 'postcopy-receive.db')
  .addOption(new Option('--workload <name>', 'what the vCPU threads do: read their share of guest RAM (read-bootblock*: the bootblock guest walks) (never write, so memory stays what the source sent)').choices(['read-sequential', 'read-random', 'read-hot-set', 'read-bootblock', 'read-bootblock-random']).default('read-sequential'))
  .option('--vcpus <n>', 'vCPU threads', '2')
  .option('--seed <n>', 'seed of the read-random / read-hot-set walks', '1')
  .option('--vcpu-nice <n>', 'nice value of the vCPU threads (0 = same priority)', '5')
  .option('--max-memory <bytes>', 'refuse a MEM_SIZE above this before allocating (default: half of physical RAM)')
  .option('--pause-timeout <seconds>', 'give up (exit 3) when paused this long without the source resuming', '30')
  .option('--device-state <file>', 'write the device state from PACKAGED here (its size and SHA-256 go to the journal either way)')
  .option('--save-memory <dir>', 'at the end, write guest memory there: one file per RAM block (<idstr>.bin, / as _) and blocks.json')
  .addOption(new Option('--fault-reader <mode>', 'who reads the userfault fd').choices(['thread', 'loop']).default('loop'))
  .option('--json', 'print the summary as JSON (status, requests, pagesByChannel, blocktime, deviceStateBytes, …)')
  .option('--quiet', 'no progress lines on stderr')
  .addHelpText('after', () => RECEIVE_HELP)
  .action(async (o) => {
    const { receiveCommand } = await import('./receiveCommand.js');
    return exit(await receiveCommand(o));
  });

program
  .command('tap')
  .description('Relay a live QEMU → QEMU migration and journal what crosses it: commands, pages per channel, requests, breaks and resumes (runs until the migration ends or SIGINT; exit 0 journal committed, 2 bad options)')
  .requiredOption('--listen <host:port>', 'where the source connects (migrate uri=tcp:HOST:PORT); port 0 picks one (printed)')
  .requiredOption('--to <host:port>', 'the destination QEMU (its -incoming tcp:HOST:PORT)')
  .option('--resume-to <host:port>', 'where connections go once the first (main) connection closed: the destination\'s migrate-recover URI')
  .option('--journal <path>', 'journal file', 'postcopy-tap.db')
  .option('--force', 'replace the --journal file if it exists')
  .option('--json', 'print the listening address and the summary as JSON lines')
  .option('--quiet', 'no progress lines on stderr')
  .action(async (o) => {
    const { tapCommand } = await import('./tapCommand.js');
    return exit(await tapCommand(o));
  });

program
  .command('replay')
  .description('Replay a journal through a fresh engine and report the first divergence (exit 0 match, 1 divergence, 2 unreadable); an imported QEMU trace is checked instead (its analysis and QEMU\'s blocktime replay)')
  .argument('<journal>', 'journal file')
  .option('--to <seq>', 'stop at this sequence number')
  .option('--quiet', 'no progress bar or progress lines')
  .option('--json', 'print the result as JSON')
  .action(async (path: string, o) => {
    const { replayCommand } = await import('./replayCommand.js');
    return exit(replayCommand(path, o));
  });

program
  .command('import-qemu')
  .description('Import a QEMU 7.2 destination trace (log backend, .log or .log.gz) into a journal (exit 0 written, 2 not a trace or unreadable)')
  .argument('<dst-trace>', "the destination's trace log")
  .option('--src <src-trace>', "the source's trace log, merged in by time as notes")
  .option('--stderr <file>', "QEMU's stderr on the destination (error_report lines such as 'Detected IO failure'), merged in by time as notes")
  .option('--threads <threads.json>', 'TID -> thread names (default: threads.json beside the trace, if any)')
  .option('--query-migrate <file>', "the destination's query-migrate answer (JSON) after the run: QEMU's own blocktime figures, shown beside the trace's replay (default: query-migrate-dst.json beside the trace, if any)")
  .requiredOption('-o, --output <journal>', 'journal file to write')
  .option('--force', 'replace an existing journal')
  .option('--json', 'print the import summary as JSON')
  .option('--quiet', 'no progress bar or progress lines')
  .action(async (path: string, o) => {
    const { importCommand } = await import('./importCommand.js');
    return exit(await importCommand(path, o));
  });

program
  .command('inspect')
  .description('Explain a journal, ours or an imported QEMU trace: outstanding requests, timeline, pauses, blocktime, latencies, pages, errors (exit 0, 2 unreadable)')
  .argument('<journal>', 'journal file')
  .option('--slowest <n>', 'how many of the slowest faults to list', '20')
  .option('--json', 'print the analysis as one JSON object')
  .option('--quiet', 'no progress bar or progress lines')
  .action(async (path: string, o) => {
    const { inspectCommand } = await import('./inspectCommand.js');
    return exit(inspectCommand(path, o));
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

program
  .command('salvage')
  .description('Copy every readable event of a damaged journal (sound segments, then its crash tail) into a new journal, saying what was kept and dropped; the input is never changed (exit 0 kept some, 1 none, 2 unreadable or refused)')
  .argument('<journal>', 'journal file to salvage')
  .requiredOption('-o, --output <journal>', 'new journal file to write (never the input)')
  .option('--force', 'replace an existing output file')
  .option('--json', 'print the result as JSON')
  .action(async (path: string, o) => {
    const { salvageCommand } = await import('./salvageCommand.js');
    return exit(salvageCommand(path, o));
  });

program
  .command('export')
  .description('Export journals (files, or folders searched for *.db) to Parquet tables for DuckDB, Spark or Trino (docs/parquet.md); an unreadable journal is listed and skipped (exit 0 written, 2 nothing exportable or refused)')
  .argument('<journals...>', 'journal files and folders of journals')
  .requiredOption('--parquet <folder>', 'folder to write: one sub-folder of part-*.parquet files per table')
  .option('--force', 'replace the Parquet files of an earlier export in that folder')
  .option('--rows-per-part <n>', 'event rows held in memory before a part file is written (the memory bound)', '500000')
  .option('--jobs <n>', 'processes that export at once, each with a share of the journals (its own memory bound)', '1')
  .option('--json', 'print the export summary as JSON')
  .option('--quiet', 'no progress bar or progress lines')
  .action(async (paths: string[], o) => {
    const { exportCommand } = await import('./exportCommand.js');
    return exit(await exportCommand(paths, o));
  });

program
  .command('fleet')
  .description('Answer questions about many migrations with DuckDB over an export\'s Parquet files: a summary, the worst, failures and pauses by cause, percentiles by a column, or your own SQL (exit 0 answered, 2 usage, no export or a refused query)')
  .argument('<folder>', 'the folder postcopy export --parquet wrote')
  .option('--worst <n>', 'the n worst migrations (by --by)')
  .addOption(new Option('--by <figure>', 'what --worst ranks by: exact blocktime, or the served-request (request → placement) p99').choices(['blocktime', 'p99']))
  .option('--causes', 'migrations that did not complete, and pauses, grouped by cause')
  .option('--group-by <column>', 'percentiles of blocktime and latency across migrations, per value of a migrations column (e.g. capability_set, qemu_version, host, source)')
  .option('--sql <query>', 'run a query; the views are named like the tables: migrations, blocks, state_changes, faults, requests, pages, pauses, errors')
  .option('--json', 'print the answer as JSON: { folder, question, columns, rows }')
  .action(async (folder: string, o) => {
    const { fleetCommand } = await import('./fleetCommand.js');
    return exit(await fleetCommand(folder, o));
  });

function exit(code: number): void {
  process.exitCode = code;
}

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // Already printed by commander; --help and --version are no errors.
    process.exitCode = err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    return;
  }
  if (err instanceof PostcopyError) {
    console.error(`postcopy${commandName()}: ${err.message}`);
    process.exitCode = ExitCode.USAGE;
    return;
  }
  reportInternalError(err);
});

function commandName(): string {
  const name = program.args[0];
  return name && program.commands.some((c) => c.name() === name) ? ` ${name}` : '';
}
