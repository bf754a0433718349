/**
 * Pure: a line's points reduced to what a screen can show: per pixel column of `x(t)`,
 * the first, lowest, highest and last point, in order. The drawn line looks the same;
 * its size is bounded by the plot's width, whatever the number of points.
 */
export function decimateLine(points: ReadonlyArray<readonly [number, number]>, x: (t: number) => number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let column: Array<readonly [number, number]> = [];
  let columnX = NaN;
  const flush = () => {
    if (column.length === 0) return;
    const first = column[0]!;
    const last = column[column.length - 1]!;
    let lo = first;
    let hi = first;
    for (const p of column) {
      if (p[1] < lo[1]) lo = p;
      if (p[1] > hi[1]) hi = p;
    }
    const keep = new Set([first, lo, hi, last]);
    for (const p of column) if (keep.has(p)) out.push([p[0], p[1]]);
    column = [];
  };
  for (const p of points) {
    const px = Math.floor(x(p[0]));
    if (px !== columnX) {
      flush();
      columnX = px;
    }
    column.push(p);
  }
  flush();
  return out;
}
