import { connect, type Socket } from 'node:net';
import { MigCommand, RpMessage, TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { Source } from '../../engine/source.js';
import { decodePageRequest, encodeCommandFrame } from '../../engine/wire.js';
import { decodeRecvBitmapMessage } from '../../engine/receiveBitmap.js';
import { pageDigest, seededImage } from '../backends/guestImage.js';
import { FrameKind, FrameReader, frame, pageFrameHeader } from './streamFrames.js';

/** What the orchestrator tells the source process. */
export interface SourceOptions {
  port: number;
  sizeBytes: number;
  hostPageSize: number;
  seed: number;
  preempt: boolean;
  /** Bytes per second on the wire, 0 = unlimited. */
  bandwidth: number;
  /** Pages per second the guest dirties during precopy (sequential, one byte per page). */
  dirtyRate: number;
  /** Cut every connection once this fraction of the postcopy pages was sent, then reconnect. */
  breakAt?: number;
  /** Largest prefetch window after a request, in target pages (0: no prefetch). */
  prefetchPages: number;
}

/** Messages the source sends to the orchestrator. */
export type SourceMessage =
  | { type: 'phase'; phase: 'precopy' | 'postcopy' | 'paused' | 'done'; atMs: number }
  /**
   * `destinationListening`: the destination has acknowledged every page sent before the
   * switch, so it has read LISTEN and a break from now on pauses postcopy (before, with
   * pages still queued ahead of LISTEN, the migration would fail instead).
   */
  | { type: 'progress'; sentFraction: number; remaining: number; destinationListening: boolean }
  | { type: 'digest'; pages: number; hashes: string; byte0: string }
  | { type: 'done'; counters: Source['counters']; discard: { rangesSent: number; commandsSent: number; dirtyPages: number }; precopyMs: number; postcopyMs: number; reconnects: number };

const BLOCK = 'pc.ram';
/**
 * Target pages the background push may have in flight on the main channel (4 MiB). The
 * destination acknowledges every 128 pages it consumes; a window of 64 pages (256 KiB)
 * kept the push waiting on those acknowledgements, and postcopy took longer with more
 * exact blocktime (bench notes in BENCHMARKS.md). In plain mode a requested page may wait
 * behind the window; the vCPUs mostly ask for pages already in it.
 */
const WINDOW_PAGES = 1024;
/** Host pages of background push per turn of the event loop, between which requests are read. */
const PUSH_BATCH_HOST_PAGES = 64;

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
  main = await openChannel(opts.port, 0, false);
  watchPeer(main, 'main');
  if (opts.preempt) {
    preempt = await openChannel(opts.port, 1, false);
    watchPeer(preempt, 'preempt');
  }
  let wireBytes = 0;
  const write = (sock: Socket, buf: Uint8Array): void => {
    wireBytes += buf.length;
    sock.write(buf);
  };
  const source = new Source([{ name: BLOCK, hostPageSize: opts.hostPageSize, memory: image }], {
    command: (cmd, payload) => write(main, frame(FrameKind.COMMAND, encodeCommandFrame(cmd, payload))),
    page: (channel, block, offset, zero, data, dataOffset) => {
      const sock = channel === 1 && preempt ? preempt : main;
      if (sock === main) mainSent++;
      // Header and page as two writes without a copy: the caller corks the socket around a
      // batch, so a batch leaves in one writev (the image is final once postcopy starts,
      // and a page the guest changes during precopy is dirty again and sent again).
      write(sock, pageFrameHeader(block, offset, zero));
      if (!zero) write(sock, data.subarray(dataOffset, dataOffset + TARGET_PAGE_SIZE));
    },
    endOfStream: (channel) => write(channel === 1 && preempt ? preempt : main, frame(FrameKind.EOS, new Uint8Array(0))),
  }, opts.preempt, opts.prefetchPages);

  // The return path: requests become urgent pages; receive bitmaps rebuild the dirty bitmap.
  let bitmapsReloaded = 0;
  let mainSent = 0;
  let mainAcked = 0;
  const onReturnPath = (kind: number, payload: Uint8Array): void => {
    if (kind === FrameKind.ACK) {
      mainAcked = Buffer.from(payload.buffer, payload.byteOffset, payload.length).readUInt32BE(0);
      wake?.();
      return;
    }
    if (kind !== FrameKind.RETURN_PATH) throw new Error(`unexpected frame kind ${kind} on the return path`);
    const b = Buffer.from(payload.buffer, payload.byteOffset, payload.length);
    const type = b.readUInt16BE(0);
    const body = payload.subarray(2);
    if (type === RpMessage.REQ_PAGES || type === RpMessage.REQ_PAGES_ID) source.request(decodePageRequest(type, body));
    else if (type === RpMessage.RECV_BITMAP) {
      const m = decodeRecvBitmapMessage(body);
      source.reloadReceiveBitmap(m.blockName, m.blob);
      bitmapsReloaded++;
    }
    wake?.();
  };
  const listenReturnPath = (sock: Socket): void => {
    const reader = new FrameReader(onReturnPath);
    sock.on('data', (chunk: Buffer) => reader.push(chunk));
    // A push held back by a full socket resumes as soon as it drains, not at the next ACK.
    sock.on('drain', () => wake?.());
  };
  listenReturnPath(main);

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
    const n = corked([main], () => source.precopyStep(256));
    if (n === 0) break;
    sent += n;
    dirtyGuest();
    await drained(main);
    checkPeer();
    await pace();
  }
  checkPeer();
  const precopyMs = Date.now() - started;

  // The switch: the guest stops here; its image is final.
  const discard = source.startPostcopy();
  const mainSentBeforeListen = mainSent;
  let destinationListening = false;
  phase = 'postcopy';
  report({ type: 'phase', phase: 'postcopy', atMs: Date.now() - started });
  const postcopyPages = source.remaining();
  let broken = false;
  let reconnects = 0;
  let lastProgress = 0;
  let nextProgressFraction = 0;
  while (!source.finished()) {
    checkPeer();
    if (!destinationListening && mainAcked >= mainSentBeforeListen) destinationListening = true;
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
      // Reconnect: the destination answers with one receive bitmap per block, then RESUME.
      bitmapsReloaded = 0;
      main = await openChannel(opts.port, 0, true);
      watchPeer(main, 'main');
      mainSent = 0;
      mainAcked = 0;
      listenReturnPath(main);
      if (opts.preempt) {
        preempt = await openChannel(opts.port, 1, true);
        watchPeer(preempt, 'preempt');
      }
      while (bitmapsReloaded < 1) {
        checkPeer();
        await waitFor((w) => (wake = w), 1000);
      }
      phase = 'postcopy';
      source.forgetLastRequestBlock();
      write(main, frame(FrameKind.COMMAND, encodeCommandFrame(MigCommand.POSTCOPY_RESUME, new Uint8Array(0))));
      reconnects++;
      report({ type: 'phase', phase: 'postcopy', atMs: Date.now() - started });
      continue;
    }
    // Requested pages first; the background push keeps at most a window of pages in
    // flight on the main channel, so a requested page never waits behind a long queue.
    const channels = preempt ? [main, preempt] : [main];
    corked(channels, () => source.serveUrgent(Number.MAX_SAFE_INTEGER));
    const room = WINDOW_PAGES - (mainSent - mainAcked);
    const perHostPage = opts.hostPageSize / TARGET_PAGE_SIZE;
    // At least one host page when nothing is in flight (a huge page is larger than the window).
    const hostPages = mainSent === mainAcked ? Math.max(1, Math.floor(room / perHostPage)) : Math.floor(room / perHostPage);
    // The bandwidth cap holds back the background push only: a request wakes the wait.
    const dueMs = pacer();
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
  source.finish();
  // The image has not changed since the switch (the guest stopped there): its digest for verification.
  report({ type: 'digest', ...pageDigest(image, pages) });
  await drained(main);
  checkPeer();
  phase = 'done';
  report({ type: 'phase', phase: 'done', atMs: Date.now() - started });
  report({ type: 'done', counters: source.counters, discard, precopyMs, postcopyMs: Date.now() - started - precopyMs, reconnects });
  // Wait for the destination to close the connection after its cleanup.
  await new Promise<void>((r) => {
    main.once('close', () => r());
    main.end();
    setTimeout(r, 10_000).unref();
  });
  preempt?.destroy();
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

/** Connects one channel and introduces it (HELLO). */
export function openChannel(port: number, channel: number, reconnect: boolean): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port }, () => {
      sock.setNoDelay(true);
      sock.write(frame(FrameKind.HELLO, Uint8Array.of(channel, reconnect ? 1 : 0)));
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
