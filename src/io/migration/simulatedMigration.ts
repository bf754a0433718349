import { MigCommand, RpMessage, TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { Destination, type EngineStats } from '../../engine/destination.js';
import { MachineId, type RecordSink, CountingSink } from '../../engine/events.js';
import type { BlocktimeReport } from '../../engine/blocktime.js';
import { Source, type PostcopyStartReport } from '../../engine/source.js';
import { decodePageRequest } from '../../engine/wire.js';
import { decodeRecvBitmapMessage } from '../../engine/receiveBitmap.js';
import { JournalReader } from '../../journal/journalReader.js';
import { JournalWriter } from '../../journal/journalWriter.js';
import { replay } from '../../journal/replay.js';
import { expectedMemory, seededRandom, type AccessPatternName } from '../backends/accessPatterns.js';
import { MockBackend } from '../backends/mockBackend.js';
import { ChunkPool } from '../backends/sparseMemory.js';
import { seededImage } from '../backends/guestImage.js';
import { PACKAGE_VERSION } from '../../paths.js';

export interface SimulatedMigrationOptions {
  /** Guest RAM bytes (one block 'pc.ram'). */
  sizeBytes: number;
  /** 4096, or 2 MiB for a huge-page block. */
  hostPageSize?: number;
  vcpus: number;
  workload: AccessPatternName;
  seed: number;
  preempt?: boolean;
  /** Target pages the source sends per 50 µs tick (the bandwidth). */
  pagesPerTick?: number;
  /** Accesses each vCPU attempts per tick. */
  accessesPerTick?: number;
  /** Share of RAM precopy sends before the switch to postcopy (default 0.5; the guest dirties pages meanwhile). */
  precopyFraction?: number;
  /** Cut the main channel once this fraction of postcopy pages has been sent, then recover. */
  breakAt?: number;
  /** The source's largest prefetch window after a request, in target pages (default 0: none). */
  prefetchPages?: number;
  /** Journal file to write (none: records are only counted). */
  journalPath?: string;
  /** Replace an existing journal at journalPath (default true). */
  overwrite?: boolean;
  /** Engine snapshots in the journal every this many events (default 100 000). */
  snapshotEvery?: number;
  /** Replay the journal at the end and report divergences (default: when journaling). */
  verifyReplay?: boolean;
  /**
   * Check the destination's memory at the end against the source image plus the vCPUs'
   * writes (default true). Off, `verified` only says whether every vCPU finished and
   * `mismatches` is empty: the run and its journal are the same (the check reads memory,
   * it records nothing), but the run skips a copy of the whole image and a read of the
   * whole destination memory. For building many journals (the bench fleet); tests verify.
   */
  verifyMemory?: boolean;
  /** Buffers reused by runs one after another in a process (see SimulationScratch). */
  scratch?: SimulationScratch;
  onProgress?: (p: SimulationProgress) => void;
}

export interface SimulationProgress {
  phase: 'precopy' | 'postcopy' | 'paused' | 'done';
  received: number;
  total: number;
  outstanding: number;
}

export interface SimulatedMigrationResult {
  verified: boolean;
  /** First differing pages (offsets), at most 10. */
  mismatches: number[];
  stats: EngineStats;
  blocktime: BlocktimeReport;
  discard: PostcopyStartReport;
  source: Source['counters'];
  simulatedMs: { precopy: number; postcopy: number; total: number };
  records: number;
  status: string;
  journalPath?: string;
  replay?: { ok: boolean; events: number; message?: string };
}

const TICK_NS = 50_000;
const BLOCK = 'pc.ram';

/**
 * Memory that runs of runSimulatedMigration one after another reuse: the source image's
 * buffer and the destination's 2 MiB chunks. Fresh memory costs a page fault per 4 KiB on
 * first touch (see ChunkPool), which for a 256 MiB guest was most of a run's time.
 * Holds as much as the largest run used until dropped. Not for runs at the same time.
 */
export class SimulationScratch {
  readonly chunkPool = new ChunkPool();
  private image: ArrayBuffer | null = null;

  /** A buffer of at least `size` bytes for the source image (its old bytes are garbage). */
  imageBuffer(size: number): ArrayBuffer {
    if (this.image === null || this.image.byteLength < size) {
      this.image = null; // let the old one go before the new one is allocated
      this.image = new ArrayBuffer(size);
    }
    return this.image;
  }
}

/**
 * A whole postcopy migration in one process, on a simulated clock: a Source over a seeded
 * guest image, the engine with the mock backend and simulated vCPUs, a return path as a
 * queue, optional break and recovery, a real journal, and at the end the destination's
 * memory checked page by page against the source image plus the vCPUs' own writes.
 * Deterministic for a given seed.
 */
export function runSimulatedMigration(opts: SimulatedMigrationOptions): SimulatedMigrationResult {
  const hps = opts.hostPageSize ?? TARGET_PAGE_SIZE;
  const size = opts.sizeBytes;
  const image = seededImage(size, opts.seed, opts.scratch?.imageBuffer(size));
  const backend = new MockBackend([{ name: BLOCK, length: size, hostPageSize: hps }], opts.scratch ? { chunkPool: opts.scratch.chunkPool } : {});
  const verifyMemory = opts.verifyMemory ?? true;
  const vcpuTids = Array.from({ length: opts.vcpus }, (_, i) => 73001 + i);
  let sink: RecordSink = new CountingSink();
  let writer: JournalWriter | null = null;
  if (opts.journalPath) {
    writer = JournalWriter.create(opts.journalPath, {
      engineVersion: PACKAGE_VERSION,
      source: 'engine',
      created: new Date().toISOString(),
      timeOriginNs: 0,
      blocks: [{ name: BLOCK, length: size, hostPageSize: hps, hostAddress: backend.hostAddress(0) }],
      vcpuTids,
      capabilities: opts.preempt ? ['preempt'] : [],
      blocktimeMode: 'both',
      run: { kind: 'simulation', backend: 'mock', workload: opts.workload, seed: opts.seed, breakAt: opts.breakAt ?? null },
    }, { overwrite: opts.overwrite ?? true, ...(opts.snapshotEvery !== undefined ? { snapshotEvery: opts.snapshotEvery } : {}) });
    sink = writer;
  }
  const rp: Array<[number, Uint8Array]> = [];
  let linkUp = true;
  const engine = new Destination({ blocks: [{ name: BLOCK, length: size, hostPageSize: hps }], vcpuTids, preempt: !!opts.preempt }, backend, {
    send(type, payload) {
      if (!linkUp) return false;
      rp.push([type, payload.slice()]);
      return true;
    },
  }, sink);
  writer?.setSnapshotSource(() => engine.snapshot());
  let t = 0;
  const source = new Source([{ name: BLOCK, hostPageSize: hps, memory: image }], {
    command: (cmd, payload) => engine.command(cmd, payload, t),
    page: (ch, b, off, zero, data, dOff) => engine.page(ch, b, off, zero, data, dOff, t),
    endOfStream: (ch) => engine.endOfStream(ch, t),
  }, !!opts.preempt, opts.prefetchPages ?? 0);

  const pagesPerTick = opts.pagesPerTick ?? 16;
  const accessesPerTick = opts.accessesPerTick ?? 32;
  const totalPages = size / TARGET_PAGE_SIZE;
  const progress = (phase: SimulationProgress['phase']): void =>
    opts.onProgress?.({ phase, received: engine.blocks[0]!.received.count(), total: totalPages, outstanding: engine.requested.size });

  // Precopy: the guest runs on the source and dirties pages while RAM is copied.
  source.advise();
  const dirtier = seededRandom(opts.seed ^ 0x5eed);
  const precopyTarget = Math.floor(totalPages * (opts.precopyFraction ?? 0.5));
  for (let sent = 0; sent < precopyTarget; ) {
    const n = source.precopyStep(Math.min(pagesPerTick, precopyTarget - sent));
    if (n === 0) break;
    sent += n;
    for (let d = 0; d < 2; d++) {
      const page = Math.floor(dirtier() * totalPages);
      image[page * TARGET_PAGE_SIZE + 7] = (image[page * TARGET_PAGE_SIZE + 7]! + 1) & 0xff;
      source.markDirty(0, page * TARGET_PAGE_SIZE);
    }
    t += TICK_NS;
    if ((t / TICK_NS) % 200 === 0) {
      progress('precopy');
      writer?.flush();
    }
  }
  const precopyEnd = t;

  // The switch: the source stops, its image is final; the destination's vCPUs start at RUN.
  const discard = source.startPostcopy();
  if (opts.preempt) engine.channelConnected(1, t); // the preempt channel connects at LISTEN
  const plan = { pattern: opts.workload, vcpus: opts.vcpus, seed: opts.seed, block: 0 } as const;
  backend.startVcpus(plan);
  const expected = verifyMemory ? expectedMemory(image, plan) : null;
  const postcopyPagesAtStart = source.remaining();
  let broken = false;
  let brokeAt = -1;
  let ticks = 0;
  while (!(source.finished() && engine.stateOf(MachineId.MIGRATION) === 'completed')) {
    t += TICK_NS;
    ticks++;
    if (ticks > 50_000_000) throw new Error('simulation did not converge');
    if (linkUp) {
      for (const [type, payload] of rp.splice(0)) {
        if (type === RpMessage.REQ_PAGES || type === RpMessage.REQ_PAGES_ID) source.request(decodePageRequest(type, payload));
      }
      source.postcopyStep(Math.max(1, Math.floor(pagesPerTick / (hps / TARGET_PAGE_SIZE))));
      if (source.finished() && engine.postcopyState < 5) source.finish();
    }
    backend.stepVcpus(accessesPerTick * opts.vcpus, t);
    if (opts.breakAt !== undefined && !broken && linkUp) {
      const sentFraction = 1 - source.remaining() / Math.max(1, postcopyPagesAtStart);
      if (sentFraction >= opts.breakAt && engine.postcopyState < 5) {
        broken = true;
        linkUp = false;
        brokeAt = ticks;
        rp.length = 0; // messages in flight are lost with the connection
        engine.channelBroken(0, 'simulated connection cut', t);
        progress('paused');
      }
    }
    if (!linkUp && ticks - brokeAt >= 200) {
      // Reconnect: receive bitmaps go back, the source rebuilds its dirty bitmap, RESUME.
      linkUp = true;
      engine.channelConnected(0, t);
      for (const [type, payload] of rp.splice(0)) {
        if (type === RpMessage.RECV_BITMAP) {
          const m = decodeRecvBitmapMessage(payload);
          source.reloadReceiveBitmap(m.blockName, m.blob);
        }
      }
      source.forgetLastRequestBlock();
      if (opts.preempt) engine.channelConnected(1, t);
      engine.command(MigCommand.POSTCOPY_RESUME, new Uint8Array(0), t);
    }
    if (ticks % 500 === 0) {
      progress('postcopy');
      writer?.flush();
    }
  }
  // Let the vCPUs finish their work on the now complete memory.
  for (let guard = 0; !backend.allVcpusFinished() && guard < 10_000_000; guard++) backend.stepVcpus(1024, t);
  const postcopyEnd = t;
  progress('done');

  const mismatches: number[] = [];
  if (expected !== null) {
    const mem = backend.read(0, 0, size);
    for (let off = 0; off < size && mismatches.length < 10; off += TARGET_PAGE_SIZE) {
      if (Buffer.compare(mem.subarray(off, off + TARGET_PAGE_SIZE), expected.subarray(off, off + TARGET_PAGE_SIZE)) !== 0) mismatches.push(off);
    }
  }
  const vcpusFinished = backend.allVcpusFinished();
  if (opts.scratch) backend.releaseMemory();
  const records = writer ? writer.nextSeq : (sink as CountingSink).count;
  writer?.close();
  const result: SimulatedMigrationResult = {
    verified: mismatches.length === 0 && vcpusFinished,
    mismatches,
    stats: engine.stats,
    blocktime: engine.blocktime.report(),
    discard,
    source: source.counters,
    simulatedMs: { precopy: precopyEnd / 1e6, postcopy: (postcopyEnd - precopyEnd) / 1e6, total: postcopyEnd / 1e6 },
    records,
    status: engine.stateOf(MachineId.MIGRATION),
  };
  if (opts.journalPath) {
    result.journalPath = opts.journalPath;
    if (opts.verifyReplay ?? true) {
      const j = JournalReader.open(opts.journalPath);
      try {
        const r = replay(j);
        result.replay = { ok: r.ok, events: r.events };
        if (r.divergence) result.replay.message = r.divergence.message;
      } finally {
        j.close();
      }
    }
  }
  return result;
}
