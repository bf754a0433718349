/**
 * Issue 20, point 5: command-line conventions. Progress is bounded in a pipe (the finished
 * line once), no bar on TERM=dumb; errors say `postcopy <command>:`; inspect --json has one
 * unit (ms, rounded to the µs); replay of an imported trace checks it and exits 0.
 */
import test from 'ava';
import { createProgress, drawsBar } from '../../src/cli/progress.js';
import { jsonForm } from '../../src/cli/inspectCommand.js';
import { inMs } from '../../src/cli/jsonUnits.js';
import { formatAnalysis } from '../../src/cli/inspectCommand.js';
import { journalSummaryLines } from '../../src/cli/migrateCommand.js';
import { channelCounts, phasesOf } from '../../src/forensics/analysisTypes.js';
import { runSimulatedMigration } from '../../src/io/migration/simulatedMigration.js';
import { formatMs } from '../../src/text.js';
import { analyze, cli, fixture, importRun, tmpPath } from '../forensics/helpers.js';

test.serial('plain progress prints the finished line once however often it is reported', (t) => {
  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  const isTTY = process.stderr.isTTY;
  Object.defineProperty(process.stderr, 'isTTY', { value: false, configurable: true });
  process.stderr.write = ((chunk: string) => (lines.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    const p = createProgress('x', { plainEveryMs: 60_000 });
    p.update(1, 10);
    for (let i = 0; i < 29; i++) p.update(10, 10, { lines: i });
    p.stop();
  } finally {
    process.stderr.write = write;
    Object.defineProperty(process.stderr, 'isTTY', { value: isTTY, configurable: true });
  }
  t.deepEqual(lines, ['x: 100% lines=0\n'], 'no stale first line, the finished line once');
});

test('a bar only on a terminal that can draw one', (t) => {
  t.true(drawsBar(true, 'xterm-256color'));
  t.false(drawsBar(true, 'dumb'));
  t.false(drawsBar(false, 'xterm'));
  t.false(drawsBar(undefined, undefined));
});

test('inspect --json: times in ms rounded to the µs, counts whole, CDF fractions kept', (t) => {
  const out = jsonForm({ durationMs: 1.23456789, count: 7, perVcpuMs: [1.0000004, 2.5], series: { received: [[1.23456, 5]], latencyCdf: [[0.0123456, 0.33333333]], vcpuBlocked: [{ vcpu: 0, intervals: [[1.00001, 2.00049]] }] } });
  t.deepEqual(out, { durationMs: 1.235, count: 7, perVcpuMs: [1, 2.5], series: { received: [[1.235, 5]], latencyCdf: [[0.012, 0.333333]], vcpuBlocked: [{ vcpu: 0, intervals: [[1, 2]] }] } });
});

test('errors name the command: postcopy <command>:', (t) => {
  const missing = tmpPath('missing.db');
  for (const cmd of ['inspect', 'replay', 'report']) {
    const r = cli(cmd, missing, ...(cmd === 'report' ? ['-o', tmpPath('r.html')] : []));
    t.is(r.status, 2, cmd);
    t.regex(r.stderr, new RegExp(`^postcopy ${cmd}: `), cmd);
  }
});

test('replay of an imported trace says what it checks and exits 0', async (t) => {
  const { path } = await importRun('fail', { srcTrace: fixture('fail', 'src-trace.log.gz'), stderr: fixture('fail', 'dst-stdout.txt') });
  const r = cli('replay', path, '--quiet');
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /imported QEMU trace records what QEMU did, not engine inputs/);
  t.regex(r.stdout, /every running total reproduced/);
  t.is(r.stderr, '', '--quiet: no progress');
  const j = cli('replay', path, '--json');
  t.like(JSON.parse(j.stdout), { ok: true, source: 'qemu-trace', checked: { readable: true, blocktimeReproduced: true } });
});

test("migrate's summary gives inspect's figures, in inspect's words, and ends with next:", (t) => {
  const path = tmpPath('summary-sim.db');
  runSimulatedMigration({ journalPath: path, sizeBytes: 4 << 20, vcpus: 2, workload: 'sequential-increment', seed: 7, preempt: true, breakAt: 0.3, precopyFraction: 0.1, pagesPerTick: 4, accessesPerTick: 64 });
  const a = analyze(path);
  const summary = journalSummaryLines(a, 1234);
  const inspect = formatAnalysis(a);
  const n = (x: number) => x.toLocaleString('en-US');
  const ph = phasesOf(a);
  for (const figure of [formatMs(ph.precopyMs!), formatMs(ph.postcopyMs!), n(a.pages.placed), n(a.pages.precopy), `${n(a.pages.zero)} zero-filled locally`, channelCounts(a.pages.byChannel), formatMs(a.faults.p50Ms), formatMs(a.faults.p99Ms), ...a.blocktime.exact.perVcpuMs.map((ms) => formatMs(ms))]) {
    t.true(summary.some((l) => l.includes(figure)), `summary has ${figure}`);
    t.true(inspect.includes(figure), `inspect has ${figure}`);
  }
  t.regex(channelCounts(a.pages.byChannel), /^main [\d,]+, preempt [\d,]+$/);
  t.regex(summary[summary.length - 1]!, /^next: postcopy inspect /);
});

test('JSON results in one unit: ns and µs figures become ms with an Ms suffix, rounded to the µs', (t) => {
  t.deepEqual(inMs({ totalNs: 1_234_567, perVcpuBlockedNs: [1e6, 2_500_000], offsetUs: 1500.4, wallMs: 3.14159, count: 3, nested: [{ p50Ns: 999 }] }),
    { totalMs: 1.235, perVcpuBlockedMs: [1, 2.5], offsetMs: 1.5, wallMs: 3.142, count: 3, nested: [{ p50Ms: 0.001 }] });
});

test('simulate --json has no ns or µs keys left', (t) => {
  const r = cli('simulate', '--size', '4M', '--journal', tmpPath('units.db'), '--json');
  t.is(r.status, 0, r.stderr);
  t.false(/"\w+(Ns|Us)":/.test(r.stdout), 'every duration ends in Ms');
});
