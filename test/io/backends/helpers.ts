import { TARGET_PAGE_SIZE } from '../../../src/engine/constants.js';
import type { BlockLayout, FaultBatch } from '../../../src/engine/ports.js';
import { MockBackend, type MockBackendOptions } from '../../../src/io/backends/mockBackend.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const PAGE = TARGET_PAGE_SIZE;

/** One fault as the tests look at it. */
export interface Fault {
  address: number;
  tid: number;
  timeNs: number;
}

/** Flattens batches into faults (tests only: one object per fault is fine here). */
export function faultsOf(batches: readonly FaultBatch[]): Fault[] {
  const out: Fault[] = [];
  for (const b of batches) {
    for (let i = 0; i < b.count; i++) out.push({ address: b.addresses[i]!, tid: b.tids[i]!, timeNs: b.timesNs[i]! });
  }
  return out;
}

/** A deterministic source image: byte i of page p depends on both, so misplaced pages show. */
export function sourceImage(length: number, salt = 0): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (Math.floor(i / PAGE) * 31 + i * 7 + salt) & 0xff;
  return out;
}

/** A backend over `blocks` that is listening (faults collected in `batches`) with every block registered. */
export function listeningBackend(blocks: BlockLayout[], options: MockBackendOptions = {}): { be: MockBackend; batches: FaultBatch[] } {
  const be = new MockBackend(blocks, options);
  const batches: FaultBatch[] = [];
  be.listen((b) => batches.push(b));
  for (let i = 0; i < blocks.length; i++) be.register(i);
  return { be, batches };
}

/**
 * A minimal postcopy destination: steps the vCPUs of `block` and, for every fault,
 * copies the faulting host page from `source` (EEXIST is fine: another vCPU's fault
 * placed it). Once the vCPUs are done it pushes every page still missing, as the
 * source's background transfer would. Returns the faults seen, in order.
 */
export function serveFaultsUntilDone(be: MockBackend, block: number, source: Uint8Array, maxSteps = 1_000_000): Fault[] {
  const seen: Fault[] = [];
  const base = be.hostAddress(block);
  const hps = be.blocks[block]!.hostPageSize;
  const pending: number[] = [];
  be.listen((batch) => {
    for (let i = 0; i < batch.count; i++) {
      seen.push({ address: batch.addresses[i]!, tid: batch.tids[i]!, timeNs: batch.timesNs[i]! });
      pending.push(batch.addresses[i]! - base);
    }
  });
  be.register(block);
  for (let step = 0; step < maxSteps && !be.allVcpusFinished(); step++) {
    be.stepVcpus(8, step * 1000);
    while (pending.length > 0) {
      const offset = pending.shift()!;
      const hostPage = offset - (offset % hps);
      be.copy(block, hostPage, source, hostPage, hps);
    }
  }
  for (let offset = 0; offset < source.length; offset += hps) be.copy(block, offset, source, offset, hps);
  return seen;
}
