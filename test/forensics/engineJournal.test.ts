/**
 * Inspect of engine journals: a simulated migration with a break agrees with the engine's
 * own figures (FX_BLOCKTIME, stats); a destination whose source died mid-postcopy shows
 * its outstanding requests with their ages; refused commands are listed with the input.
 */
import test from 'ava';
import { unpack } from 'msgpackr';
import { MigCommand } from '../../src/engine/constants.js';
import { EventKind } from '../../src/engine/events.js';
import type { BlocktimeReport } from '../../src/engine/blocktime.js';
import { encodeAdvise, hostPageSizeSummary } from '../../src/engine/wire.js';
import { WrongStateError } from '../../src/errors.js';
import { runSimulatedMigration, type SimulatedMigrationOptions } from '../../src/io/migration/simulatedMigration.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import { analyze, cli, handDriven, tmpPath } from './helpers.js';

/** The engine's FX_BLOCKTIME report, read back from the journal. */
function blocktimeRecord(path: string): BlocktimeReport {
  const r = JournalReader.open(path);
  try {
    const recs = [...r.records()].filter((e) => e.kind === EventKind.FX_BLOCKTIME);
    if (recs.length !== 1) throw new Error(`${recs.length} FX_BLOCKTIME records`);
    return unpack(recs[0]!.payload!) as BlocktimeReport;
  } finally {
    r.close();
  }
}

const SIMULATIONS: Array<[string, Omit<SimulatedMigrationOptions, 'journalPath'>]> = [
  ['4 KiB pages, preempt, a break', { sizeBytes: 4 << 20, vcpus: 2, workload: 'sequential-increment', seed: 7, preempt: true, breakAt: 0.3, precopyFraction: 0.1, pagesPerTick: 4, accessesPerTick: 64 }],
  ['random access, 3 vCPUs, a break', { sizeBytes: 4 << 20, vcpus: 3, workload: 'random', seed: 11, breakAt: 0.5, precopyFraction: 0.2, pagesPerTick: 4, accessesPerTick: 64 }],
  ['2 MiB huge pages, a break', { sizeBytes: 16 << 20, hostPageSize: 2 << 20, vcpus: 2, workload: 'hot-set', seed: 3, breakAt: 0.4 }],
];

for (const [name, opts] of SIMULATIONS) {
  test(`simulated migration (${name}): the analysis agrees with the engine's own figures`, (t) => {
    const path = tmpPath('sim.db');
    const sim = runSimulatedMigration({ ...opts, journalPath: path });
    t.is(sim.status, 'completed');
    const a = analyze(path);
    t.is(a.journal.source, 'engine');
    t.is(a.status, 'completed');
    t.is(a.postcopyState, 'END');
    t.is(a.vcpus, opts.vcpus);
    t.deepEqual(a.requests.outstanding, []);
    // A pause with its duration, and why it happened.
    t.is(a.pauses.length, 1);
    t.true(a.pauses[0]!.durationMs! > 0);
    t.is(a.pauses[0]!.endMs! - a.pauses[0]!.startMs, a.pauses[0]!.durationMs!);
    t.regex(a.pauses[0]!.reason!, /IN_CHANNEL_BROKEN/);
    // Blocktime: exactly the engine's FX_BLOCKTIME record, both modes.
    const bt = blocktimeRecord(path);
    t.is(a.blocktime.qemu.totalMs, bt.qemu.totalMs);
    t.deepEqual(a.blocktime.qemu.perVcpuMs, bt.qemu.perVcpuMs);
    t.is(a.blocktime.exact.totalMs, bt.exact.totalNs / 1e6);
    t.deepEqual(a.blocktime.exact.perVcpuMs, bt.exact.perVcpuBlockedNs.map((ns) => ns / 1e6));
    t.deepEqual(a.blocktime.exact.perVcpuFaults, bt.exact.perVcpuFaults);
    t.deepEqual(bt, JSON.parse(JSON.stringify(sim.blocktime)) as BlocktimeReport);
    // Latencies: the same samples as the engine's histogram.
    t.is(a.faults.maxMs, bt.exact.latency.maxNs / 1e6);
    // Pages and requests: the engine's counters.
    const s = sim.stats;
    t.is(a.faults.count, s.faults);
    t.is(a.requests.count, s.requests);
    t.is(a.requests.resent, s.resends);
    t.is(a.pages.placed, s.hostPagesPlaced);
    t.is(a.pages.zero, s.zeroPlaced);
    t.is(a.pages.precopy, s.precopyPages);
    t.deepEqual(a.pages.byChannel, { '0': s.placedByChannel[0], '1': s.placedByChannel[1] });
    t.is(a.errors.length, s.errors);
    t.true(a.pages.discardedRanges > 0);
    // Series stay within their bounds and end where the counts end.
    const total = (opts.sizeBytes / 4096);
    t.is(a.series.received.at(-1)![1], s.precopyPages + s.hostPagesPlaced * ((opts.hostPageSize ?? 4096) / 4096));
    t.true(a.series.received.at(-1)![1] >= total);
  });
}

const MS = 1e6;

test('a source killed mid-postcopy: the outstanding requests with their ages, the pause still open, refused commands with their input', (t) => {
  const path = tmpPath('killed.db');
  const { engine, writer, host } = handDriven(path, 64, [101, 102]);
  t.throws(() => engine.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0), 0.5 * MS), { instanceOf: WrongStateError });
  engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary([4096]), targetPageSize: 4096 }), 1 * MS);
  engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), 2 * MS);
  engine.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0), 3 * MS);
  engine.fault(host + 0x1000 + 8, 101, 10 * MS); // vCPU 0 on page 1
  engine.fault(host + 0x5000, 102, 12 * MS); // vCPU 1 on page 5
  engine.fault(host + 0x1000, 102, 13 * MS); // vCPU 1 again, page 1: sent again
  engine.fault(host + 0x9000, 999, 14 * MS); // not a vCPU, page 9
  engine.page(0, 0, 0x5000, false, new Uint8Array(4096), 0, 15 * MS); // page 5 arrives
  engine.channelBroken(0, 'the source was killed', 20 * MS);
  writer.close();

  const a = analyze(path);
  t.is(a.status, 'postcopy-paused');
  t.is(a.postcopyState, 'RUNNING');
  t.deepEqual(
    a.requests.outstanding.map((o) => [o.block, o.offset, o.address, o.requestedAtMs, o.ageMs]),
    [
      ['pc.ram', 0x1000, host + 0x1000, 10, 10],
      ['pc.ram', 0x9000, host + 0x9000, 14, 6],
    ],
  );
  t.is(a.requests.count, 3);
  t.is(a.requests.resent, 1);
  t.is(a.pauses.length, 1);
  t.like(a.pauses[0], { startMs: 20, endMs: null, durationMs: null });
  t.regex(a.pauses[0]!.reason!, /the source was killed/);
  // Page 5 was the only fault served: 3 ms after vCPU 1's fault; the others still wait at the end (20 ms), counted at their age.
  t.deepEqual(a.faults.slowest.filter((s) => s.unanswered !== true).map((s) => [s.offset, s.vcpu, s.latencyMs]), [[0x5000, 1, 3]]);
  t.deepEqual(a.faults.slowest.filter((s) => s.unanswered === true).map((s) => [s.offset, s.vcpu, s.latencyMs]), [[0x1000, 0, 10], [0x1000, 1, 7], [0x9000, -1, 6]]);
  t.is(a.faults.count, 4);
  t.is(a.faults.timed, 4);
  t.is(a.faults.unanswered, 3);
  t.is(a.blocktime.exact.perVcpuMs[1], 8); // vCPU 1: 12→13 ms, then re-faulted elsewhere at 13 ms and still blocked at the end (20 ms)
  t.deepEqual(a.blocktime.exact.stillBlocked, [{ vcpu: 0, sinceMs: 10 }, { vcpu: 1, sinceMs: 13 }]);
  t.deepEqual(a.blocktime.exact.perVcpuFaults, [1, 2]);
  // The refused RUN, named with its input.
  t.is(a.errors.length, 1);
  t.like(a.errors[0], { code: 'WRONG_STATE', input: 'IN_COMMAND POSTCOPY_RUN', causeSeq: 0 });
});

test('inspect on the command line: outstanding requests first for a hung migration, --json with the keys the issue lists', (t) => {
  const path = tmpPath('killed-cli.db');
  const { engine, writer, host } = handDriven(path, 64, [101, 102]);
  engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary([4096]), targetPageSize: 4096 }), 1 * MS);
  engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), 2 * MS);
  engine.fault(host + 0x3000, 101, 10 * MS);
  engine.channelBroken(0, 'gone', 30 * MS);
  writer.close();

  const text = cli('inspect', path);
  t.is(text.status, 0, text.stderr);
  const out = text.stdout;
  t.regex(out, /status postcopy-paused/);
  const outstandingAt = out.indexOf('Outstanding requests');
  t.true(outstandingAt > 0 && outstandingAt < out.indexOf('Timeline'));
  t.regex(out, /#\d+\s+pc\.ram\s+0x3000\s+0x[0-9a-f]+\s+10\.000 ms\s+20\.0 ms/);

  const json = cli('inspect', path, '--json');
  t.is(json.status, 0, json.stderr);
  const a = JSON.parse(json.stdout) as Record<string, unknown>;
  for (const key of ['status', 'postcopyState', 'vcpus', 'blocktime', 'faults', 'requests', 'pages', 'pauses']) t.true(key in a, key);
  t.like(a, {
    status: 'postcopy-paused',
    vcpus: 2,
    blocktime: { qemu: { totalMs: 0 }, exact: { totalMs: 0 } },
    faults: { count: 1 },
    requests: { count: 1, outstanding: [{ block: 'pc.ram', offset: 0x3000, ageMs: 20 }] },
    pages: { placed: 0, zero: 0, byChannel: { '0': 0, '1': 0 } },
  });
  const bt = a.blocktime as Record<'qemu' | 'exact', { perVcpuMs: unknown }>;
  t.deepEqual([bt.qemu.perVcpuMs, bt.exact.perVcpuMs], [[0, 0], [20, 0]], 'vCPU 0 still blocked at the end: its wait runs to the end of the journal');
  const f = a.faults as Record<string, unknown>;
  for (const key of ['p50Ms', 'p99Ms', 'maxMs']) t.is(typeof f[key], 'number', key);
  t.like((a.pauses as unknown[])[0], { endMs: null });
});

test('inspect of a destination whose main stream ended while the preempt channel still delivered: it says what postcopy waits for', (t) => {
  const path = tmpPath('waiting-for-preempt.db');
  const { engine, writer, host } = handDriven(path, 64, [101], {}, true);
  engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary([4096]), targetPageSize: 4096 }), 1 * MS);
  engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), 2 * MS);
  engine.channelConnected(1, 3 * MS);
  engine.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0), 4 * MS);
  engine.fault(host + 0x3000, 101, 10 * MS);
  engine.endOfStream(0, 12 * MS);
  writer.close();

  const a = analyze(path);
  t.is(a.status, 'postcopy-active');
  t.is(a.postcopyState, 'RUNNING');
  t.like(a.streamEnds[0], { tMs: 12 });
  t.is(a.streamEnds[1], null);
  const text = cli('inspect', path);
  t.is(text.status, 0, text.stderr);
  t.regex(text.stdout, /!! the main stream ended at #\d+ \(12\.000 ms\) but postcopy never did: it waits for the preempt channel, whose stream never ended/);
  t.regex(text.stdout, /Outstanding requests \(requested, never placed\): 1/);
});
