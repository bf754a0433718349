/**
 * Loads the native addon (native/, built by node-gyp inside `npm ci`) and describes its
 * JavaScript surface. Everything here is a thin typed view: the guarantees (range checks,
 * EEXIST/EAGAIN handling, thread teardown) live in the C++ and are documented in
 * uffdBackend.ts, which is what the rest of the engine uses.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BackendError } from '../errors.js';
import { ADDON_PATH } from '../paths.js';
import type { BlockLayout, FaultBatch, PlaceOutcomeValue, SupportReport } from '../engine/ports.js';

/** A range the guest removed (UFFD_EVENT_REMOVE): unregistered and dropped. */
export interface RemovedRange {
  /** Host address of the first byte. */
  address: number;
  length: number;
}

/**
 * The read-* patterns walk as their namesakes but only read (guest memory stays as placed).
 * bootblock and bootblock-random play the guests of guest/ (see accessPatterns.ts: each vCPU
 * on its part of [1/256, 240/256) of the region, byte 0 of each page, sequentially or at the
 * pages of the random guest's LCG with vCPU i seeded i + 1; `seed` is not used); their read-*
 * variants make the same walks reading byte 0 (for `receive`, whose guest is QEMU's).
 */
export type VcpuPattern =
  | 'sequential-increment'
  | 'random'
  | 'hot-set'
  | 'bootblock'
  | 'bootblock-random'
  | 'read-sequential'
  | 'read-random'
  | 'read-hot-set'
  | 'read-bootblock'
  | 'read-bootblock-random';

/** How the vCPU worker threads play the guest. */
export interface VcpuOptions {
  /** Default 'sequential-increment'. */
  pattern?: VcpuPattern;
  /** Number of threads; the region is split into equal shares of 4 KiB pages. Default 1. */
  vcpus?: number;
  /** Seed of 'random' and 'hot-set' (the same seed gives the same walk). Default 1. */
  seed?: number;
  /** Block index. Default 0. */
  block?: number;
  /** Region within the block (4 KiB aligned). Default: the whole used length. */
  offset?: number;
  length?: number;
  /** 'sequential-increment' / 'bootblock': passes over the share. Default 1, so that runs end. */
  passes?: number;
  /** 'random' / 'hot-set' / 'bootblock-random': accesses per vCPU. Default: one per page of the share. */
  iterations?: number;
  /** 'random' / 'hot-set' / 'bootblock-random': run this long instead of a number of iterations; 'bootblock': passes until then, the last one possibly cut short (instead of `passes`). */
  durationMs?: number;
  /** 'hot-set': pages in each vCPU's hot set (seeded choice). Default 64. */
  hotSetPages?: number;
  /** 'hot-set': fraction of accesses that go to the hot set. Default 0.9. */
  hotFraction?: number;
  /** vCPU i runs on cpus[i % cpus.length]. Default: not pinned. */
  cpus?: number[];
  /** Record the first N access latencies (ns) of each vCPU. Default 0. */
  latencySamples?: number;
}

/** What one vCPU thread did. */
export interface VcpuReport {
  index: number;
  /** gettid() of the thread: the tid fault messages carry (THREAD_ID). */
  tid: number;
  finished: boolean;
  /** Pages touched, repeats included. */
  accesses: number;
  /** Page faults the thread took (getrusage minor + major: userfaults included). */
  faults: number;
  elapsedNs: number;
  /** Host address of the access in progress, when not finished (0 otherwise). */
  blockedAt: number;
  latenciesNs: Float64Array;
}

/** Diagnostics of one host: fds, threads, registrations, counters. */
export interface UffdStatus {
  closed: boolean;
  /** The userfault fd, or -1. */
  fd: number;
  openedWith: string;
  /** The fault reader's quit eventfd, or -1. */
  eventFd: number;
  readerRunning: boolean;
  /** 'thread' or 'loop' (see ReaderOptions.mode). */
  mode: 'thread' | 'loop';
  readerTid: number;
  readerFailure: string;
  /** Features granted by the handshake, by name. */
  features: string;
  vcpusActive: boolean;
  registered: boolean[];
  /** Per block: [offset, length] ranges the guest removed. */
  removed: [number, number][][];
  stats: {
    faults: number;
    guestRemoves: number;
    ownRemoves: number;
    alreadyPresent: number;
    retries: number;
    dropped: number;
    unknownEvents: number;
  };
}

export interface ReaderOptions {
  /**
   * 'thread' (default): a native fault reader thread polls the userfault fd and a quit
   * eventfd and hands batches to the JavaScript thread (thread-safe function).
   * 'loop': no reader thread; the JavaScript thread's event loop watches the fd (uv_poll)
   * and reads the faults itself: one thread hop less per fault (lower latency, see
   * bench/native.bench.ts), at the price that a discard() of a registered range is done
   * by unregister / madvise / register (no REMOVE event to wait for) and removeAsGuest()
   * is refused.
   */
  mode?: 'thread' | 'loop';
  /**
   * Spin-then-poll: keep reading the (non-blocking) fd this long after the last message
   * before sleeping in poll(2). In 'loop' mode the spin holds the event loop.
   */
  spinUs?: number;
  /** Pin the fault reader thread to these CPUs. */
  cpus?: number[];
}

export interface NativeHost {
  hostAddress(block: number): number;
  listen(onFaults: (batch: FaultBatch) => void, onRemoved: ((ranges: RemovedRange[]) => void) | undefined, options: ReaderOptions): void;
  register(block: number): void;
  unregister(block: number): void;
  discard(block: number, offset: number, length: number): void;
  removeAsGuest(block: number, offset: number, length: number): void;
  setHugePages(block: number, enabled: boolean): void;
  copy(block: number, offset: number, data: Uint8Array, dataOffset: number, length: number): PlaceOutcomeValue;
  write(block: number, offset: number, data: Uint8Array, dataOffset: number, length: number): void;
  resize(block: number, length: number): void;
  stopListening(): void;
  /** Delivers the faults read but not yet handed over, synchronously; returns how many. */
  takeFaults(): number;
  zero(block: number, offset: number, length: number): PlaceOutcomeValue;
  /** A run of host pages in one UFFDIO_COPY (data) or UFFDIO_ZEROPAGE (null); see Backend.placeRun. */
  placeRun(block: number, offset: number, data: Uint8Array | null, dataOffset: number, length: number, outcomes: Uint8Array): number;
  wake(block: number, offset: number, length: number): void;
  read(block: number, offset: number, length: number): Buffer;
  copyLoop(block: number, offset: number, count: number, source: Uint8Array): { ns: number; placed: number };
  startVcpus(options: VcpuOptions, onDone?: (reports: VcpuReport[]) => void): number[];
  stopVcpus(timeoutMs?: number): VcpuReport[];
  vcpuReports(): VcpuReport[];
  status(): UffdStatus;
  close(): void;
}

export interface HugePageSupport {
  thp: { ok: boolean; mode: string; reason: string };
  hugetlbfs: { ok: boolean; total: number; free: number; pageKb: number; reason: string };
}

export interface NativeAddon {
  probe(layouts?: readonly BlockLayout[]): SupportReport;
  /** CLOCK_MONOTONIC in ns: the clock of FaultBatch.timesNs. */
  now(): number;
  gettid(): number;
  /** sched_setaffinity of the calling (JavaScript) thread. */
  pinThread(cpus: number[]): void;
  threadAffinity(): number[];
  hugePageSupport(): HugePageSupport;
  mapSharedFile(path: string, bytes: number): Buffer;
  syncSharedFile(buf: Buffer, offset?: number, length?: number): void;
  releaseSharedFile(buf: Buffer): void;
  /** setsockopt TCP_NOTSENT_LOWAT on a TCP socket's fd; returns the value the kernel holds then. */
  setTcpNotSentLowat(fd: number, bytes: number): number;
  UffdHost: new (layouts: readonly BlockLayout[]) => NativeHost;
}


let cached: NativeAddon | undefined;

/** Loads the addon once; throws a BackendError saying how to build it when it is missing. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  if (!existsSync(ADDON_PATH)) {
    throw new BackendError(
      'load',
      'ENOENT',
      `the native addon is not built (${ADDON_PATH} is missing): run \`npm ci\` (or \`npm run install\`), which builds it with node-gyp`,
    );
  }
  const require = createRequire(import.meta.url);
  cached = require(ADDON_PATH) as NativeAddon;
  return cached;
}

/** Turns an addon error (which carries `operation` and `errno`) into a BackendError. */
export function toBackendError(err: unknown): unknown {
  if (err instanceof BackendError) return err;
  if (err instanceof Error && typeof (err as { operation?: unknown }).operation === 'string') {
    const e = err as Error & { operation: string; errno: string; reason: string };
    return new BackendError(e.operation, e.errno, e.reason);
  }
  return err;
}
