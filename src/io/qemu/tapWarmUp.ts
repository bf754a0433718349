/**
 * Warms `postcopy tap`'s recorder before the tap listens. A tap records one migration and
 * exits, so its decoder and recorder always start cold: V8 interprets them, then optimizes
 * and deoptimizes them while the first hundred thousand pages go by, and that CPU comes out
 * of the two QEMUs the tap sits between (on a 2-core host the recorder's thread used
 * 170-210 ms per 500 MB migration cold, 150-170 ms after this; BENCHMARKS.md, tap.qemu.total).
 * So the worker first records a synthetic stream of the same shape (the project's own
 * encoder: RAM sections of named and CONTINUE pages and zero pages, PINGs, chunks that end
 * inside records; REQ_PAGES_ID and PONG the other way) into a throwaway journal, removed
 * after.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { endOfSection, endOfStream, memSize, pageRecordHeader, pageRequest, ping, pong, sectionFooter, sectionPart, sectionStart, streamHeader, zeroPageRecord } from '../../engine/qemuWire/index.js';
import { JournalWriter } from '../../journal/journalWriter.js';
import { Direction, TapRecorder, type TapSummary } from './tapRecorder.js';

/** Pages in the synthetic stream: enough for V8 to settle on optimized code (~0.3 s here). */
export const WARM_UP_PAGES = 10_000;
const BLOCK = 'pc.ram';
const SECTION = 2;
const PAGES_PER_PART = 64;

/** Pure: a QEMU main stream of `pages` pages (every 17th a ZERO record), from the header to EOF. */
export function warmUpStream(pages: number): Uint8Array {
  const pieces: Uint8Array[] = [streamHeader(), sectionStart(SECTION, 'ram', 0, 4), memSize([{ name: BLOCK, usedLength: 1 << 30 }]), endOfSection(), sectionFooter(SECTION)];
  const data = new Uint8Array(TARGET_PAGE_SIZE).fill(0x5a);
  for (let n = 0, part = 0; n < pages; part++) {
    pieces.push(sectionPart(SECTION));
    for (let i = 0; i < PAGES_PER_PART && n < pages; i++, n++) {
      const offset = (n % (1 << 18)) * TARGET_PAGE_SIZE;
      const block = i === 0 ? BLOCK : null; // named first, CONTINUE after, as QEMU writes them
      if (n % 17 === 5) pieces.push(zeroPageRecord(offset, block));
      else pieces.push(pageRecordHeader(offset, block), data);
    }
    pieces.push(endOfSection(), sectionFooter(SECTION));
    if (part % 8 === 0) pieces.push(ping(part));
  }
  pieces.push(endOfStream());
  return Buffer.concat(pieces);
}

/** Records the synthetic stream through a real recorder and journal (in a folder of `parent`, removed after); returns what it saw. */
export function warmUpRecorder(pages = WARM_UP_PAGES, parent = tmpdir()): TapSummary {
  const dir = mkdtempSync(join(parent, 'postcopy-tap-warm-up-'));
  try {
    const writer = JournalWriter.create(join(dir, 'warm-up.db'), TapRecorder.initialMeta({}, 0), { crashSafe: false, autoCheckpoint: false });
    const recorder = new TapRecorder(writer, {});
    const stream = warmUpStream(pages);
    recorder.opened(1, 0, 'warm-up', 'warm-up');
    // Reads of two sizes that end inside records, as the relay's do (what is there, up to 1 MiB).
    let t = 1;
    for (let from = 0, k = 0; from < stream.length; k++) {
      const size = k % 4 === 3 ? (1 << 20) - 24 : (1 << 16) - 13;
      recorder.data(1, Direction.TO_DESTINATION, stream.subarray(from, Math.min(stream.length, from + size)), t++);
      from += size;
      if (k % 8 === 0) {
        recorder.data(1, Direction.TO_SOURCE, pageRequest(BLOCK, (k % 1000) * TARGET_PAGE_SIZE, TARGET_PAGE_SIZE), t);
        recorder.data(1, Direction.TO_SOURCE, pong(k), t);
        writer.flush();
      }
    }
    recorder.closed(1, Direction.TO_DESTINATION, stream.length, t);
    const summary = recorder.finish();
    writer.close();
    return summary;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
