/** A mapping from data values to pixels, with the ticks worth labelling. */
export interface Scale {
  (value: number): number;
  readonly domain: readonly [number, number];
  readonly range: readonly [number, number];
  ticks(): number[];
}

/** Pure: a linear scale; a zero-width domain maps everything to the start of the range. */
export function linearScale(domain: [number, number], range: [number, number], tickCount = 8): Scale {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  const f = ((v: number) => r0 + (v - d0) * k) as Scale;
  return Object.assign(f, { domain, range, ticks: () => niceTicks(d0, d1, tickCount) });
}

/** Pure: a base-10 log scale; values at or below 0 are clamped to the domain's start. */
export function logScale(domain: [number, number], range: [number, number]): Scale {
  const l0 = Math.log10(domain[0]);
  const l1 = Math.log10(domain[1]);
  const [r0, r1] = range;
  const k = l1 === l0 ? 0 : (r1 - r0) / (l1 - l0);
  const f = ((v: number) => r0 + (Math.log10(Math.max(v, domain[0])) - l0) * k) as Scale;
  return Object.assign(f, { domain, range, ticks: () => logTicks(domain[0], domain[1]) });
}

/** Pure: the step 1, 2 or 5 × 10^k that splits `span` into about `count` parts. */
export function niceStep(span: number, count: number): number {
  if (!(span > 0) || !Number.isFinite(span)) return 1;
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

/** Pure: round-numbered ticks within [min, max] (at least the two ends when the span is 0). */
export function niceTicks(min: number, max: number, count = 8): number[] {
  if (!(max > min)) return [min];
  const step = niceStep(max - min, count);
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

/** Pure: 1-2-5 ticks per decade when the domain spans few decades, powers of ten otherwise. */
export function logTicks(min: number, max: number): number[] {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const mults = hi - lo <= 3 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) {
    for (const m of mults) {
      const v = Number((m * 10 ** e).toPrecision(12));
      if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) ticks.push(v);
    }
  }
  return ticks;
}

/** Pure: the smallest round number (a multiple of a 1-2-5 step) at or above `v`; 1 for v ≤ 0. */
export function niceCeil(v: number, count = 5): number {
  if (!(v > 0)) return 1;
  const step = niceStep(v, count);
  const c = Math.ceil(v / step - 1e-9) * step; // the epsilon keeps 60000 at 60000, not 80000
  return c >= v ? c : c + step;
}
