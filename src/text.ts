/** Numbers and times as people read them, for the command line and the report (pure). */

/** Milliseconds for people: '0.054 ms', '23.3 ms', '1.18 s' (pure). */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '—';
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(3)} ms`;
}

/** Pure: 61200 → '61 200' (thin-space groups: unambiguous in every locale). */
export function groupDigits(n: number): string {
  if (!Number.isFinite(n)) return '—';
  const [int, frac] = String(Math.abs(n)).split('.');
  const grouped = int!.replace(/\B(?=(\d{3})+(?!\d))/g, '\u202f');
  return `${n < 0 ? '−' : ''}${grouped}${frac !== undefined ? `.${frac}` : ''}`;
}

/** Pure: a short axis label for a count: 950, 1.2k, 61k, 3.4M. */
export function shortCount(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e6) return `${trim(n / 1e6, a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e3) return `${trim(n / 1e3, a >= 1e4 ? 0 : 1)}k`;
  return trim(n, 2);
}

/** Pure: a tick value without float noise or useless zeros: 0.1, 2, 2.5, 0.005. */
export function tickLabel(v: number): string {
  if (v === 0) return '0';
  const digits = Math.max(0, Math.min(6, 2 - Math.floor(Math.log10(Math.abs(v)))));
  return trim(v, digits);
}

/** Pure: 0x-prefixed lower-case hex of a non-negative integer. */
export function hex(n: number): string {
  return `0x${Math.trunc(n).toString(16)}`;
}

function trim(v: number, digits: number): string {
  return v.toFixed(digits).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}
