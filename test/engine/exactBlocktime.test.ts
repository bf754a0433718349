/** Exact (race-free, ns) blocktime and its latency histogram: hand-computed sequences. */
import test from 'ava';
import { ExactBlocktime } from '../../src/engine/blocktimeExact.js';
import { LatencyHistogram, bucketOf, bucketRange } from '../../src/engine/latencyHistogram.js';

const P1 = 0x7f0000001000;
const P2 = 0x7f0000002000;
const P3 = 0x7f0000003000;

test('each vCPU is blocked from its fault to the placement of its host page', (t) => {
  const m = new ExactBlocktime(2);
  m.fault(0, P1, P1 + 8, 100);
  m.fault(1, P2, P2, 150);
  t.true(m.isBlocked(0));
  t.is(m.placed(P1, 400), 1); // all blocked from 150 to 400
  t.is(m.placed(P2, 500), 1);
  t.deepEqual(m.perVcpuBlockedNs(), [300, 350]);
  t.is(m.totalNs, 250);
  t.deepEqual(m.perVcpuFaults(), [1, 1]);
  t.false(m.isBlocked(0));
});

test('a placement nobody waits on unblocks nobody', (t) => {
  const m = new ExactBlocktime(2);
  t.is(m.placed(P1, 10), 0);
  m.fault(0, P1, P1, 20);
  t.is(m.placed(P2, 30), 0);
  t.true(m.isBlocked(0));
});

test('one placement unblocks every vCPU waiting on that host page', (t) => {
  const m = new ExactBlocktime(3);
  m.fault(0, P1, P1, 10);
  m.fault(2, P1, P1 + 0x800, 20);
  m.fault(1, P2, P2, 30);
  t.is(m.placed(P1, 70), 2);
  t.deepEqual(m.perVcpuBlockedNs(), [60, 0, 50]);
  t.is(m.totalNs, 40); // all three from 30 to 70
  t.is(m.placed(P2, 100), 1);
  t.deepEqual(m.perVcpuBlockedNs(), [60, 70, 50]);
});

test('a re-fault on the same host page keeps the first fault time', (t) => {
  const m = new ExactBlocktime(1);
  m.fault(0, P1, P1, 100);
  m.fault(0, P1, P1 + 4, 120);
  m.placed(P1, 200);
  t.deepEqual(m.perVcpuBlockedNs(), [100]);
  t.deepEqual(m.perVcpuFaults(), [2]);
  t.is(m.closedByRefault, 0);
});

test('a fault on another page closes the previous interval at the new fault', (t) => {
  const m = new ExactBlocktime(2);
  m.fault(0, P1, P1, 100);
  m.fault(1, P3, P3, 110);
  m.fault(0, P2, P2, 130); // vCPU0 ran, so P1's wait ended by 130; all-blocked continues
  t.is(m.closedByRefault, 1);
  t.is(m.placed(P1, 140), 0); // nobody waits on P1 any more
  m.placed(P2, 160);
  m.placed(P3, 170);
  t.deepEqual(m.perVcpuBlockedNs(), [30 + 30, 60]);
  t.is(m.totalNs, 160 - 110);
  t.is(m.latency.count, 3);
});

test('a fault on a page already received counts but blocks nothing; a blocked vCPU is released', (t) => {
  const m = new ExactBlocktime(2);
  m.fault(0, P1, P1, 10, true);
  t.false(m.isBlocked(0));
  m.fault(1, P2, P2, 20);
  m.fault(0, P3, P3, 30);
  m.fault(1, P1, P1, 50, true); // vCPU1 ran: its wait on P2 ended by 50
  t.false(m.isBlocked(1));
  t.is(m.totalNs, 20); // all blocked from 30 to 50
  t.deepEqual(m.perVcpuBlockedNs(), [0, 30]);
  t.deepEqual(m.perVcpuFaults(), [2, 2]);
});

test('faults of non-vCPU threads are only counted', (t) => {
  const m = new ExactBlocktime(1);
  m.fault(-1, P1, P1, 10);
  t.is(m.nonVcpuFaults, 1);
  t.false(m.isBlocked(0));
  t.deepEqual(m.perVcpuFaults(), [0]);
  t.throws(() => m.fault(1, P1, P1, 10), { instanceOf: RangeError });
});

test('report: latency percentiles and open waits', (t) => {
  const m = new ExactBlocktime(2);
  m.fault(0, P1, P1, 0);
  m.placed(P1, 1_000);
  m.fault(0, P2, P2, 2_000);
  m.placed(P2, 12_000);
  m.fault(1, P3, P3, 20_000);
  const r = m.report();
  t.is(r.blockedNow, 1);
  t.is(r.latency.count, 2);
  t.is(r.latency.maxNs, 10_000);
  t.is(r.latency.minNs, 1_000);
  t.is(r.latency.meanNs, 5_500);
  t.true(Math.abs(r.latency.p50Ns - 1_000) <= 1_000 / 128);
});

test('toJSON/fromJSON: a restored model continues exactly like the original, open waits included', (t) => {
  const m = new ExactBlocktime(3);
  m.fault(0, P1, P1, 10);
  m.fault(1, P1, P1, 12);
  m.fault(2, P2, P2, 15);
  m.placed(P3, 16);
  const copy = ExactBlocktime.fromJSON(JSON.parse(JSON.stringify(m.toJSON())));
  t.deepEqual(copy.toJSON(), m.toJSON());
  for (const x of [m, copy]) {
    x.placed(P1, 40);
    x.fault(0, P3, P3, 45);
    x.placed(P2, 50);
    x.placed(P3, 60);
  }
  t.deepEqual(copy.toJSON(), m.toJSON());
  t.deepEqual(copy.report(), m.report());
});

test('fromJSON refuses a snapshot of the wrong shape', (t) => {
  const s = new ExactBlocktime(2).toJSON();
  s.waitKey = [null];
  t.throws(() => ExactBlocktime.fromJSON(s), { instanceOf: RangeError, message: /waitKey/ });
});

test('histogram buckets: every value falls in the range of its bucket, ranges tile without gaps', (t) => {
  const values = [0, 1, 63, 64, 65, 127, 128, 1000, 4095, 4096, 123_456, 2 ** 31, 2 ** 32 + 5, 3.7e12, 2 ** 47 + 1];
  for (const v of values) {
    const [low, high] = bucketRange(bucketOf(v));
    t.true(low <= v && v < high, `value ${v} outside [${low}, ${high})`);
  }
  for (let i = 0; i < 2000 && bucketRange(i)[1] !== Infinity; i++) {
    t.is(bucketRange(i)[1], bucketRange(i + 1)[0]);
  }
  t.is(bucketOf(2 ** 60), bucketOf(2 ** 50)); // the last bucket takes everything above its start
});

test('histogram: exact below 64 ns, mid-bucket above, clamped to min and max', (t) => {
  const h = new LatencyHistogram();
  for (const v of [5, 7, 9]) h.record(v);
  t.is(h.quantile(0.5), 7);
  const g = new LatencyHistogram();
  g.record(1_000_000);
  t.is(g.quantile(0.5), 1_000_000); // the middle of its bucket, clamped to the only value
  g.record(3_000_000);
  const p50 = g.quantile(0.5);
  t.true(Math.abs(p50 - 1_000_000) <= 1_000_000 / 128);
  t.is(g.quantile(1), 3_000_000);
  t.deepEqual(
    g.buckets().map(([, , c]) => c),
    [1, 1],
  );
  const restored = LatencyHistogram.fromJSON(JSON.parse(JSON.stringify(g.toJSON())));
  t.deepEqual(restored.summary(), g.summary());
});
