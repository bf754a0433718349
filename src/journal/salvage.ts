import { rmSync } from 'node:fs';
import { JournalError } from '../errors.js';
import { TAIL_SUFFIX } from './schema.js';
import { JournalReader } from './journalReader.js';
import { JournalWriter } from './journalWriter.js';
import type { EventKindValue } from '../engine/events.js';
import { payloadOf } from './segment.js';

/** A range of the input journal that could not be read: events from..to-1 (to null: how many is unknown). */
export interface DroppedRange {
  from: number;
  to: number | null;
  reason: string;
}

export interface SalvageResult {
  input: string;
  output: string;
  /** Events written to the new journal (numbered 0..kept-1). */
  kept: number;
  /** Of them, from the crash tail. */
  fromTail: number;
  /** Ranges of the input that were left out, by their sequence numbers in the input. */
  dropped: DroppedRange[];
  /** Events left out whose count is known. */
  droppedCount: number;
  /** Events after a dropped range were renumbered (their sequence numbers moved down). */
  renumbered: boolean;
  /** Causes that pointed into a dropped range (set to -1). */
  causesCleared: number;
}

/**
 * Copies every readable event of `input` (its sound SQLite segments, then the readable
 * events of its crash tail) into a new journal at `output`, in order, with the input's
 * meta plus `run.salvagedFrom` saying what was kept and dropped. The input is opened
 * read-only and never changed. Events after a dropped range are renumbered so the new
 * journal has no gap; their causes follow them (a cause inside a dropped range becomes -1).
 * Snapshots are not copied (replay goes from the start). Throws JournalError when the
 * input's meta cannot be read (there is nothing to rebuild a journal around) or the output
 * cannot be written.
 */
export function salvageJournal(input: string, output: string, opts: { overwrite?: boolean } = {}): SalvageResult {
  const reader = JournalReader.open(input);
  let writer: JournalWriter | null = null;
  try {
    const { formatVersion: _v, ...meta } = reader.meta;
    writer = JournalWriter.create(output, meta, { overwrite: opts.overwrite ?? false, crashSafe: false, snapshotEvery: 0 });
    const dropped: DroppedRange[] = [];
    /** Input seq -> output seq: the sum of dropped lengths before it. */
    const shift = (seq: number): number => {
      let minus = 0;
      for (const d of dropped) {
        if (seq < d.from) break;
        if (d.to === null || seq < d.to) return -1;
        minus += d.to - d.from;
      }
      return seq - minus;
    };
    let kept = 0;
    let fromTail = 0;
    let causesCleared = 0;
    let renumbered = false;
    for (const item of reader.scan()) {
      if (!('segment' in item)) {
        dropped.push(item);
        if (item.to === null) break; // nothing after an unknown extent can be placed
        continue;
      }
      const seg = item.segment;
      if (dropped.length > 0) renumbered = true;
      for (let i = 0; i < seg.count; i++) {
        let cause = seg.cause[i]!;
        if (cause >= 0) {
          const c = shift(cause);
          if (c < 0) causesCleared++;
          cause = c;
        }
        writer.append(seg.kind[i]! as EventKindValue, seg.t[i]!, cause, seg.block[i]!, seg.offset[i]!, seg.a[i]!, seg.b[i]!, payloadOf(seg, i));
      }
      kept += seg.count;
      if (item.fromTail) fromTail += seg.count;
    }
    const droppedCount = dropped.reduce((n, d) => n + (d.to === null ? 0 : d.to - d.from), 0);
    writer.updateMeta({ run: { ...(meta.run ?? {}), salvagedFrom: { journal: input, kept, dropped, renumbered, causesCleared } } });
    writer.close();
    writer = null;
    // Nothing readable: no journal is better than an empty one that looks like a result.
    if (kept === 0) for (const suffix of ['', '-wal', '-shm', TAIL_SUFFIX]) rmSync(output + suffix, { force: true });
    return { input, output, kept, fromTail, dropped, droppedCount, renumbered, causesCleared };
  } catch (err) {
    if (writer !== null) {
      // A half-written salvage is no journal: what this call created goes.
      try {
        writer.close();
      } catch {
        // removed below anyway
      }
      for (const suffix of ['', '-wal', '-shm', TAIL_SUFFIX]) rmSync(output + suffix, { force: true });
    }
    if (err instanceof JournalError) throw err;
    throw new JournalError(output, -1, `cannot write the salvaged journal: ${(err as Error).message}`);
  } finally {
    reader.close();
  }
}
