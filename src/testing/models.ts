/**
 * Simple reference models: the obvious, slow implementation of what the engine does fast,
 * to hold an implementation (ours, or yours) to in a property.
 */
import { Bitmap } from '../engine/bitmap.js';

/** A bitmap as a Set of set bit indexes: the reference for `Bitmap` and any bitmap of yours. */
export class BitmapModel {
  readonly bits = new Set<number>();
  constructor(readonly size: number) {}
  setRange(start: number, count: number): void {
    for (let i = start; i < start + count; i++) this.bits.add(i);
  }
  clearRange(start: number, count: number): void {
    for (let i = start; i < start + count; i++) this.bits.delete(i);
  }
  findNextSet(from: number): number {
    for (let i = Math.max(0, from); i < this.size; i++) if (this.bits.has(i)) return i;
    return this.size;
  }
  findNextZero(from: number): number {
    for (let i = Math.max(0, from); i < this.size; i++) if (!this.bits.has(i)) return i;
    return this.size;
  }
  /** Maximal runs of set bits as [start, length]. */
  runs(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let i = 0;
    while (i < this.size) {
      if (!this.bits.has(i)) {
        i++;
        continue;
      }
      const s = i;
      while (i < this.size && this.bits.has(i)) i++;
      out.push([s, i - s]);
    }
    return out;
  }
  /** The model of a Bitmap's current bits. */
  static of(bm: Bitmap): BitmapModel {
    const m = new BitmapModel(bm.size);
    for (const [s, n] of bm.runs()) m.setRange(s, n);
    return m;
  }
}

/**
 * Host-page canonicalisation by its definition (reference section 7): every host page of
 * `pagesPerHostPage` target pages with one dirty page becomes wholly dirty (cut at the end).
 */
export function canonicalHostPagesModel(dirty: readonly boolean[], pagesPerHostPage: number): boolean[] {
  const out = [...dirty];
  for (let hp = 0; hp < out.length; hp += pagesPerHostPage) {
    const end = Math.min(out.length, hp + pagesPerHostPage);
    if (dirty.slice(hp, end).some(Boolean)) out.fill(true, hp, end);
  }
  return out;
}

/** The PostcopyState after each main-stream command, by the reference (sections 1 and 9); absent: refused. */
export type PostcopyStateName = 'NONE' | 'ADVISE' | 'DISCARD' | 'LISTENING' | 'RUNNING' | 'END';
export const POSTCOPY_COMMAND_TABLE: Readonly<Record<'ADVISE' | 'DISCARD' | 'LISTEN' | 'RUN' | 'EOS', Partial<Record<PostcopyStateName, PostcopyStateName>>>> = {
  ADVISE: { NONE: 'ADVISE' },
  DISCARD: { ADVISE: 'DISCARD', DISCARD: 'DISCARD' },
  LISTEN: { ADVISE: 'LISTENING', DISCARD: 'LISTENING' },
  RUN: { LISTENING: 'RUNNING' },
  EOS: { LISTENING: 'END', RUNNING: 'END' },
};
