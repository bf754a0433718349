import { esc } from './escape.js';

export type Attrs = Record<string, string | number | undefined>;

/** Pure: a coordinate rounded to 0.1 px: enough for any screen, and it keeps files small. */
export function px(v: number): number {
  return Math.round(v * 10) / 10;
}

/** Pure: attributes as ` k="v"` (escaped; undefined values left out). */
export function attrs(a: Attrs): string {
  let out = '';
  for (const [k, v] of Object.entries(a)) {
    if (v === undefined) continue;
    out += ` ${k}="${esc(typeof v === 'number' ? px(v) : v)}"`;
  }
  return out;
}

/** Pure: an element; `tooltip` becomes a child `<title>` (the browser shows it on hover). */
export function el(name: string, a: Attrs, content = '', tooltip?: string): string {
  const tip = tooltip !== undefined ? `<title>${esc(tooltip)}</title>` : '';
  return tip || content ? `<${name}${attrs(a)}>${tip}${content}</${name}>` : `<${name}${attrs(a)}/>`;
}

/** Pure: a text element; the text is escaped. */
export function text(x: number, y: number, content: string, a: Attrs = {}): string {
  return `<text${attrs({ x, y, ...a })}>${esc(content)}</text>`;
}

/** Pure: a whole plot: an `<svg>` with an id, an accessible `<title>` and a description. */
export function svgPlot(id: string, title: string, width: number, height: number, body: string): string {
  return `<svg id="${esc(id)}" class="plot" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-labelledby="${esc(id)}-title"><title id="${esc(id)}-title">${esc(title)}</title>${body}</svg>`;
}
