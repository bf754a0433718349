/**
 * Acceptance (issue 7, blocktime): replaying the blocktime lines of the real QEMU 7.2
 * destination traces through the qemu-mode model reproduces QEMU's own query-migrate
 * figures and every running total printed on the end lines; the exact mode reports at
 * least QEMU's per-vCPU figures. Then small hand-built traces, one per 7.2 artefact.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { LineProblem, parseTraceLine, readTrace } from '../../../src/io/qemu/qemuTrace.js';
import {
  BLOCKTIME_REPLAY_EVENTS,
  TraceBlocktimeReplay,
  type BlocktimeReplayOptions,
  type BlocktimeReplayResult,
} from '../../../src/engine/traceBlocktimeReplay.js';
import { replayTraceBlocktime } from '../../../src/io/qemu/qemuTraceBlocktime.js';
import { fixture } from '../../fixtures.js';

interface QueryMigrate {
  status: string;
  'postcopy-blocktime'?: number;
  'postcopy-vcpu-blocktime'?: number[];
}

function queryMigrate(run: string): QueryMigrate {
  return JSON.parse(readFileSync(fixture(run, 'query-migrate-dst.json'), 'utf8')) as QueryMigrate;
}

/** Each capture is replayed once and shared by the tests that read it. */
const replays = new Map<string, ReturnType<typeof replayTraceBlocktime>>();
function replayRun(run: string): ReturnType<typeof replayTraceBlocktime> {
  let r = replays.get(run);
  if (r === undefined) {
    r = replayTraceBlocktime(fixture(run, 'dst-trace.log.gz'));
    replays.set(run, r);
  }
  return r;
}

for (const run of ['plain', 'preempt']) {
  test(`${run}: QEMU's total exactly, per-vCPU within 1 ms, every running total on the end lines`, async (t) => {
    const q = queryMigrate(run);
    const r = await replayRun(run);
    t.is(r.status, 'completed');
    t.is(r.qemu.totalMs, q['postcopy-blocktime']!);
    t.is(r.reportedTotalMs, q['postcopy-blocktime']!);
    const expected = q['postcopy-vcpu-blocktime']!;
    t.is(r.qemu.perVcpuMs.length, expected.length);
    r.qemu.perVcpuMs.forEach((ms, v) => t.true(Math.abs(ms - expected[v]!) <= 1, `vCPU ${v}: ${ms} vs ${expected[v]}`));
    t.is(r.totalMismatches, 0, JSON.stringify(r.mismatches));
    t.is(r.affectedMismatches, 0, JSON.stringify(r.mismatches));
    t.is(r.endLines, r.placements); // one end line per placed page
    t.is(r.read.malformedCount, 0);
  });

  test(`${run}: the exact mode reports at least QEMU's per-vCPU blocktime`, async (t) => {
    const q = queryMigrate(run);
    const r = await replayRun(run);
    r.exact.perVcpuBlockedMs.forEach((ms, v) => t.true(ms >= q['postcopy-vcpu-blocktime']![v]!, `vCPU ${v}: ${ms}`));
    t.true(r.exact.totalMs >= r.qemu.totalMs);
    t.is(r.exact.blockedNow, 0);
    t.true(r.exact.latency.count > 0 && r.exact.latency.p99Ns <= r.exact.latency.maxNs);
  });
}

test('plain and preempt: the already-received races the README counts (4 and 5) are the ones modelled', async (t) => {
  t.is((await replayRun('plain')).races.alreadyReceivedBegin, 4);
  t.is((await replayRun('preempt')).races.alreadyReceivedBegin, 5);
});

test('fail: status postcopy-paused; the total at the failure is the last end line\'s, 626 ms', async (t) => {
  const q = queryMigrate('fail');
  const r = await replayRun('fail');
  t.is(r.status, q.status);
  t.is(r.status, 'postcopy-paused');
  t.is(r.reportedTotalMs, null);
  t.is(r.qemu.totalMs, r.lastEndTotalMs!);
  t.is(r.qemu.totalMs, 626);
  t.is(r.totalMismatches, 0);
  t.is(r.affectedMismatches, 0);
  t.is(r.exact.blockedNow, 2); // the two requests never resolved
  r.exact.perVcpuBlockedMs.forEach((ms, v) => t.true(ms >= r.qemu.perVcpuMs[v]!));
});

test('streaming once (running clock estimate, default window) reproduces the same figures', async (t) => {
  const path = fixture('plain', 'dst-trace.log.gz');
  const twoPass = await replayRun('plain');
  const replay = new TraceBlocktimeReplay({ vcpuCount: 2 });
  await readTrace(path, (e) => replay.push(e), { only: BLOCKTIME_REPLAY_EVENTS });
  const once = replay.finish();
  t.is(once.qemu.totalMs, twoPass.qemu.totalMs);
  t.deepEqual(once.qemu.perVcpuMs, twoPass.qemu.perVcpuMs);
  t.is(once.totalMismatches, 0);
  t.is(once.clockOffsetUs, twoPass.clockOffsetUs);
});

test('the vCPU count comes from threads.json, or must be given', async (t) => {
  const r = await replayTraceBlocktime(fixture('fail', 'dst-trace.log.gz'), { threadsPath: fixture('plain', 'threads.json') });
  t.is(r.vcpuCount, 2);
  await t.throwsAsync(replayTraceBlocktime(fixture('fail', 'dst-trace.log.gz'), { threadsPath: '/nonexistent/threads.json' }), {
    message: /vCPU count/,
  });
});

// ---------------------------------------------------------------------------
// Hand-built traces. Times are µs after a whole second; QEMU's clock offset is set by
// the first begin (its line comes `lag` µs after its ms started).

const SEC = 1795337949;
const at = (us: number): string => `${SEC + Math.floor(us / 1e6)}.${String(us % 1e6).padStart(6, '0')}`;
const hex = (n: number): string => '0x' + n.toString(16);
const DD = '0x55fc57c16b80';
const begin = (us: number, addr: number, ms: number, cpu: number, received = 0): string =>
  `15864@${at(us)}:mark_postcopy_blocktime_begin addr: ${hex(addr)}, dd: ${DD}, time: ${received ? 0 : ms}, cpu: ${cpu}, already_received: ${received}`;
const end = (us: number, addr: number, total: number, affected: number): string =>
  `15865@${at(us)}:mark_postcopy_blocktime_end addr: ${hex(addr)}, dd: ${DD}, time: ${total}, affected_cpu: ${affected}`;
const place = (us: number, addr: number): string => `15865@${at(us)}:postcopy_place_page host=${hex(addr)}`;

const A = 0x7ffa0f8a4000;
const B = 0x7ffa194dc000;
const C = 0x7ffa0f8a5000;
const X = 0x7ffa104d5000;
const Y = 0x7ffa104d6000;

function replayLines(lines: string[], opts: BlocktimeReplayOptions): BlocktimeReplayResult {
  const replay = new TraceBlocktimeReplay(opts);
  lines.forEach((text, i) => {
    const e = parseTraceLine(text, i + 1);
    if (e === null || e instanceof LineProblem) throw new Error(`bad test line ${text}`);
    replay.push(e);
  });
  return replay.finish();
}

test('artefact 1, lost interval: a begin overwrites the fault before its end, and the interval is dropped', (t) => {
  const r = replayLines(
    [
      begin(10_250, A, 10, 0),
      begin(11_250, B, 11, 0), // vCPU 0 was woken by the copy of A and faulted on B first
      end(11_300, A, 0, 0), // finds nobody
      place(11_301, A),
      end(13_300, B, 2, 1), // one vCPU: all down from 11 to 13
      place(13_301, B),
    ],
    { vcpuCount: 1 },
  );
  t.deepEqual(r.qemu.perVcpuMs, [2]);
  t.is(r.qemu.totalMs, 2);
  t.is(r.totalMismatches + r.affectedMismatches, 0);
  t.deepEqual(r.races, { alreadyReceivedBegin: 0, endBeforeBeginStore: 0 });
  // Exact mode keeps the first interval, closed when vCPU 0 faulted again.
  t.is(r.exact.closedByRefault, 1);
  t.deepEqual(r.exact.perVcpuBlockedNs, [1000_000 + 2051_000]);
});

/** vCPU 1 stays blocked on B throughout; vCPU 0 races on X (already received), then faults on Y. */
function alreadyReceivedRace(raceLines: string[]): string[] {
  return [
    begin(5_200, B, 5, 1),
    ...raceLines,
    begin(12_250, Y, 12, 0), // cpus_down is one too low now: 1 instead of 2
    end(14_300, Y, 0, 1), // so both vCPUs are down but QEMU adds nothing
    end(15_300, B, 0, 1),
  ];
}

test('artefact 2, already-received begin counted by an end whose line comes first', (t) => {
  const r = replayLines(alreadyReceivedRace([end(10_300, X, 0, 1), begin(10_301, X, 0, 0, 1)]), { vcpuCount: 2 });
  t.deepEqual(r.races, { alreadyReceivedBegin: 1, endBeforeBeginStore: 0 });
  t.is(r.totalMismatches + r.affectedMismatches, 0, JSON.stringify(r.mismatches));
  t.deepEqual(r.qemu.perVcpuMs, [0 + 2, 10]);
  t.is(r.qemu.totalMs, 0);
  t.is(r.qemu.state.cpusDown, -1);
});

test('artefact 2, already-received begin whose line comes first', (t) => {
  const r = replayLines(alreadyReceivedRace([begin(10_300, X, 0, 0, 1), end(10_301, X, 0, 1)]), { vcpuCount: 2 });
  t.deepEqual(r.races, { alreadyReceivedBegin: 1, endBeforeBeginStore: 0 });
  t.is(r.totalMismatches + r.affectedMismatches, 0, JSON.stringify(r.mismatches));
  t.deepEqual(r.qemu.perVcpuMs, [2, 10]);
});

test('artefact 2 is only paired within the race window: farther apart, the end line disagrees', (t) => {
  const r = replayLines(alreadyReceivedRace([end(10_300, X, 0, 1), begin(10_301, X, 0, 0, 1)]), { vcpuCount: 2, raceWindowUs: 0 });
  t.is(r.races.alreadyReceivedBegin, 0);
  t.true(r.affectedMismatches > 0);
  t.true(r.totalMismatches > 0); // without the drift, QEMU's frozen total is not reproduced
});

test('artefact 3, an end between a begin\'s cpus_down test and its store counts the old page', (t) => {
  const r = replayLines(
    [
      begin(5_200, B, 5, 1), // vCPU 1 blocked throughout
      begin(10_250, A, 10, 0),
      begin(12_250, C, 12, 0), // its line comes 0.3 ms before the end that ran inside it
      end(12_550, A, 2, 1), // counted vCPU 0 on A, all down: total += 12 - 10
      end(15_300, C, 2, 1), // cpus_down drifted to 1: no total
      end(16_300, B, 2, 1),
    ],
    { vcpuCount: 2 },
  );
  t.deepEqual(r.races, { alreadyReceivedBegin: 0, endBeforeBeginStore: 1 });
  t.is(r.totalMismatches + r.affectedMismatches, 0, JSON.stringify(r.mismatches));
  t.deepEqual(r.qemu.perVcpuMs, [2 + 3, 11]);
  t.is(r.qemu.totalMs, 2);
});

test('lines written out of timestamp order are replayed in timestamp order', (t) => {
  const lines = [
    begin(10_250, A, 10, 0),
    begin(11_250, B, 11, 0),
    end(11_200, A, 0, 1), // ran (and took its timestamp) before the begin above wrote its line
    end(13_300, B, 2, 1),
  ];
  const sorted = replayLines(lines, { vcpuCount: 1 });
  t.is(sorted.totalMismatches + sorted.affectedMismatches, 0, JSON.stringify(sorted.mismatches));
  t.deepEqual(sorted.qemu.perVcpuMs, [0 + 2]);
  const fileOrder = replayLines(lines, { vcpuCount: 1, reorderWindowUs: 0 });
  t.is(fileOrder.affectedMismatches, 1);
});

test('a trace without timestamps cannot be replayed', (t) => {
  const e = parseTraceLine('mark_postcopy_blocktime_end addr: 0x1000, dd: 0x1, time: 0, affected_cpu: 0', 1);
  const replay = new TraceBlocktimeReplay({ vcpuCount: 1 });
  t.throws(() => replay.push(e as never), { message: /timestamp/ });
});
