/**
 * QEMU 7.2 blocktime (reference section 5), hand-computed sequences. Times are given in
 * ms and passed as ns; the context starts at t = 0 unless said otherwise.
 */
import test from 'ava';
import { QemuBlocktime } from '../../src/engine/blocktimeQemu.js';

const MS = 1e6;
const A = 0x7f0000001000;
const B = 0x7f0000002000;
const C = 0x7f0000003000;
const D = 0x7f0000004000;

test('two vCPUs: per-vCPU sums and the all-down total', (t) => {
  const m = new QemuBlocktime(2, 0);
  m.begin(0, A, 10 * MS, false); // cpus_down 1
  m.begin(1, B, 15 * MS, false); // cpus_down 2, last_begin 15
  t.is(m.cpusDownCount, 2);
  t.is(m.end(A, 20 * MS), 1); // vCPU0 += 10; all down: total += 20 - 15
  t.is(m.totalMs, 5);
  t.is(m.end(B, 30 * MS), 1); // vCPU1 += 15; only one down: total unchanged
  t.deepEqual(m.perVcpuMs(), [10, 15]);
  t.is(m.totalMs, 5);
  t.is(m.cpusDownCount, 0);
});

test('an end for a page nobody waits on changes nothing', (t) => {
  const m = new QemuBlocktime(2, 0);
  m.begin(0, A, 10 * MS, false);
  const before = m.toJSON();
  t.is(m.end(B, 12 * MS), 0);
  t.deepEqual(m.toJSON(), before);
});

test('two vCPUs blocked on one page are both ended by it', (t) => {
  const m = new QemuBlocktime(2, 0);
  m.begin(0, A, 10 * MS, false);
  m.begin(1, A, 12 * MS, false);
  t.is(m.end(A, 20 * MS), 2);
  t.deepEqual(m.perVcpuMs(), [10, 8]);
  t.is(m.totalMs, 8); // 20 - last_begin 12
  t.is(m.cpusDownCount, 0);
});

test('already received: the begin is undone, but last_begin keeps its time', (t) => {
  const m = new QemuBlocktime(2, 0);
  m.begin(0, A, 10 * MS, false);
  m.begin(1, B, 11 * MS, true);
  t.is(m.cpusDownCount, 1);
  t.is(m.faultAddress(1), 0);
  t.is(m.lastBeginMs, 11);
});

test('quirk: cpus_down is decremented by the undo even when the count did not increment it', (t) => {
  const m = new QemuBlocktime(2, 0);
  m.begin(0, A, 10 * MS, false); // cpus_down 1, vCPU0 on A
  // vCPU0 faults on B, already received: step 1 sees A (no increment), step 3 decrements.
  m.begin(0, B, 12 * MS, true);
  t.is(m.cpusDownCount, 0);
  // The interval on A is lost: its end finds nobody.
  t.is(m.end(A, 15 * MS), 0);
  t.deepEqual(m.perVcpuMs(), [0, 0]);
});

test('quirk: an end between the halves of an already-received begin leaves cpus_down one low for good', (t) => {
  const m = new QemuBlocktime(2, 0);
  // The fault thread runs the first half of begin(X) for vCPU0...
  m.beginCount(0);
  m.beginStore(0, A, 10);
  // ...the listen thread places A and counts vCPU0...
  t.is(m.endAt(A, 10), 1);
  // ...then the begin sees the page received and undoes: a second decrement.
  m.beginUndo(0);
  t.is(m.cpusDownCount, -1);
  // Both vCPUs now block at once, but cpus_down only reaches 1: no total ever again.
  m.begin(0, B, 20 * MS, false);
  m.begin(1, C, 21 * MS, false);
  t.is(m.cpusDownCount, 1);
  m.end(B, 30 * MS);
  m.end(C, 31 * MS);
  t.is(m.totalMs, 0);
  t.deepEqual(m.perVcpuMs(), [10, 10]);
});

test('quirk: an end between the count and the store of a begin counts the old page and drifts low', (t) => {
  const m = new QemuBlocktime(2, 0);
  m.begin(0, A, 10 * MS, false); // cpus_down 1
  m.beginCount(0); // vCPU0 faults on B: A is still recorded, no increment
  t.is(m.endAt(A, 14), 1); // A placed: vCPU0 += 4, cpus_down 0
  m.beginStore(0, B, 13);
  t.is(m.cpusDownCount, 0); // vCPU0 is blocked on B, but not counted as down
  m.begin(1, C, 16 * MS, false);
  t.is(m.cpusDownCount, 1);
  m.end(B, 20 * MS);
  t.is(m.totalMs, 0); // both were blocked from 16 to 20, but QEMU never saw all down
  t.deepEqual(m.perVcpuMs(), [4 + 7, 0]);
});

test('quirk: end does not reset the fault time (visible with address 0)', (t) => {
  const m = new QemuBlocktime(1, 0);
  m.begin(0, A, 10 * MS, false);
  m.end(A, 20 * MS);
  t.is(m.toJSON().faultTimeMs[0], 10);
  // QEMU's "not blocked" address is 0: an end at address 0 matches the stale fault time.
  t.is(m.end(0, 25 * MS), 1);
  t.deepEqual(m.perVcpuMs(), [10 + 15]);
});

test('quirk: a huge-page fault off the host page start is never ended', (t) => {
  const m = new QemuBlocktime(1, 0);
  const hostPage = 0x7f0000200000; // 2 MiB host page
  m.begin(0, hostPage + 0x1234 * 0x1000, 10 * MS, false); // raw fault address
  t.is(m.end(hostPage, 20 * MS), 0); // end compares with the host page address
  t.is(m.faultAddress(0), hostPage + 0x1234 * 0x1000);
  t.is(m.cpusDownCount, 1);
  t.deepEqual(m.perVcpuMs(), [0]);
});

test('faults from non-vCPU threads are ignored', (t) => {
  const m = new QemuBlocktime(2, 0);
  const before = m.toJSON();
  m.begin(-1, A, 10 * MS, false);
  t.deepEqual(m.toJSON(), before);
});

test('now: whole ms of the clock minus the start ms, never below 1', (t) => {
  const m = new QemuBlocktime(1, 1.9 * MS); // start ms = 1
  t.is(m.nowMs(1.95 * MS), 1); // 1 - 1 = 0, raised to 1
  t.is(m.nowMs(2.1 * MS), 1); // 2 - 1: only 0.2 ms later, but the ms changed
  t.is(m.nowMs(3.999 * MS), 2);
  t.is(m.nowMs(0), 1); // before the start
  const n = new QemuBlocktime(1, 0);
  n.begin(0, A, 0.3 * MS, false); // now = max(1, 0)
  n.end(A, 5.7 * MS); // now = 5
  t.deepEqual(n.perVcpuMs(), [4]);
});

test('three vCPUs: the total counts only periods when all three are down', (t) => {
  const m = new QemuBlocktime(3, 0);
  m.begin(0, A, 10 * MS, false);
  m.begin(1, B, 12 * MS, false);
  m.end(A, 14 * MS); // two down only
  t.is(m.totalMs, 0);
  m.begin(0, C, 15 * MS, false);
  m.begin(2, D, 16 * MS, false); // all three down since 16
  m.end(B, 19 * MS); // total += 19 - 16
  t.is(m.totalMs, 3);
  t.deepEqual(m.perVcpuMs(), [4, 7, 0]);
});

test('toJSON/fromJSON: a restored model continues exactly like the original', (t) => {
  const run = (m: QemuBlocktime): void => {
    m.end(A, 30 * MS);
    m.begin(0, C, 31 * MS, false);
    m.end(B, 35 * MS);
    m.end(C, 40 * MS);
  };
  const m = new QemuBlocktime(2, 3.5 * MS);
  m.begin(0, A, 10 * MS, false);
  m.begin(1, B, 12 * MS, false);
  const copy = QemuBlocktime.fromJSON(JSON.parse(JSON.stringify(m.toJSON())));
  t.deepEqual(copy.toJSON(), m.toJSON());
  run(m);
  run(copy);
  t.deepEqual(copy.toJSON(), m.toJSON());
  t.is(copy.nowMs(50 * MS), m.nowMs(50 * MS));
});

test('fromJSON refuses a snapshot whose arrays do not match the vCPU count', (t) => {
  const s = new QemuBlocktime(2, 0).toJSON();
  s.faultAddr = [0];
  t.throws(() => QemuBlocktime.fromJSON(s), { instanceOf: RangeError, message: /faultAddr/ });
});

test('a vCPU index out of range is refused', (t) => {
  const m = new QemuBlocktime(2, 0);
  t.throws(() => m.begin(2, A, MS, false), { instanceOf: RangeError, message: /vCPU 2/ });
  t.throws(() => new QemuBlocktime(0, 0), { instanceOf: RangeError });
});
