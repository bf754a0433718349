import { connect, type Socket } from 'node:net';
import { MigCommand, RECV_BITMAP_END_MARK, TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { ReturnPathDecoder, type ReturnPathItem } from '../../engine/qemuWire/index.js';
import { Source } from '../../engine/source.js';
import { putBe32, putBe64 } from '../../engine/wire.js';
import { setTcpNotSentLowat } from '../../native/socketOptions.js';
import { pageDigest, seededImage } from '../backends/guestImage.js';
import { QemuWireOutput } from './qemuWireOutput.js';

/** What the orchestrator tells the source process. */
export interface SourceOptions {
  port: number;
  sizeBytes: number;
  hostPageSize: number;
  seed: number;
  preempt: boolean;
  /** Bytes per second on the wire, precopy and postcopy, 0 = unlimited. */
  bandwidth: number;
  /**
   * Bytes per second of postcopy, from the switch on, 0 = none (QEMU's max-postcopy-bandwidth).
   * It holds back the background push and the prefetch after requests. Charged: everything on
   * the main channel (in plain mode requested pages travel there, as QEMU's) and the pages
   * prefetched after a request; not charged and never held: requested pages, which QEMU's
   * preempt channel also sends past its rate limiter.
   */
  postcopyBandwidth?: number;
  /** Pages per second the guest dirties during precopy (sequential, one byte per page). */
  dirtyRate: number;
  /** Cut every connection once this fraction of the postcopy pages was sent, then reconnect. */
  breakAt?: number;
  /** Largest prefetch window after a request, in target pages (0: no prefetch). */
  prefetchPages: number;
  /**
   * A working set the guest writes until it stops, in target pages: every page of it has
   * changed since precopy sent it, so all of it is dirty at the switch (the bootblock guests:
   * their vCPUs increment a byte of every page of their share, pass after pass).
   */
  dirtyAtSwitch?: { firstPage: number; pages: number };
}

/** Messages the source sends to the orchestrator. */
export type SourceMessage =
  | { type: 'phase'; phase: 'precopy' | 'postcopy' | 'paused' | 'done'; atMs: number }
  /**
   * `destinationListening`: the destination answered the PING inside the package, so it
   * has read LISTEN and a break from now on pauses postcopy (before, with pages still
   * queued ahead of LISTEN, the migration would fail instead).
   */
  | { type: 'progress'; sentFraction: number; remaining: number; destinationListening: boolean }
  | { type: 'digest'; pages: number; hashes: string; byte0: string }
  /** `postcopyChargedBytes`: what the postcopy cap counted (see `postcopyBandwidth`), cap or not. */
  | { type: 'done'; counters: Source['counters']; discard: { rangesSent: number; commandsSent: number; dirtyPages: number }; precopyMs: number; postcopyMs: number; reconnects: number; postcopyChargedBytes: number };

const BLOCK = 'pc.ram';
/**
 * Target pages the background push may have in flight on the main channel (4 MiB).
 * QEMU's wire has no acknowledgements: a PING goes out every PING_EVERY_PAGES main pages
 * of postcopy, and its PONG (the destination answers a PING when it reads it, in stream
 * order) says how far it has read. A window of 64 pages (256 KiB) kept the push waiting
 * on the answers, and postcopy took longer with more exact blocktime (bench notes in
 * BENCHMARKS.md). In plain mode a requested page may wait behind the window; the vCPUs
 * mostly ask for pages already in it.
 */
const WINDOW_PAGES = 1024;
const PING_EVERY_PAGES = 128;
/**
 * Unsent bytes the kernel may hold on a source socket (TCP_NOTSENT_LOWAT): past this it
 * takes no more and the rest waits in Node's buffer, behind which nothing is pushed; so a
 * requested page never waits behind more than this in the kernel plus one push batch.
 */
export const SOURCE_NOTSENT_LOWAT_BYTES = 128 * 1024;
/** Host pages of background push per turn of the event loop, between which requests are read. */
const PUSH_BATCH_HOST_PAGES = 64;
/** Host pages of prefetch per turn of the event loop, sent only when the urgent channel's buffer is empty. */
const PREFETCH_BATCH_HOST_PAGES = 32;
/** A RAM page record's header on the wire (be64 offset and flags), what the postcopy cap adds per prefetched page. */
const PAGE_RECORD_HEADER_BYTES = 8;

/**
 * The source side of an end-to-end migration, in its own process: a seeded guest image
 * that a simulated guest keeps dirtying during precopy, precopy over the main channel,
 * the switch to postcopy, then pages pushed in the background with requested pages
 * first (on the preempt channel when enabled), with recovery after a cut.
 */
export async function runMigrationSource(opts: SourceOptions, report: (m: SourceMessage) => void): Promise<void> {
  const image = seededImage(opts.sizeBytes, opts.seed);
  const pages = opts.sizeBytes / TARGET_PAGE_SIZE;
  const started = Date.now();
  let phase: 'precopy' | 'postcopy' | 'recovery' | 'done' = 'precopy';
  /**
   * Why the destination is gone, once a connection closed that nobody here closed (the
   * destination died or dropped us): every wait below ends then, and the run throws.
   * A cut made on purpose (--break-at) and the close at the end are not losses.
   */
  let lost: string | null = null;
  let wake: (() => void) | null = null;
  let main!: Socket; // assigned before any event can fire
  let preempt: Socket | null = null;
  const intentionalClose = new WeakSet<Socket>();
  /** The connections of the moment (they change at a recovery), for corking together. */
  const channels = (): Socket[] => (preempt ? [main, preempt] : [main]);
  const watchPeer = (sock: Socket, name: string): void => {
    const onGone = (why: string) => (): void => {
      // Not a loss: already known, the end, a cut made here, or a connection already replaced.
      if (lost !== null || phase === 'done' || intentionalClose.has(sock) || (sock !== main && sock !== preempt)) return;
      lost = `the destination closed the ${name} channel (${why}) during ${phase}, ${Date.now() - started} ms after the source started`;
      wake?.();
    };
    sock.on('close', onGone('connection closed'));
    sock.on('error', (err: Error) => onGone(err.message)());
  };
  const checkPeer = (): void => {
    if (lost !== null) throw new Error(lost);
  };
  // QEMU names no channel: the main connection is the first, the preempt channel the second.
  main = await connectChannel(opts.port);
  watchPeer(main, 'main');
  if (opts.preempt) {
    preempt = await connectChannel(opts.port);
    watchPeer(preempt, 'preempt');
    // Prefetch held back by a full preempt buffer goes on as soon as it drains.
    preempt.on('drain', () => wake?.());
  }
  let wireBytes = 0;
  let mainBytes = 0;
  const out = new QemuWireOutput([{ name: BLOCK, usedLength: opts.sizeBytes, ...(opts.hostPageSize !== TARGET_PAGE_SIZE ? { pageSize: opts.hostPageSize } : {}) }], (channel, buf) => {
    wireBytes += buf.length;
    if (channel !== 1 || !preempt) mainBytes += buf.length;
    (channel === 1 && preempt ? preempt : main).write(buf);
  }, opts.preempt);
  const source = new Source([{ name: BLOCK, hostPageSize: opts.hostPageSize, memory: image }], out, opts.preempt, opts.prefetchPages);

  // The return path (QEMU's messages): requests become urgent pages, receive bitmaps
  // rebuild the dirty bitmap, PONGs say how far the destination has read.
  let bitmapsReloaded = 0;
  let resumeAcked = false;
  /** SHUT's status once the destination said it is done. */
  let shutStatus: number | null = null;
  let lastPong = 0;
  let mainAcked = 0;
  const onReturnPath = (item: ReturnPathItem): void => {
    switch (item.kind) {
      case 'page-request':
        source.request({ blockName: item.block, start: item.start, length: item.length });
        break;
      case 'recv-bitmap':
        source.reloadReceiveBitmap(item.blockName, receiveBitmapBlob(item.bitmap));
        bitmapsReloaded++;
        break;
      case 'pong': {
        lastPong = Math.max(lastPong, item.value);
        const pages = out.pagesBefore(item.value);
        if (pages !== undefined) mainAcked = Math.max(mainAcked, pages);
        break;
      }
      case 'resume-ack':
        resumeAcked = true;
        break;
      case 'shut':
        shutStatus = item.status;
        break;
      case 'switchover-ack':
        break;
    }
    wake?.();
  };
  const listenReturnPath = (sock: Socket): void => {
    const decoder = new ReturnPathDecoder();
    sock.on('data', (chunk: Buffer) => {
      if (sock !== main) return; // a connection already replaced
      try {
        for (const item of decoder.push(chunk)) onReturnPath(item);
      } catch (err) {
        lost ??= `the destination sent a bad return path: ${(err as Error).message}`;
        wake?.();
        return;
      }
      // Requested pages go out from here, in the read that brought the requests, not on the
      // push loop's next turn (a timer or an immediate away): that hop was most of a served
      // request's time at the source. Only the requested pages: prefetch stays the loop's.
      if (phase === 'postcopy' && source.urgentQueued > 0) {
        corked(channels(), () => source.serveUrgent(Number.MAX_SAFE_INTEGER, 0));
      }
    });
    // A push held back by a full socket resumes as soon as it drains.
    sock.on('drain', () => wake?.());
  };
  listenReturnPath(main);
  out.start();

  const pacer = makePacer(opts.bandwidth, () => wireBytes);
  const pace = async (): Promise<void> => {
    const ms = pacer();
    if (ms > 1) await sleep(ms);
  };
  // One pending 'drain' wait per socket, shared by every waiter (no listener pile-up).
  const drainWaits = new WeakMap<Socket, Promise<void>>();
  const drained = (sock: Socket): Promise<void> => {
    if (!sock.writableNeedDrain) return Promise.resolve();
    let p = drainWaits.get(sock);
    if (!p) {
      p = new Promise((r) => {
        const done = (): void => {
          drainWaits.delete(sock);
          sock.off('drain', done);
          sock.off('close', done);
          r();
        };
        // A socket that closes never drains: the wait ends there too.
        sock.once('drain', done);
        sock.once('close', done);
      });
      drainWaits.set(sock, p);
    }
    return p;
  };

  // Precopy: one pass over RAM while the guest keeps running and dirtying pages.
  report({ type: 'phase', phase: 'precopy', atMs: Date.now() - started });
  source.advise();
  let dirtyCursor = 0;
  let lastDirty = Date.now();
  const dirtyGuest = (): void => {
    const now = Date.now();
    const n = Math.floor(((now - lastDirty) / 1000) * opts.dirtyRate);
    if (n <= 0) return;
    lastDirty = now;
    for (let i = 0; i < n; i++) {
      const p = dirtyCursor;
      dirtyCursor = (dirtyCursor + 1) % pages;
      image[p * TARGET_PAGE_SIZE] = (image[p * TARGET_PAGE_SIZE]! + 1) & 0xff;
      source.markDirty(0, p * TARGET_PAGE_SIZE);
    }
  };
  for (let sent = 0; sent < pages; ) {
    const n = corked([main], () => {
      const sent = source.precopyStep(256);
      out.endSection(); // one section part per round, as QEMU's iterations
      return sent;
    });
    if (n === 0) break;
    sent += n;
    dirtyGuest();
    await drained(main);
    checkPeer();
    await pace();
  }
  checkPeer();
  const precopyMs = Date.now() - started;

  // The guest's last writes before it stops: its whole working set changed since precopy.
  if (opts.dirtyAtSwitch) {
    const { firstPage, pages: n } = opts.dirtyAtSwitch;
    for (let p = firstPage; p < Math.min(pages, firstPage + n); p++) {
      image[p * TARGET_PAGE_SIZE] = (image[p * TARGET_PAGE_SIZE]! + 1) & 0xff;
      source.markDirty(0, p * TARGET_PAGE_SIZE);
    }
  }
  // The switch: the guest stops here; its image is final.
  for (const sock of channels()) boundUnsent(sock);
  const discard = corked([main], () => source.startPostcopy());
  let destinationListening = false;
  /** The last PING of the flow control, and the main pages when it went out. */
  let pingedAt = out.mainPages;
  phase = 'postcopy';
  report({ type: 'phase', phase: 'postcopy', atMs: Date.now() - started });
  const postcopyPages = source.remaining();
  const postcopyCap = postcopyCharge(opts.postcopyBandwidth ?? 0, () => mainBytes, () => source.counters.prefetchPages * (TARGET_PAGE_SIZE + PAGE_RECORD_HEADER_BYTES), opts.preempt);
  let broken = false;
  let reconnects = 0;
  let lastProgress = 0;
  let nextProgressFraction = 0;
  while (!source.finished()) {
    checkPeer();
    if (!destinationListening && lastPong >= out.listenPing) destinationListening = true;
    const sentFraction = 1 - source.remaining() / Math.max(1, postcopyPages);
    // Every 100 ms, and at every 1% of the postcopy pages (the orchestrator acts on fractions).
    if (Date.now() - lastProgress > 100 || sentFraction >= nextProgressFraction) {
      lastProgress = Date.now();
      nextProgressFraction = Math.floor(sentFraction * 100 + 1) / 100;
      report({ type: 'progress', sentFraction, remaining: source.remaining(), destinationListening });
    }
    if (opts.breakAt !== undefined && !broken && destinationListening && sentFraction >= opts.breakAt) {
      broken = true;
      report({ type: 'phase', phase: 'paused', atMs: Date.now() - started });
      phase = 'recovery';
      intentionalClose.add(main);
      main.destroy();
      if (preempt) intentionalClose.add(preempt);
      preempt?.destroy();
      await sleep(300);
      // Reconnect as QEMU resumes: a new main connection (no header) asks for the receive
      // bitmap of every block, then the new preempt connection, then RESUME, answered by
      // RESUME_ACK; the pages go on after it.
      bitmapsReloaded = 0;
      resumeAcked = false;
      main = await connectChannel(opts.port, true);
      watchPeer(main, 'main');
      out.newConnection(0);
      mainAcked = out.mainPages;
      pingedAt = out.mainPages;
      listenReturnPath(main);
      out.requestReceiveBitmaps();
      if (opts.preempt) {
        preempt = await connectChannel(opts.port, true);
        watchPeer(preempt, 'preempt');
        preempt.on('drain', () => wake?.());
        out.newConnection(1);
      }
      while (bitmapsReloaded < 1) {
        checkPeer();
        await waitFor((w) => (wake = w), 1000);
      }
      source.forgetLastRequestBlock();
      out.command(MigCommand.POSTCOPY_RESUME, new Uint8Array(0));
      while (!resumeAcked) {
        checkPeer();
        await waitFor((w) => (wake = w), 1000);
      }
      phase = 'postcopy';
      reconnects++;
      report({ type: 'phase', phase: 'postcopy', atMs: Date.now() - started });
      continue;
    }
    // Requested pages first; the background push keeps at most a window of pages in
    // flight on the main channel, so a requested page never waits behind a long queue.
    // On the preempt channel, prefetch goes only into an empty socket buffer (the kernel then
    // holds at most TCP_NOTSENT_LOWAT of it), so a page requested later never queues behind
    // earlier windows. On the main channel it goes at once: the push fills that one anyway.
    // Prefetch counts against the postcopy cap and waits for it, as the push does.
    const prefetchRoom = postcopyCap.due() > 1 ? 0 : preempt === null ? Number.MAX_SAFE_INTEGER : preempt.writableLength === 0 ? PREFETCH_BATCH_HOST_PAGES : 0;
    corked(channels(), () => source.serveUrgent(Number.MAX_SAFE_INTEGER, prefetchRoom));
    // A PING every PING_EVERY_PAGES main pages: its PONG moves the window on.
    if (out.mainPages - pingedAt >= PING_EVERY_PAGES) {
      out.sendPing();
      pingedAt = out.mainPages;
    }
    const mainSent = out.mainPages;
    const room = WINDOW_PAGES - (mainSent - mainAcked);
    const perHostPage = opts.hostPageSize / TARGET_PAGE_SIZE;
    // At least one host page when nothing is in flight (a huge page is larger than the window).
    const hostPages = mainSent === mainAcked ? Math.max(1, Math.floor(room / perHostPage)) : Math.floor(room / perHostPage);
    // The bandwidth caps hold back the background push only: a request wakes the wait.
    const dueMs = Math.max(pacer(), postcopyCap.due());
    if (dueMs > 1) {
      await waitFor((w) => (wake = w), dueMs);
      continue;
    }
    const pushed = hostPages > 0 && !main.writableNeedDrain ? corked([main], () => source.pushBackground(Math.min(hostPages, PUSH_BATCH_HOST_PAGES))) : 0;
    if (pushed === 0) {
      await waitFor((w) => (wake = w), 20);
      continue;
    }
    await new Promise((r) => setImmediate(r));
  }
  checkPeer();
  corked(channels(), () => source.finish());
  // The image has not changed since the switch (the guest stopped there): its digest for verification.
  report({ type: 'digest', ...pageDigest(image, pages) });
  await drained(main);
  checkPeer();
  phase = 'done';
  report({ type: 'phase', phase: 'done', atMs: Date.now() - started });
  report({ type: 'done', counters: source.counters, discard, precopyMs, postcopyMs: Date.now() - started - precopyMs, reconnects, postcopyChargedBytes: postcopyCap.charged() });
  // As QEMU's source: the connection stays until the destination says it is done (SHUT)
  // or closes it; then it ends.
  const endBy = Date.now() + 10_000;
  while (shutStatus === null && !main.destroyed && lost === null && Date.now() < endBy) await waitFor((w) => (wake = w), 100);
  await new Promise<void>((r) => {
    if (main.destroyed) return r();
    main.once('close', () => r());
    main.end();
    setTimeout(r, 10_000).unref();
  });
  preempt?.destroy();
}

/**
 * Bounds what waits unsent in a source socket (TCP_NOTSENT_LOWAT), from the switch on: a
 * requested page then waits behind at most that in the kernel. Not during precopy: there
 * nothing is requested, and the bound made every precopy round wait until the destination
 * had read nearly all of it (the socket is writable again only below half the bound), so
 * precopy streamed slower, the guest dirtied more meanwhile and postcopy had more to move
 * (bench `migrate.wire.default`).
 */
function boundUnsent(sock: Socket): void {
  setTcpNotSentLowat(sock, SOURCE_NOTSENT_LOWAT_BYTES);
}

/** Runs `send` with the sockets corked, so what it writes leaves in one writev per socket. */
function corked<T>(socks: Socket[], send: () => T): T {
  for (const s of socks) s.cork();
  try {
    return send();
  } finally {
    for (const s of socks) s.uncork();
  }
}

/**
 * Connects one channel to the destination. QEMU's wire names no channel: the destination
 * knows them by their order. With `boundUnsentNow` (a connection made during postcopy: a
 * recovery's), what waits unsent in it is bounded from the start; see `boundUnsent`.
 */
export function connectChannel(port: number, boundUnsentNow = false): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port }, () => {
      sock.setNoDelay(true);
      if (boundUnsentNow) boundUnsent(sock);
      resolve(sock);
    });
    sock.once('error', reject);
    sock.on('error', () => {}); // after connect, a reset during a cut is expected
  });
}

/** A bandwidth cap: milliseconds until the bytes written so far fit the budget (0: no cap, or within it). */
function makePacer(bytesPerSecond: number, written: () => number): () => number {
  if (bytesPerSecond <= 0) return () => 0;
  const start = Date.now();
  return () => Math.max(0, (written() / bytesPerSecond) * 1000 - (Date.now() - start));
}

/**
 * The postcopy cap from now on: milliseconds until the charged bytes fit it. Charged: the main
 * channel's bytes, and with a preempt channel the pages prefetched there (counted as whole
 * pages); the requested pages on the preempt channel go free (see `postcopyBandwidth`).
 */
export function postcopyCharge(bytesPerSecond: number, mainBytes: () => number, prefetchedBytes: () => number, preempt: boolean): { due: () => number; charged: () => number } {
  const all = (): number => mainBytes() + (preempt ? prefetchedBytes() : 0);
  const atSwitch = all();
  const charged = (): number => all() - atSwitch;
  return { due: makePacer(bytesPerSecond, charged), charged };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until `arm`'s callback is called or `ms` pass. */
function waitFor(arm: (wake: () => void) => void, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      resolve();
    }
    arm(done);
  });
}

/** The receive-bitmap blob the engine reloads (be64 N, the bitmap, end mark) around a decoded bitmap. */
function receiveBitmapBlob(bitmap: Uint8Array): Uint8Array {
  const blob = new Uint8Array(16 + bitmap.length);
  putBe64(blob, 0, bitmap.length);
  blob.set(bitmap, 8);
  putBe32(blob, 8 + bitmap.length, Number(RECV_BITMAP_END_MARK >> 32n));
  putBe32(blob, 12 + bitmap.length, Number(RECV_BITMAP_END_MARK & 0xffff_ffffn));
  return blob;
}
