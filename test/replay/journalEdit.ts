import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EventRecord } from '../../src/engine/events.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import { JournalWriter } from '../../src/journal/journalWriter.js';
import { scratchDir } from '../scratchDir.js';

/** A fresh temporary path. */
export function tmpPath(name: string): string {
  return join(scratchDir('pcreplay-'), name);
}

/** Every record of a journal, as objects (payloads copied). */
export function readAll(path: string): { meta: JournalReader['meta']; records: EventRecord[] } {
  const r = JournalReader.open(path);
  const records = [...r.records()].map((x) => ({ ...x, payload: x.payload ? x.payload.slice() : null }));
  const meta = r.meta;
  r.close();
  return { meta, records };
}

/** Writes `records` (renumbered in order) as a new journal with `meta`; returns its path. */
export function writeAll(meta: JournalReader['meta'], records: EventRecord[], name = 'edited.journal'): string {
  const path = tmpPath(name);
  const w = JournalWriter.create(path, meta, { segmentEvents: 128, crashSafe: false });
  for (const r of records) w.append(r.kind, r.t, r.cause, r.block, r.offset, r.a, r.b, r.payload);
  w.close();
  return path;
}

/** A copy of a fixture in a temporary folder (replay may fold or checkpoint). */
export function copyOf(path: string): string {
  const dst = tmpPath('copy.journal');
  copyFileSync(path, dst);
  return dst;
}
