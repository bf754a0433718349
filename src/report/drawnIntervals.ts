/** One bar of the Gantt chart: one or more blocked intervals too close to tell apart on screen. */
export interface DrawnInterval {
  startMs: number;
  endMs: number;
  /** Sum of the lengths of the intervals merged here (a vCPU's intervals do not overlap, so ≤ endMs − startMs). */
  blockedMs: number;
  /** How many intervals were merged. */
  count: number;
  /** The longest single interval merged here. */
  longestMs: number;
}

/**
 * Pure: intervals ready to draw. Short intervals separated by less than `minGapMs` (a
 * pixel's worth of time) are merged, keeping their count and total blocked time, so what
 * is drawn grows with the screen, not with the journal. An interval at least `keepMs`
 * long stays a bar of its own (unless it overlaps another), so a long wait is never
 * smeared into its short neighbours. If that leaves more than `maxDrawn` bars, both
 * thresholds double until it does not. Sorted, non-overlapping; intervals given in any order.
 */
export function mergeForDrawing(intervals: ReadonlyArray<readonly [number, number]>, minGapMs: number, maxDrawn: number, keepMs = Infinity): DrawnInterval[] {
  const sorted = intervals.map(([s, e]) => [s, Math.max(s, e)] as const).sort((p, q) => p[0] - q[0]);
  if (sorted.length === 0) return [];
  let last = -Infinity;
  for (const [, e] of sorted) last = Math.max(last, e);
  const span = last - sorted[0]![0];
  let gap = minGapMs;
  let keep = keepMs;
  for (;;) {
    const merged = mergeWithGap(sorted, gap, keep);
    if (merged.length <= Math.max(1, maxDrawn)) return merged;
    gap = gap > 0 ? gap * 2 : Math.max(span / Math.max(1, maxDrawn), Number.MIN_VALUE);
    keep = Math.max(keep * 2, gap);
  }
}

function mergeWithGap(sorted: ReadonlyArray<readonly [number, number]>, gap: number, keep: number): DrawnInterval[] {
  const out: DrawnInterval[] = [];
  let cur: DrawnInterval | null = null;
  for (const [s, e] of sorted) {
    const len = e - s;
    const overlaps = cur !== null && s < cur.endMs;
    const close = cur !== null && s - cur.endMs < gap && len < keep && !(cur.count === 1 && cur.longestMs >= keep);
    if (cur && (overlaps || close)) {
      cur.endMs = Math.max(cur.endMs, e);
      cur.blockedMs += len;
      cur.count += 1;
      cur.longestMs = Math.max(cur.longestMs, len);
    } else {
      cur = { startMs: s, endMs: e, blockedMs: len, count: 1, longestMs: len };
      out.push(cur);
    }
  }
  return out;
}
