import type { Scale } from './scale.js';
import { text, el } from './svg.js';

/** Pure: a bottom axis at `y` with ticks, light grid lines up to `gridTop`, and a label with units. */
export function xAxis(scale: Scale, y: number, gridTop: number, label: string, format: (v: number) => string, ticks = scale.ticks()): string {
  const [r0, r1] = scale.range;
  let out = el('line', { x1: r0, x2: r1, y1: y, y2: y, class: 'axis' });
  for (const t of ticks) {
    const x = scale(t);
    out += el('line', { x1: x, x2: x, y1: gridTop, y2: y, class: 'grid' });
    out += el('line', { x1: x, x2: x, y1: y, y2: y + 5, class: 'axis' });
    out += text(x, y + 18, format(t), { class: 'tick', 'text-anchor': 'middle' });
  }
  out += text((r0 + r1) / 2, y + 38, label, { class: 'axis-label', 'text-anchor': 'middle' });
  return out;
}

/** Pure: a left axis at `x` with ticks, grid lines across to `gridRight`, and a rotated label with units. */
export function yAxis(scale: Scale, x: number, gridRight: number, label: string, format: (v: number) => string, ticks = scale.ticks()): string {
  const [r0, r1] = scale.range;
  let out = el('line', { x1: x, x2: x, y1: r0, y2: r1, class: 'axis' });
  for (const t of ticks) {
    const y = scale(t);
    out += el('line', { x1: x, x2: gridRight, y1: y, y2: y, class: 'grid' });
    out += el('line', { x1: x - 5, x2: x, y1: y, y2: y, class: 'axis' });
    out += text(x - 8, y + 4, format(t), { class: 'tick', 'text-anchor': 'end' });
  }
  const mid = (r0 + r1) / 2;
  out += text(x - 58, mid, label, { class: 'axis-label', 'text-anchor': 'middle', transform: `rotate(-90 ${x - 58} ${mid})` });
  return out;
}
