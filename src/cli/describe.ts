import { unpack } from 'msgpackr';
import { EVENT_KIND_NAMES, EventKind, MACHINE_NAMES, type EventRecord } from '../engine/events.js';

/** One record as a line a person can read (pure). */
export function describeRecord(r: EventRecord): string {
  const name = EVENT_KIND_NAMES[r.kind] ?? `kind ${r.kind}`;
  const at = `#${r.seq} t=${(r.t / 1e6).toFixed(3)}ms`;
  const where = r.block >= 0 ? ` block ${r.block} offset 0x${r.offset.toString(16)}` : '';
  let detail = ` a=${r.a} b=${r.b}`;
  const decoded = r.payload && (r.kind === EventKind.FX_STATE || r.kind === EventKind.FX_ERROR) ? tryUnpack(r.payload) : undefined;
  if (r.kind === EventKind.FX_STATE && decoded !== undefined) {
    const p = decoded as { from: string; to: string; event: string };
    detail = ` ${MACHINE_NAMES[r.a] ?? r.a}: ${p.from} -> ${p.to} on ${p.event}`;
  } else if (r.kind === EventKind.FX_ERROR && decoded !== undefined) {
    const p = decoded as { code: string; message: string };
    detail = ` ${p.code}: ${p.message}`;
  } else if (r.kind === EventKind.IN_FAULT) {
    detail = ` address 0x${r.offset.toString(16)} tid ${r.a}`;
  }
  const cause = r.cause >= 0 ? ` (cause #${r.cause})` : '';
  const payload = r.payload && decoded === undefined ? ` payload ${Buffer.from(r.payload.subarray(0, 32)).toString('hex')}${r.payload.length > 32 ? '…' : ''}` : '';
  return `${at} ${name}${where}${detail}${payload}${cause}`;
}

/** A payload decoded, or undefined when it does not decode (shown as bytes instead). */
function tryUnpack(payload: Uint8Array): unknown {
  try {
    const v = unpack(payload) as unknown;
    return v !== null && typeof v === 'object' ? v : undefined;
  } catch {
    return undefined;
  }
}
