/**
 * The benchmark contract. Every `bench/*.bench.ts` exports `benchmarks: Benchmark[]`;
 * `npm run bench [-- name-prefix...]` runs them, prints a table, writes
 * bench/results.json and the figures table of BENCHMARKS.md.
 *
 * Each figure is a median over several runs, reported beside a baseline measured in
 * the same run (a C program, a naive implementation, or a published figure), because
 * on these noisy machines only ratios measured together mean anything.
 */

export interface BenchResult {
  /** Median over `runs` runs. */
  median: number;
  /** 'GB/s', 'pages/s', 'events/s', 'µs', 'ms', 's', 'lines/s'... */
  unit: string;
  runs: number;
  /** True when a larger figure is better (throughput), false for latencies. */
  higherIsBetter: boolean;
  baseline?: {
    name: string;
    median: number;
    /** 'measured' in this run, or 'published' (e.g. QEMU's figure from the fixtures). */
    source: 'measured' | 'published';
  };
  /** Anything a reader needs to interpret the figure (placement, sizes). */
  notes?: string;
}

export interface Benchmark {
  /** Dotted name used across the issues, e.g. 'bitmap.scan.sparse'. */
  name: string;
  description: string;
  run(): Promise<BenchResult> | BenchResult;
}

/** Median of a non-empty list (pure). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of an empty list');
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Quantile q in [0,1] by nearest rank (pure). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

/** Runs `fn` `runs` times after `warmup` untimed runs; returns each run's seconds. */
export function timeRuns(runs: number, fn: () => void, warmup = 1): number[] {
  for (let i = 0; i < warmup; i++) fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return out;
}
