import type { Analysis } from '../../src/forensics/analysisTypes.js';
import { seededRandom } from '../../src/io/backends/accessPatterns.js';

/**
 * Realistic Analysis objects for report tests, built the way an analysis of a journal
 * would be: simulated faults per vCPU (seeded, deterministic) from which the intervals,
 * percentiles, histogram, CDF and blocktimes are derived. Shaped after the QEMU 7.2
 * fixtures: 2 vCPUs, 256 MiB, a few thousand faults with a long tail.
 */
export interface SampleOptions {
  /**
   * 'paused': postcopy pauses at 1.8 s for 600 ms (both vCPUs blocked across it), then
   * pauses again at 3.6 s and never recovers: two requests stay outstanding.
   * 'completed': the same run without the second pause, ending completed.
   */
  ending?: 'paused' | 'completed';
  /** Name of the RAM block (tests put markup in it). */
  blockName?: string;
  /** Message of the one refused input (tests put markup in it). */
  errorMessage?: string;
  /** Target number of faults per vCPU in postcopy. */
  faultsPerVcpu?: number;
  seed?: number;
}

interface Fault { vcpu: number; tMs: number; latencyMs: number | null; offset: number }

const POSTCOPY_START = 1000;
const PAUSE_START = 1800;
const PAUSE_END = 2400;
const SECOND_PAUSE = 3600;
const HOST_BASE = 0x7ffa0c000000;

/** Pure: a deterministic Analysis of a simulated run (see SampleOptions). */
export function sampleAnalysis(opts: SampleOptions = {}): Analysis {
  const ending = opts.ending ?? 'paused';
  const block = opts.blockName ?? 'pc.ram';
  const rand = seededRandom(opts.seed ?? 7);
  const durationMs = ending === 'paused' ? 4200 : 3900;
  const postcopyEnd = ending === 'paused' ? SECOND_PAUSE : 3850;
  const faults = [0, 1].flatMap((vcpu) => faultsOf(vcpu, rand, postcopyEnd, ending === 'paused', opts.faultsPerVcpu ?? 1500));
  const placed = faults.filter((f) => f.latencyMs !== null);
  const latencies = placed.map((f) => f.latencyMs!).sort((p, q) => p - q);
  const seqOf = (tMs: number) => Math.round(tMs * 40);

  const vcpuBlocked = [0, 1].map((vcpu) => ({
    vcpu,
    intervals: faults.filter((f) => f.vcpu === vcpu).map((f): [number, number] => [f.tMs, f.latencyMs === null ? durationMs : f.tMs + f.latencyMs]),
  }));
  const perVcpuMs = vcpuBlocked.map((b) => b.intervals.reduce((s, [a, e]) => s + e - a, 0));
  const outstanding = faults.filter((f) => f.latencyMs === null).map((f) => ({
    block, offset: f.offset, address: HOST_BASE + f.offset, requestedAtMs: f.tMs, ageMs: durationMs - f.tMs, seq: seqOf(f.tMs),
  }));
  const histogram = histogramOf(latencies);
  let below = 0;
  const latencyCdf = histogram.map((b): [number, number] => {
    below += b.count;
    return [b.toMs, below / latencies.length];
  });

  return {
    journal: {
      path: `runs/${ending}-run.db`,
      source: 'engine',
      events: seqOf(durationMs) + 1,
      created: '2026-11-23T16:00:00.000Z',
      engineVersion: '0.1.0',
      blocks: [{ name: block, length: 256 * 2 ** 20, hostPageSize: 4096 }, { name: 'pc.bios', length: 256 * 1024, hostPageSize: 4096 }],
      capabilities: [],
      unreadableFrom: null,
      unreadableReason: null,
    },
    status: ending === 'paused' ? 'postcopy-paused' : 'completed',
    postcopyState: ending === 'paused' ? 'RUNNING' : 'END',
    streamEnds: ending === 'paused' ? [null, null] : [{ seq: seqOf(durationMs) - 5, tMs: durationMs - 1 }, { seq: seqOf(durationMs) - 6, tMs: durationMs - 1 }],
    vcpus: 2,
    durationMs,
    firstEventMs: 150,
    timeline: timelineOf(ending, faults, seqOf),
    pauses: [
      { startSeq: seqOf(PAUSE_START), startMs: PAUSE_START, endMs: PAUSE_END, durationMs: PAUSE_END - PAUSE_START },
      ...(ending === 'paused' ? [{ startSeq: seqOf(SECOND_PAUSE), startMs: SECOND_PAUSE, endMs: null, durationMs: null }] : []),
    ],
    blocktime: {
      qemu: { totalMs: 26, perVcpuMs: perVcpuMs.map((ms) => Math.round(ms * 0.93)) },
      exact: { totalMs: allBlockedMs(vcpuBlocked.map((b) => b.intervals)), perVcpuMs, perVcpuFaults: [0, 1].map((v) => faults.filter((f) => f.vcpu === v).length),
        stillBlocked: [0, 1].flatMap((vcpu) => faults.filter((f) => f.vcpu === vcpu && f.latencyMs === null).slice(0, 1).map((f) => ({ vcpu, sinceMs: f.tMs }))) },
    },
    faults: {
      count: latencies.length,
      timed: latencies.length,
      unanswered: 0,
      p50Ms: quantile(latencies, 0.5),
      p90Ms: quantile(latencies, 0.9),
      p99Ms: quantile(latencies, 0.99),
      maxMs: latencies[latencies.length - 1] ?? 0,
      histogram,
      slowest: [...placed].sort((p, q) => q.latencyMs! - p.latencyMs!).slice(0, 20)
        .map((f) => ({ seq: seqOf(f.tMs), tMs: f.tMs, block, offset: f.offset, vcpu: f.vcpu, latencyMs: f.latencyMs! })),
    },
    requests: {
      count: faults.filter((f) => f.latencyMs === null || f.latencyMs > 0.03).length,
      resent: 3,
      outstanding,
      answeredBy: {
        main: { count: placed.length, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), maxMs: latencies[latencies.length - 1] ?? 0 },
        preempt: { count: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 },
        unknown: { count: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 },
      },
      answered: { count: placed.length, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), maxMs: latencies[latencies.length - 1] ?? 0 },
    },
    pages: { placed: 64000, zero: 4398, precopy: 40000, byChannel: { '0': 64000 }, discardedRanges: 1 },
    errors: [{ seq: seqOf(2350), tMs: 2350, code: 'WRONG_STATE', message: opts.errorMessage ?? 'POSTCOPY_LISTEN in wrong postcopy state RUNNING' }],
    sourceLast: null,
    stderr: [],
    anomalies: { count: 0, first: [] },
    series: { received: receivedOf(durationMs, postcopyEnd), vcpuBlocked, latencyCdf },
  };
}

/**
 * One vCPU's faults in postcopy: it runs a while, faults, waits for the page, runs again.
 * Most waits are short (the page was on its way), some long (a queued request). The
 * fault just before the first pause waits through it (~600 ms); with a final pause, the
 * last fault is never answered.
 */
function faultsOf(vcpu: number, rand: () => number, end: number, finalPause: boolean, target: number): Fault[] {
  const out: Fault[] = [];
  const meanRunMs = (end - POSTCOPY_START - (PAUSE_END - PAUSE_START)) / target;
  let t = POSTCOPY_START + rand();
  while (t < end - 20) {
    const offset = Math.floor(rand() * 65536) * 4096;
    let placed = t + (rand() < 0.9 ? 0.02 + rand() * rand() * 0.2 : 0.5 + rand() ** 3 * 40);
    // No page arrives while postcopy is paused: a fault pending when it starts waits it out.
    if (t < PAUSE_START && placed > PAUSE_START) placed = PAUSE_END + 1 + vcpu * 3 + rand() * 2;
    if (finalPause && placed > end) break; // would be placed in the final pause: never
    out.push({ vcpu, tMs: t, latencyMs: placed - t, offset });
    let next = placed + -Math.log(1 - rand()) * meanRunMs;
    // A running vCPU touches a missing page within milliseconds: it is waiting when the pause starts.
    if (placed < PAUSE_START && next >= PAUSE_START) next = placed + (PAUSE_START - placed) * rand();
    t = next;
  }
  if (finalPause) {
    const last = out[out.length - 1]!;
    const at = Math.max(end - 10 + vcpu * 4, last.tMs + last.latencyMs! + 0.5);
    out.push({ vcpu, tMs: at, latencyMs: null, offset: (0xd934 + vcpu * 0x40) * 4096 });
  }
  return out;
}

function timelineOf(ending: string, faults: Fault[], seqOf: (t: number) => number): Analysis['timeline'] {
  const rows: Array<{ tMs: number; machine: string; from: string; to: string; event: string }> = [
    { tMs: 5, machine: 'migration', from: 'setup', to: 'active', event: 'START' },
    { tMs: 12, machine: 'postcopy', from: 'NONE', to: 'ADVISE', event: 'ADVISE' },
    { tMs: 960, machine: 'postcopy', from: 'ADVISE', to: 'DISCARD', event: 'RAM_DISCARD' },
    { tMs: 990, machine: 'postcopy', from: 'DISCARD', to: 'LISTENING', event: 'LISTEN' },
    { tMs: 990, machine: 'faultThread', from: 'notStarted', to: 'running.idle', event: 'START' },
    { tMs: 995, machine: 'migration', from: 'active', to: 'postcopy-active', event: 'LISTEN' },
    { tMs: POSTCOPY_START, machine: 'postcopy', from: 'LISTENING', to: 'RUNNING', event: 'RUN' },
    { tMs: PAUSE_START, machine: 'migration', from: 'postcopy-active', to: 'postcopy-paused', event: 'CHANNEL_BROKEN' },
    { tMs: PAUSE_START + 1, machine: 'faultThread', from: 'running.idle', to: 'paused.returnPathLost', event: 'CHANNEL_BROKEN' },
    { tMs: PAUSE_END - 80, machine: 'migration', from: 'postcopy-paused', to: 'postcopy-recover', event: 'CHANNEL_CONNECTED' },
    { tMs: PAUSE_END, machine: 'migration', from: 'postcopy-recover', to: 'postcopy-active', event: 'RESUME' },
    { tMs: PAUSE_END, machine: 'faultThread', from: 'paused.returnPathLost', to: 'running.idle', event: 'RESUME' },
  ];
  // The fault thread wakes for every fault: hundreds of changes too quick to draw one by one.
  for (const f of faults.filter((x) => x.vcpu === 0 && x.tMs > POSTCOPY_START && x.tMs < PAUSE_START - 10).slice(0, 300)) {
    rows.push({ tMs: f.tMs, machine: 'faultThread', from: 'running.idle', to: 'running.requesting', event: 'FAULT' });
    rows.push({ tMs: f.tMs + 0.01, machine: 'faultThread', from: 'running.requesting', to: 'running.idle', event: 'REQUESTED' });
  }
  if (ending === 'paused') {
    rows.push({ tMs: SECOND_PAUSE, machine: 'migration', from: 'postcopy-active', to: 'postcopy-paused', event: 'CHANNEL_BROKEN' });
    rows.push({ tMs: SECOND_PAUSE + 1, machine: 'faultThread', from: 'running.idle', to: 'paused.returnPathLost', event: 'CHANNEL_BROKEN' });
  } else {
    rows.push({ tMs: 3850, machine: 'postcopy', from: 'RUNNING', to: 'END', event: 'EOS' });
    rows.push({ tMs: 3851, machine: 'faultThread', from: 'running.idle', to: 'quitting', event: 'QUIT' });
    rows.push({ tMs: 3852, machine: 'faultThread', from: 'quitting', to: 'exited', event: 'EXITED' });
    rows.push({ tMs: 3853, machine: 'migration', from: 'postcopy-active', to: 'completed', event: 'COMPLETE' });
  }
  return rows.sort((p, q) => p.tMs - q.tMs).map((r) => ({ seq: seqOf(r.tMs), ...r }));
}

/** Pages received so far, 300 points: steady precopy, fast postcopy, flat while paused. */
function receivedOf(durationMs: number, postcopyEnd: number): Array<[number, number]> {
  const pagesAt = (t: number): number => {
    if (t < POSTCOPY_START) return Math.round((t / POSTCOPY_START) * 40000);
    if (t < PAUSE_START) return Math.round(40000 + ((t - POSTCOPY_START) / (PAUSE_START - POSTCOPY_START)) * 15000);
    if (t < PAUSE_END) return 55000;
    if (t < postcopyEnd) return Math.round(55000 + ((t - PAUSE_END) / (postcopyEnd - PAUSE_END)) * 9000);
    return 64000;
  };
  return Array.from({ length: 300 }, (_, i): [number, number] => {
    const t = (i / 299) * durationMs;
    return [t, pagesAt(t)];
  });
}

/** Log-spaced buckets, 10 per decade from 10 µs, only the non-empty ones. */
function histogramOf(sorted: number[]): Analysis['faults']['histogram'] {
  const counts = new Map<number, number>();
  for (const v of sorted) {
    const i = Math.floor(Math.log10(v / 0.01) * 10);
    counts.set(i, (counts.get(i) ?? 0) + 1);
  }
  return [...counts].sort((p, q) => p[0] - q[0]).map(([i, count]) => ({ fromMs: 0.01 * 10 ** (i / 10), toMs: 0.01 * 10 ** ((i + 1) / 10), count }));
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

/** Time during which every vCPU was blocked at once (a sweep over all intervals). */
function allBlockedMs(perVcpu: Array<Array<[number, number]>>): number {
  const edges = perVcpu.flatMap((iv) => iv.flatMap(([a, e]): Array<[number, number]> => [[a, 1], [e, -1]])).sort((p, q) => p[0] - q[0] || p[1] - q[1]);
  let down = 0;
  let since = 0;
  let total = 0;
  for (const [t, d] of edges) {
    if (down === perVcpu.length) total += t - since;
    down += d;
    since = t;
  }
  return total;
}
