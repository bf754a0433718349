/**
 * Issue 20: one time base. Every time in an analysis lies within [0, durationMs], the
 * journal from t = 0 to its last event, so the text, the JSON and every plot share it;
 * a blocked wait still open at the end runs to the end of the journal.
 */
import test from 'ava';
import type { Analysis } from '../../src/forensics/analysisTypes.js';
import { runSimulatedMigration } from '../../src/io/migration/simulatedMigration.js';
import { MigCommand } from '../../src/engine/constants.js';
import { encodeAdvise, hostPageSizeSummary } from '../../src/engine/wire.js';
import { analyze, handDriven, importRun, tmpPath } from './helpers.js';

const MS = 1e6;

/** Every time the analysis holds, with what it is. */
function times(a: Analysis): Array<[string, number]> {
  const out: Array<[string, number]> = [['firstEventMs', a.firstEventMs]];
  for (const e of a.timeline) out.push([`timeline #${e.seq}`, e.tMs]);
  for (const p of a.pauses) {
    out.push([`pause #${p.startSeq}`, p.startMs]);
    if (p.endMs !== null) out.push([`pause #${p.startSeq} end`, p.endMs]);
  }
  for (const e of a.errors) out.push([`error #${e.seq}`, e.tMs]);
  for (const o of a.requests.outstanding) out.push([`outstanding #${o.seq}`, o.requestedAtMs], [`outstanding #${o.seq} end`, o.requestedAtMs + o.ageMs]);
  for (const s of a.streamEnds) if (s !== null) out.push([`stream end #${s.seq}`, s.tMs]);
  for (const [t] of a.series.received) out.push(['received', t]);
  for (const b of a.series.vcpuBlocked) for (const [s, e] of b.intervals) out.push([`vCPU ${b.vcpu} blocked`, s], [`vCPU ${b.vcpu} blocked end`, e]);
  for (const s of a.faults.slowest) out.push([`fault #${s.seq}`, s.tMs], [`fault #${s.seq} end`, s.tMs + s.latencyMs]);
  for (const s of a.blocktime.exact.stillBlocked) out.push([`vCPU ${s.vcpu} still blocked`, s.sinceMs]);
  return out;
}

function withinJournal(t: import('ava').ExecutionContext, a: Analysis): void {
  const eps = 1e-6;
  t.true(a.timeline.length > 0);
  t.true(a.timeline[a.timeline.length - 1]!.tMs <= a.durationMs + eps, 'the last timeline event lies within the axis');
  for (const [what, ms] of times(a)) t.true(ms >= -eps && ms <= a.durationMs + eps, `${what} at ${ms} ms lies in [0, ${a.durationMs}]`);
  for (const p of a.pauses) t.true(p.startMs <= a.durationMs);
}

for (const run of ['fail', 'plain', 'preempt']) {
  test(`imported ${run}: every time lies within [0, duration]`, async (t) => {
    const { analysis } = await importRun(run);
    withinJournal(t, analysis);
  });
}

test('an engine journal (simulated, with a break): every time lies within [0, duration]', (t) => {
  const path = tmpPath('timebase-sim.db');
  runSimulatedMigration({ journalPath: path, sizeBytes: 4 << 20, vcpus: 2, workload: 'sequential-increment', seed: 7, preempt: true, breakAt: 0.3, precopyFraction: 0.1, pagesPerTick: 4, accessesPerTick: 64 });
  const a = analyze(path);
  withinJournal(t, a);
  t.true(a.firstEventMs <= a.timeline[0]!.tMs);
});

test('an engine journal whose first event comes late, left paused: the pause and the last event lie inside', (t) => {
  const path = tmpPath('timebase-paused.db');
  const { engine, writer, host } = handDriven(path, 16, [101, 102]);
  const t0 = 300 * MS; // as a migrate journal: opened well before the migration starts
  engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary([4096]), targetPageSize: 4096 }), t0 + 1 * MS);
  engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), t0 + 2 * MS);
  engine.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0), t0 + 3 * MS);
  engine.fault(host, 101, t0 + 10 * MS);
  engine.fault(host + 4096, 102, t0 + 12 * MS);
  engine.channelBroken(0, 'connection closed by the peer', t0 + 38 * MS);
  writer.close();
  const a = analyze(path);
  withinJournal(t, a);
  t.is(a.status, 'postcopy-paused');
  t.true(a.pauses[0]!.startMs >= t0 / MS);
  t.true(a.firstEventMs >= t0 / MS, 'the first event is at its own time, not shifted to 0');
  // Both waits run to the end of the journal.
  t.deepEqual(a.blocktime.exact.stillBlocked.map((s) => s.vcpu), [0, 1]);
  t.is(a.blocktime.exact.perVcpuMs[0], a.durationMs - (t0 / MS + 10));
  t.is(a.blocktime.exact.perVcpuMs[1], a.durationMs - (t0 / MS + 12));
  t.is(a.faults.unanswered, 2);
  t.is(a.faults.timed, 2);
});

test('fail: each vCPU\'s exact blocktime includes its wait to the end; the outstanding faults are in the latency figures', async (t) => {
  const { analysis: a } = await importRun('fail');
  t.is(a.blocktime.exact.stillBlocked.length, 2);
  for (const ms of a.blocktime.exact.perVcpuMs) t.true(ms > 2000, `${ms} ms`);
  t.deepEqual(a.blocktime.qemu.perVcpuMs, [660, 898], "QEMU's own running totals stay as QEMU counted them");
  t.is(a.faults.count, 71);
  t.is(a.faults.timed, 71);
  t.is(a.faults.unanswered, 2);
  t.is(a.faults.histogram.reduce((s, b) => s + b.count, 0), a.faults.timed, 'the histogram counts every timed fault');
  t.true(a.faults.maxMs > 2000, 'the outstanding faults count at least their age');
  t.true(a.faults.slowest[0]!.unanswered === true);
});
