/**
 * A fixed-size log-linear histogram of latencies in nanoseconds, for fault→placement
 * percentiles on the engine's hot path: recording allocates nothing and costs a few
 * arithmetic operations; memory is constant whatever the number of samples.
 *
 * Buckets: values below 2^SUB_BITS ns (64 ns) are counted exactly; above, each power
 * of two is split into 2^SUB_BITS equal buckets. A percentile is reported as the middle
 * of its bucket, clamped to the exact min and max, so its relative error is at most
 * 1/2^(SUB_BITS+1) (under 0.8 %). Count, sum (hence the mean), min and max are exact.
 * Values of 2^MAX_EXP ns (about 78 hours) and above share the last bucket.
 */

const SUB_BITS = 6;
const SUB = 1 << SUB_BITS;
const MAX_EXP = 48;
const BUCKETS = SUB + (MAX_EXP - SUB_BITS) * SUB;

export interface LatencySummary {
  count: number;
  /** Exact mean, ns (0 when empty). */
  meanNs: number;
  p50Ns: number;
  p90Ns: number;
  p99Ns: number;
  /** Exact, ns (0 when empty). */
  minNs: number;
  maxNs: number;
}

/** Serialised histogram: only the non-empty buckets, as [bucket index, count]. */
export interface LatencyHistogramSnapshot {
  subBits: number;
  count: number;
  sumNs: number;
  minNs: number;
  maxNs: number;
  buckets: Array<[number, number]>;
}

/** Pure: the bucket index of a value in ns (negative values count as 0). */
export function bucketOf(ns: number): number {
  const v = ns > 0 ? Math.floor(ns) : 0;
  if (v < SUB) return v;
  const exp = Math.floor(Math.log2(v));
  // log2 may round up just below a power of two: correct by one either way.
  const e = 2 ** exp > v ? exp - 1 : 2 ** (exp + 1) <= v ? exp + 1 : exp;
  if (e >= MAX_EXP) return BUCKETS - 1;
  const width = 2 ** (e - SUB_BITS);
  return SUB + (e - SUB_BITS) * SUB + Math.floor((v - 2 ** e) / width);
}

/** Pure: the [low, high) range in ns that bucket `i` counts. */
export function bucketRange(i: number): [number, number] {
  if (i < SUB) return [i, i + 1];
  const e = SUB_BITS + Math.floor((i - SUB) / SUB);
  const width = 2 ** (e - SUB_BITS);
  const low = 2 ** e + ((i - SUB) % SUB) * width;
  return [low, i === BUCKETS - 1 ? Infinity : low + width];
}

export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  private n = 0;
  private sum = 0;
  private min = Infinity;
  private max = 0;

  /** Counts one latency (ns). */
  record(ns: number): void {
    this.counts[bucketOf(ns)]!++;
    this.n++;
    this.sum += ns;
    if (ns < this.min) this.min = ns;
    if (ns > this.max) this.max = ns;
  }

  get count(): number {
    return this.n;
  }

  /**
   * Pure: the q-quantile (0..1) by nearest rank, as its bucket's middle clamped to
   * [min, max]; the first and last ranks are the exact min and max.
   */
  quantile(q: number): number {
    if (this.n === 0) return 0;
    const rank = Math.min(this.n, Math.max(1, Math.ceil(q * this.n)));
    if (rank === this.n) return this.max;
    if (rank === 1) return this.min;
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        const [low, high] = bucketRange(i);
        const mid = i < SUB ? low : high === Infinity ? this.max : (low + high) / 2;
        return Math.min(this.max, Math.max(this.min, mid));
      }
    }
    return this.max;
  }

  summary(): LatencySummary {
    return {
      count: this.n,
      meanNs: this.n === 0 ? 0 : this.sum / this.n,
      p50Ns: this.quantile(0.5),
      p90Ns: this.quantile(0.9),
      p99Ns: this.quantile(0.99),
      minNs: this.n === 0 ? 0 : this.min,
      maxNs: this.max,
    };
  }

  /** The non-empty buckets as [low ns, high ns, count], in increasing order. */
  buckets(): Array<[number, number, number]> {
    const out: Array<[number, number, number]> = [];
    for (let i = 0; i < BUCKETS; i++) {
      const c = this.counts[i]!;
      if (c !== 0) out.push([...bucketRange(i), c]);
    }
    return out;
  }

  toJSON(): LatencyHistogramSnapshot {
    const buckets: Array<[number, number]> = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i] !== 0) buckets.push([i, this.counts[i]!]);
    return { subBits: SUB_BITS, count: this.n, sumNs: this.sum, minNs: this.n === 0 ? 0 : this.min, maxNs: this.max, buckets };
  }

  static fromJSON(s: LatencyHistogramSnapshot): LatencyHistogram {
    if (s.subBits !== SUB_BITS) {
      throw new RangeError(`latency histogram snapshot has ${s.subBits} sub-bucket bits, expected ${SUB_BITS}`);
    }
    const h = new LatencyHistogram();
    for (const [i, c] of s.buckets) {
      if (!(Number.isInteger(i) && i >= 0 && i < BUCKETS)) throw new RangeError(`latency histogram snapshot: bad bucket ${i}`);
      h.counts[i] = c;
    }
    h.n = s.count;
    h.sum = s.sumNs;
    h.min = s.count === 0 ? Infinity : s.minNs;
    h.max = s.maxNs;
    return h;
  }
}
