/** Test helpers: decode a whole connection direction and summarise the items. */
import { WireError } from '../../../src/errors.js';
import type { MainItem, PreemptItem, ReturnPathItem } from '../../../src/engine/qemuWire/index.js';

interface Decoder<Item> {
  push(chunk: Uint8Array): Item[];
  end(): void;
}

export interface Decoded<Item> {
  items: Item[];
  /** The error end() (or a push) threw, or null when the stream decoded to its end. */
  error: WireError | null;
}

/** Pushes every chunk, then end(); a WireError is returned with the items before it. */
export function decodeAll<Item>(decoder: Decoder<Item>, chunks: Iterable<Uint8Array>): Decoded<Item> {
  const items: Item[] = [];
  try {
    for (const chunk of chunks) for (const item of decoder.push(chunk)) items.push(item);
    decoder.end();
  } catch (e) {
    if (e instanceof WireError) return { items, error: e };
    throw e;
  }
  return { items, error: null };
}

/** How many items of each kind. */
export function countKinds(items: ReadonlyArray<{ kind: string }>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[item.kind] = (counts[item.kind] ?? 0) + 1;
  return counts;
}

/**
 * Pages and zero pages of the main stream "in postcopy": after the LISTEN item that the
 * PACKAGED holds. (The package's LISTEN, PING and RUN come out together, so counting from
 * the packaged item or from the RUN gives the same numbers.)
 */
export function postcopyPages(items: readonly MainItem[], after: MainItem['kind'] = 'listen'): { pages: number; zeroPages: number } {
  let inPostcopy = false;
  let pages = 0;
  let zeroPages = 0;
  for (const item of items) {
    if (item.kind === after) inPostcopy = true;
    else if (inPostcopy && item.kind === 'page') pages++;
    else if (inPostcopy && item.kind === 'zero-page') zeroPages++;
  }
  return { pages, zeroPages };
}

/** FNV-1a over some bytes: lets tests compare page contents without keeping them. */
export function fnv(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}

/** An item as plain JSON-able data: byte views replaced by their length and hash. */
export function plain(item: MainItem | PreemptItem | ReturnPathItem, withOffset = true): unknown {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(item)) {
    if (!withOffset && key === 'offset') continue;
    out[key] = value instanceof Uint8Array ? { bytes: value.length, fnv: fnv(value) } : value;
  }
  return out;
}
