/**
 * Acceptance (issue 7): the real QEMU 7.2 captures imported and inspected. In `qemu`
 * mode the analysis reproduces QEMU's query-migrate figures; `exact` mode reports at
 * least as much per vCPU; counts agree with the trace's own lines (counted here
 * independently with the plain trace reader); `fail` shows the paused status, the total
 * at the failure and the requests that never came back.
 */
import test from 'ava';
import { readTrace } from '../../../src/io/qemu/qemuTrace.js';
import { JournalReader } from '../../../src/journal/journalReader.js';
import { EventKind } from '../../../src/engine/events.js';
import { unpack } from 'msgpackr';
import { fixture, importRun, queryMigrate } from '../../forensics/helpers.js';

/** What the trace says, counted line by line without the importer. */
interface TraceCounts {
  faults: number;
  blockedFaults: number;
  requestsAdded: number;
  placed: number;
  zeroPlaced: number;
  pagesByChannel: [number, number];
  /** Host addresses added to QEMU's requested set and never deleted, in order of addition. */
  neverResolved: number[];
  lastEndTotal: number | null;
}

const counted = new Map<string, Promise<TraceCounts>>();
function traceCounts(run: string): Promise<TraceCounts> {
  let p = counted.get(run);
  if (p === undefined) {
    p = (async () => {
      const c: TraceCounts = { faults: 0, blockedFaults: 0, requestsAdded: 0, placed: 0, zeroPlaced: 0, pagesByChannel: [0, 0], neverResolved: [], lastEndTotal: null };
      const open = new Set<number>();
      await readTrace(fixture(run, 'dst-trace.log.gz'), (e) => {
        if (e.kind === 'postcopy_ram_fault_thread_request') c.faults++;
        else if (e.kind === 'postcopy_page_req_add') {
          c.requestsAdded++;
          open.add(e.host);
        } else if (e.kind === 'postcopy_page_req_del') open.delete(e.host);
        else if (e.kind === 'postcopy_place_page') c.placed++;
        else if (e.kind === 'postcopy_place_page_zero') {
          c.placed++;
          c.zeroPlaced++;
        } else if (e.kind === 'ram_load_postcopy_loop' && (e.flags & 0xa) !== 0) c.pagesByChannel[e.channel as 0 | 1]++;
        else if (e.kind === 'mark_postcopy_blocktime_end') c.lastEndTotal = e.time;
        else if (e.kind === 'mark_postcopy_blocktime_begin' && e.alreadyReceived === 0) c.blockedFaults++;
      });
      c.neverResolved = [...open];
      return c;
    })();
    counted.set(run, p);
  }
  return p;
}

for (const run of ['plain', 'preempt']) {
  test(`${run}: inspect in qemu mode reproduces query-migrate (total exactly, each vCPU within 1 ms)`, async (t) => {
    const q = queryMigrate(run);
    const { analysis: a } = await importRun(run);
    t.is(a.status, q.status);
    t.is(a.status, 'completed');
    t.is(a.postcopyState, 'END');
    t.is(a.blocktime.qemu.totalMs, q['postcopy-blocktime']!);
    const expected = q['postcopy-vcpu-blocktime']!;
    t.is(a.vcpus, expected.length);
    t.is(a.blocktime.qemu.perVcpuMs.length, expected.length);
    a.blocktime.qemu.perVcpuMs.forEach((ms, v) => t.true(Math.abs(ms - expected[v]!) <= 1, `vCPU ${v}: ${ms} vs ${expected[v]}`));
    // Every running total QEMU printed along the way is reproduced, and its final report too.
    t.like(a.blocktime.qemu.check, { totalMismatches: 0, affectedMismatches: 0, reportedTotalMs: q['postcopy-blocktime']! });
  });

  test(`${run}: exact mode reports the true blocked time, at least QEMU's figure per vCPU`, async (t) => {
    const q = queryMigrate(run);
    const { analysis: a } = await importRun(run);
    a.blocktime.exact.perVcpuMs.forEach((ms, v) => t.true(ms >= q['postcopy-vcpu-blocktime']![v]!, `vCPU ${v}: ${ms}`));
    t.true(a.blocktime.exact.totalMs >= a.blocktime.qemu.totalMs);
    const c = await traceCounts(run);
    t.is(a.blocktime.exact.perVcpuFaults.reduce((x, y) => x + y, 0), c.faults);
  });

  test(`${run}: faults, requests and pages agree with the trace's own lines; nothing outstanding`, async (t) => {
    const { analysis: a } = await importRun(run);
    const c = await traceCounts(run);
    t.is(a.faults.count, c.faults);
    t.is(a.requests.count, c.requestsAdded);
    t.is(a.requests.resent, 0); // QEMU 7.2 does not send a request again for a page already requested
    t.deepEqual(a.requests.outstanding, []);
    t.is(a.pages.placed, c.placed);
    t.is(a.pages.zero, c.zeroPlaced);
    t.deepEqual(a.pages.byChannel, { '0': c.pagesByChannel[0], '1': c.pagesByChannel[1] });
    // Every request is answered by exactly one placement; only requested pages travel on the preempt channel.
    const by = a.requests.answeredBy;
    t.is(by.main.count + by.preempt.count + by.unknown.count, a.requests.count);
    t.is(by.preempt.count, c.pagesByChannel[1]);
    t.true(by.main.p50Ms <= by.main.p99Ms && by.main.p99Ms <= by.main.maxMs);
    t.true(a.faults.p50Ms <= a.faults.p90Ms && a.faults.p90Ms <= a.faults.p99Ms && a.faults.p99Ms <= a.faults.maxMs);
    t.is(a.faults.slowest.length, 20);
    t.is(a.faults.slowest[0]!.latencyMs, a.faults.maxMs);
    // One latency per fault that found its page missing (the begin lines with already_received: 0).
    t.is(a.faults.histogram.reduce((n, b) => n + b.count, 0), c.blockedFaults);
    t.is(a.series.latencyCdf.at(-1)![1], 1);
    t.deepEqual(a.errors, []);
    t.deepEqual(a.pauses, []);
  });
}

test('plain: the timeline goes through every PostcopyState and ends completed', async (t) => {
  const { analysis: a } = await importRun('plain');
  const postcopy = a.timeline.filter((e) => e.machine === 'postcopy').map((e) => e.to);
  t.deepEqual(postcopy, ['ADVISE', 'DISCARD', 'LISTENING', 'RUNNING', 'END']);
  const migration = a.timeline.filter((e) => e.machine === 'migration').map((e) => e.to);
  t.deepEqual(migration, ['active', 'postcopy-active', 'completed']);
  for (let i = 1; i < a.timeline.length; i++) t.true(a.timeline[i]!.tMs >= a.timeline[i - 1]!.tMs);
});

test('preempt: most requests are answered by pages already on the main channel; the few urgent ones take far longer', async (t) => {
  const { analysis: a } = await importRun('preempt');
  const by = a.requests.answeredBy;
  t.is(by.main.count, 1883);
  t.is(by.preempt.count, 32);
  t.true(by.main.p50Ms < 0.06, `main-channel answers: p50 ${by.main.p50Ms} ms`);
  t.true(by.preempt.p50Ms > 1 && by.preempt.p50Ms < 1.3, `preempt-channel answers: p50 ${by.preempt.p50Ms} ms`);
});

test('preempt: the capability is found, and pages arrive on both channels', async (t) => {
  const { analysis: a, summary } = await importRun('preempt');
  t.deepEqual(summary.capabilities, ['preempt']);
  t.deepEqual(a.journal.capabilities, ['preempt']);
  t.true(a.pages.byChannel['1']! > 0);
  t.true(a.timeline.some((e) => e.machine === 'preemptThread' && e.to === 'QUIT'));
});

test('fail: postcopy-paused, 626 ms in qemu mode at the failure, and the requests that never came back, by address', async (t) => {
  const q = queryMigrate('fail');
  const { analysis: a } = await importRun('fail');
  const c = await traceCounts('fail');
  t.is(a.status, q.status);
  t.is(a.status, 'postcopy-paused');
  t.is(a.postcopyState, 'RUNNING');
  t.is(a.blocktime.qemu.totalMs, c.lastEndTotal!);
  t.is(a.blocktime.qemu.totalMs, 626);
  t.is(a.blocktime.qemu.check?.reportedTotalMs, null); // QEMU never got to report one
  t.is(c.neverResolved.length, 2); // the README: 2 requests were never resolved
  t.deepEqual(
    a.requests.outstanding.map((o) => o.address),
    c.neverResolved,
  );
  const end = a.durationMs;
  for (const o of a.requests.outstanding) {
    t.is(o.block, 'pc.ram');
    t.true(o.ageMs > 0 && o.ageMs <= end);
    const first = a.requests.outstanding[0]!;
    t.true(Math.abs(o.requestedAtMs + o.ageMs - (first.requestedAtMs + first.ageMs)) < 1e-6); // aged to the same end
  }
  t.is(a.pauses.length, 1);
  t.like(a.pauses[0], { endMs: null, durationMs: null });
  t.regex(a.pauses[0]!.reason!, /IN_STREAM_ERROR/);
  a.blocktime.exact.perVcpuMs.forEach((ms, v) => t.true(ms >= a.blocktime.qemu.perVcpuMs[v]!));
});

test('the journal records what the issue lists: blocks, discards, faults with their vCPU, requests with QEMU\'s payload, placements by channel', async (t) => {
  const { path, summary } = await importRun('plain');
  const r = JournalReader.open(path);
  try {
    t.is(r.meta.source, 'qemu-trace');
    t.deepEqual(r.meta.blocks.map((b) => b.name), ['pc.ram', '/rom@etc/acpi/tables', 'pc.bios', 'pc.rom', '/rom@etc/table-loader', '/rom@etc/acpi/rsdp']);
    t.deepEqual(r.meta.vcpuTids, summary.vcpus.tids);
    let firstRequest: Uint8Array | null = null;
    const seenVcpus = new Set<number>();
    for (const e of r.records()) {
      if (e.kind === EventKind.FX_REQUEST && firstRequest === null) firstRequest = e.payload;
      if (e.kind === EventKind.FX_FAULT_SEEN) seenVcpus.add(e.a);
      if (e.kind === EventKind.FX_BLOCKTIME) t.is(e.a, queryMigrate('plain')['postcopy-blocktime']!);
    }
    // The first request names its block (REQ_PAGES_ID, 19 bytes as the trace's "len 19").
    t.is(firstRequest!.length, 19);
    t.is(Buffer.from(firstRequest!.subarray(13)).toString(), 'pc.ram');
    t.deepEqual([...seenVcpus].sort(), [0, 1]);
    t.true(r.countOfKind(EventKind.FX_DISCARD) > 0);
    t.true(r.countOfKind(EventKind.TR_BLOCKTIME_END) > 0);
    const notes = [...r.records()].filter((e) => e.kind === EventKind.TR_NOTE).map((e) => unpack(e.payload!) as { event: string; text: string });
    t.true(notes.some((n) => n.event === 'qmp_enter_migrate_incoming' && n.text.includes('tcp:127.0.0.1:44441')));
  } finally {
    r.close();
  }
});

test('without threads.json the vCPUs are inferred from the faults and give the same figures', async (t) => {
  const withThreads = await importRun('plain');
  const inferred = await importRun('plain', { threadsPath: null });
  t.is(inferred.summary.vcpus.source, 'inferred');
  t.deepEqual(inferred.summary.vcpus.tids, withThreads.summary.vcpus.tids);
  t.true(inferred.summary.warnings.some((w) => /inferred/.test(w)));
  t.deepEqual(inferred.analysis.blocktime, withThreads.analysis.blocktime);
});

test("query-migrate-dst.json beside the trace is kept: QEMU's own figures, exactly, beside the replay (which may differ by 1 ms)", async (t) => {
  const q = queryMigrate('plain');
  const { analysis: a } = await importRun('plain');
  t.deepEqual(a.blocktime.qemu.reported?.perVcpuMs, q['postcopy-vcpu-blocktime']);
  t.is(a.blocktime.qemu.reported?.totalMs, q['postcopy-blocktime']);
  t.regex(a.blocktime.qemu.reported?.file ?? '', /query-migrate-dst\.json$/);
  const without = await importRun('plain', { queryMigratePath: null });
  t.is(without.analysis.blocktime.qemu.reported, undefined, 'null: no query-migrate');
  t.deepEqual(without.analysis.blocktime.qemu.perVcpuMs, a.blocktime.qemu.perVcpuMs, 'the replay does not depend on it');
  await t.throwsAsync(importRun('plain', { queryMigratePath: fixture('plain', 'threads.json') }), { message: /threads\.json: not query-migrate's answer \(it always has a 'status' string\)/ });
  await t.throwsAsync(importRun('plain', { queryMigratePath: fixture('plain', 'cmdline-dst.sh') }), { message: /cmdline-dst\.sh: not query-migrate's JSON answer/ });
});

test('a source trace is merged in by time as notes; the destination\'s analysis is unchanged', async (t) => {
  const alone = await importRun('fail');
  const merged = await importRun('fail', { srcTrace: fixture('fail', 'src-trace.log.gz') });
  t.true(merged.summary.src !== null && merged.summary.src.events > 0);
  const r = JournalReader.open(merged.path);
  try {
    let srcNotes = 0;
    for (const e of r.records()) {
      if (e.kind !== EventKind.TR_NOTE) continue;
      if ((unpack(e.payload!) as { side?: string }).side === 'src') srcNotes++;
    }
    t.is(srcNotes, merged.summary.src!.events);
  } finally {
    r.close();
  }
  t.deepEqual(merged.analysis.blocktime, alone.analysis.blocktime);
  t.is(merged.analysis.status, alone.analysis.status);
  t.is(merged.analysis.requests.count, alone.analysis.requests.count);
  // Sequence numbers shift by the notes merged in before them; addresses and request times do not.
  const where = (o: { address: number | null; requestedAtMs: number }) => [o.address, o.requestedAtMs];
  t.deepEqual(merged.analysis.requests.outstanding.map(where), alone.analysis.requests.outstanding.map(where));
});
