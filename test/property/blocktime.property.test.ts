/**
 * Properties of the exact blocktime mode, against a direct computation from the
 * intervals fed to it, and a cross-check of the qemu mode on race-free sequences.
 */
import test from 'ava';
import fc from 'fast-check';
import { ExactBlocktime } from '../../src/engine/blocktimeExact.js';
import { QemuBlocktime } from '../../src/engine/blocktimeQemu.js';
import { LatencyHistogram } from '../../src/engine/latencyHistogram.js';
import { assertProperty, fcParams } from '../../src/testing/properties.js';

interface Interval {
  vcpu: number;
  key: number;
  from: number;
  to: number;
}

/** Per vCPU, a sequence of (gap before the fault, blocked duration > 0), in time units. */
const schedule = (maxVcpus: number, unit: number) =>
  fc
    .array(fc.array(fc.tuple(fc.nat(40), fc.integer({ min: 1, max: 60 })), { maxLength: 12 }), { minLength: 1, maxLength: maxVcpus })
    .map((perVcpu) => {
      const intervals: Interval[] = [];
      perVcpu.forEach((seq, vcpu) => {
        let t = unit; // start after the first ms so qemu mode's "never below 1" does not bite
        seq.forEach(([gap, dur], i) => {
          const from = t + gap * unit;
          intervals.push({ vcpu, key: 0x7f0000000000 + (vcpu * 64 + i) * 4096, from, to: from + dur * unit });
          t = from + dur * unit;
        });
      });
      return { vcpus: perVcpu.length, intervals };
    });

type Ev = { t: number; placed: boolean; iv: Interval };

/** Race-free event order: by time, placements before faults at the same instant. */
function events(intervals: Interval[]): Ev[] {
  const evs: Ev[] = [];
  for (const iv of intervals) evs.push({ t: iv.from, placed: false, iv }, { t: iv.to, placed: true, iv });
  return evs.sort((a, b) => a.t - b.t || Number(b.placed) - Number(a.placed));
}

function feedExact(vcpus: number, intervals: Interval[]): ExactBlocktime {
  const m = new ExactBlocktime(vcpus);
  for (const e of events(intervals)) {
    if (e.placed) m.placed(e.iv.key, e.t);
    else m.fault(e.iv.vcpu, e.iv.key, e.iv.key + 8, e.t);
  }
  return m;
}

/** Reference: the measure of the times when every vCPU lies in one of its [from, to). */
function allBlockedMeasure(vcpus: number, intervals: Interval[]): number {
  const points = [...new Set(intervals.flatMap((iv) => [iv.from, iv.to]))].sort((a, b) => a - b);
  let total = 0;
  for (let i = 0; i + 1 < points.length; i++) {
    const a = points[i]!;
    const b = points[i + 1]!;
    let down = 0;
    for (let v = 0; v < vcpus; v++) if (intervals.some((iv) => iv.vcpu === v && iv.from <= a && b <= iv.to)) down++;
    if (down === vcpus) total += b - a;
  }
  return total;
}

test('exact: per-vCPU blocked time is the sum of the intervals fed', (t) => {
  t.notThrows(() =>
    assertProperty(
    fc.property(schedule(4, 1), ({ vcpus, intervals }) => {
      const m = feedExact(vcpus, intervals);
      const expected = Array.from({ length: vcpus }, (_, v) =>
        intervals.filter((iv) => iv.vcpu === v).reduce((s, iv) => s + iv.to - iv.from, 0),
      );
      return JSON.stringify(m.perVcpuBlockedNs()) === JSON.stringify(expected) && m.latency.count === intervals.length;
    }),
    fcParams(),
    ),
  );
});

test('exact: with one vCPU, the total is its blocked time', (t) => {
  t.notThrows(() =>
    assertProperty(
    fc.property(schedule(1, 1), ({ intervals }) => {
      const m = feedExact(1, intervals);
      return m.totalNs === m.perVcpuBlockedNs()[0];
    }),
    fcParams(),
    ),
  );
});

test('exact: the total is the time all vCPUs are blocked at once, never above any vCPU\'s blocked time', (t) => {
  t.notThrows(() =>
    assertProperty(
    fc.property(schedule(4, 1), ({ vcpus, intervals }) => {
      const m = feedExact(vcpus, intervals);
      const min = Math.min(...m.perVcpuBlockedNs());
      return m.totalNs <= min && m.totalNs === allBlockedMeasure(vcpus, intervals);
    }),
    fcParams(),
    ),
  );
});

test('exact: a snapshot taken anywhere restores a model that ends identically', (t) => {
  t.notThrows(() =>
    assertProperty(
    fc.property(schedule(3, 1), fc.nat(), ({ vcpus, intervals }, cut) => {
      const evs = events(intervals);
      const at = evs.length === 0 ? 0 : cut % (evs.length + 1);
      let m = new ExactBlocktime(vcpus);
      const reference = new ExactBlocktime(vcpus);
      evs.forEach((e, i) => {
        if (i === at) m = ExactBlocktime.fromJSON(JSON.parse(JSON.stringify(m.toJSON())));
        for (const x of [m, reference]) {
          if (e.placed) x.placed(e.iv.key, e.t);
          else x.fault(e.iv.vcpu, e.iv.key, e.iv.key, e.t);
        }
      });
      return JSON.stringify(m.toJSON()) === JSON.stringify(reference.toJSON());
    }),
    fcParams(),
    ),
  );
});

test('qemu mode on race-free sequences stays within 1 ms per interval of the exact figures', (t) => {
  const MS = 1e6;
  t.notThrows(() =>
    assertProperty(
    fc.property(
      schedule(3, 1),
      fc.nat(999_999),
      ({ vcpus, intervals }, jitter) => {
        // The same schedule in ms, shifted by a sub-ms jitter so rounding varies.
        const ivs = intervals.map((iv) => ({ ...iv, from: iv.from * MS + jitter, to: iv.to * MS + jitter }));
        const q = new QemuBlocktime(vcpus, 0);
        for (const e of events(ivs)) {
          if (e.placed) q.end(e.iv.key, e.t);
          else q.begin(e.iv.vcpu, e.iv.key, e.t, false);
        }
        const exact = feedExact(vcpus, ivs);
        const perVcpuOk = exact.perVcpuBlockedNs().every((ns, v) => {
          const n = ivs.filter((iv) => iv.vcpu === v).length;
          return Math.abs(q.perVcpuMs()[v]! - ns / MS) <= n;
        });
        return perVcpuOk && Math.abs(q.totalMs - exact.totalNs / MS) <= ivs.length && q.cpusDownCount === 0;
      },
    ),
    fcParams(),
    ),
  );
});

test('latency histogram: every quantile is within 1/128 of the exact nearest-rank value', (t) => {
  t.notThrows(() =>
    assertProperty(
    fc.property(
      fc.array(fc.oneof(fc.nat(100), fc.nat(10_000_000), fc.double({ min: 0, max: 1e13, noNaN: true })), { minLength: 1, maxLength: 300 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (values, q) => {
        const h = new LatencyHistogram();
        for (const v of values) h.record(v);
        const sorted = [...values].sort((a, b) => a - b);
        const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
        const exact = sorted[rank - 1]!;
        const got = h.quantile(q);
        const tolerance = exact < 64 ? 1 : exact / 128;
        return Math.abs(got - exact) <= tolerance && h.summary().maxNs === sorted[sorted.length - 1];
      },
    ),
    fcParams(),
    ),
  );
});
