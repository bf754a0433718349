/**
 * Pure: a command's JSON result in the one unit of docs/json.md: every duration and time
 * in ms with a key ending in `Ms`, rounded to the µs. Engine figures kept in ns (`...Ns`)
 * or µs (`...Us`) are converted and renamed; counts and other values pass unchanged.
 */
export function inMs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(inMs);
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const unit = /Ns$/.test(k) ? 1e6 : /Us$/.test(k) ? 1e3 : /Ms$/.test(k) ? 1 : 0;
    if (unit === 0) out[k] = inMs(v);
    else out[`${k.slice(0, -2)}Ms`] = scale(v, unit);
  }
  return out;
}

function scale(v: unknown, unit: number): unknown {
  if (typeof v === 'number') return Number.isFinite(v) ? Math.round((v / unit) * 1000) / 1000 : v;
  if (Array.isArray(v)) return v.map((x) => scale(x, unit));
  return inMs(v);
}
