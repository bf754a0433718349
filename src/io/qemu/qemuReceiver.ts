/**
 * `postcopy receive`: this engine as the destination of a real QEMU source.
 *
 * One TCP server (and, after a pause, optionally a second one on --recover-listen) takes
 * QEMU's connections. QEMU names no channel, so they are known by order and first byte:
 * - the first connection is the main stream (it must start with "QEVM"); its reverse
 *   direction is the return path;
 * - with --preempt, the next connection while the main one is live is the preempt channel;
 * - while postcopy is paused, a connection whose first byte is 0x08 (the RECV_BITMAP
 *   command, no header) is the resumed main stream; another one (with --preempt) the new
 *   preempt channel;
 * - any other connection is refused (closed at once) without touching the migration.
 *
 * The main stream is decoded by src/engine/qemuWire and every item goes to the same
 * `Destination` engine as our own migrations (journal, blocktime, inspect, report and
 * replay all apply). Guest memory is laid out from MEM_SIZE (every block, in the uffd
 * backend); the engine is created there, and the commands before it (OPEN_RETURN_PATH,
 * PING 1, ADVISE) are fed to it then, with the times they arrived at.
 *
 * Recovery: the engine decides the receive bitmaps when the resumed main connection
 * arrives (IN_CHANNEL_CONNECTED, FX_RECV_BITMAP per block); QEMU asks for each block with
 * a RECV_BITMAP command, and each answer goes out when asked (once per block), so the
 * RECV_BITMAP commands themselves are not engine inputs. RESUME is answered by the engine
 * with RESUME_ACK and the re-sent requests.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { lowerPriority } from '../backends/vcpuLauncher.js';
import { commitAtQuietMoments } from '../quietCommits.js';
import { join } from 'node:path';
import { PostcopyState, TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { Destination } from '../../engine/destination.js';
import { MachineId } from '../../engine/events.js';
import type { BlockLayout } from '../../engine/ports.js';
import { MainStreamDecoder, PreemptChannelDecoder, type MainItem, type MainStreamState, type PreemptItem, type RamBlockInfo } from '../../engine/qemuWire/index.js';
import { PostcopyError, ReceiveRefusedError, WireError } from '../../errors.js';
import { JournalWriter } from '../../journal/journalWriter.js';
import type { JournalMeta } from '../../journal/meta.js';
import { MockBackend } from '../backends/mockBackend.js';
import { UffdBackend } from '../backends/uffdBackend.js';
import { PACKAGE_VERSION } from '../../paths.js';
import { PageRuns } from './pageRuns.js';
import { withReadBuffer } from './readBufferSocket.js';
import { engineCommandOf, RESUMED_MAIN_FIRST_BYTE, ReturnPathSender } from './wireFeed.js';

export type ReadWorkload = 'read-sequential' | 'read-random' | 'read-hot-set' | 'read-bootblock' | 'read-bootblock-random';
/** read-bootblock(-random): the bootblock guest's walks (guest/README.md), reading instead of incrementing. */
export const READ_WORKLOADS: readonly ReadWorkload[] = ['read-sequential', 'read-random', 'read-hot-set', 'read-bootblock', 'read-bootblock-random'];

export interface Endpoint {
  host: string;
  port: number;
}

export interface ReceiveOptions {
  listen: Endpoint;
  /** Where to listen once paused, in addition to `listen` (QEMU: migrate-recover URI). */
  recoverListen?: Endpoint;
  journalPath: string;
  /** The postcopy-preempt capability is on at the source (QEMU's stream does not say so). */
  preempt: boolean;
  workload: ReadWorkload;
  vcpus: number;
  seed: number;
  /** Nice value of the vCPU threads (0: unchanged). */
  vcpuNice: number;
  /** A MEM_SIZE above this is refused before anything is allocated. */
  maxMemoryBytes: number;
  /** Paused this long without a resumed main connection: give up, exit 3. */
  pauseTimeoutMs: number;
  deviceStatePath?: string;
  saveMemoryDir?: string;
  faultReader: 'thread' | 'loop';
  /** One line per event worth telling (connections, pause, resume, end). */
  log: (line: string) => void;
  /** Called once the server listens (with the port actually bound). */
  onListening?: (endpoint: Endpoint) => void;
}

export type ReceiveStatus = 'completed' | 'paused' | 'failed' | 'refused';

export interface ReceiveResult {
  status: ReceiveStatus;
  exitCode: 0 | 1 | 2 | 3;
  message: string;
  error?: { code: string; message: string };
  journalPath: string;
  /** REQ_PAGES / REQ_PAGES_ID messages written to the return path (re-sends after a resume included). */
  requests: number;
  /** Target pages read per channel: before LISTEN (precopy), main after LISTEN, preempt channel. */
  pagesByChannel: { precopy: number; main: number; preempt: number };
  blocktime: ReturnType<Destination['blocktime']['report']> | null;
  deviceStateBytes: number;
  deviceStateSha256: string | null;
  machineType: string | null;
  blocks: Array<{ name: string; usedLength: number }>;
  /** Requests outstanding at the end (a paused run: the pages the vCPUs still wait for). */
  outstanding: number;
  outstandingPages: Array<{ block: string; offset: number }>;
  /** `silent`: connections in the preempt slot that sent nothing (QEMU's preempt channel when no request was answered on it). */
  connections: { main: number; preempt: number; resumes: number; refused: number; silent: number };
  pauses: number;
  durationsMs: { total: number; precopy: number | null; postcopy: number | null };
  savedMemory?: Array<{ block: string; file: string; bytes: number }>;
}

const EMPTY = new Uint8Array(0);

/**
 * Journal segments of 2^18 events: the whole of a 256 MiB postcopy push (two records per
 * page, ~130 000) fits in one, so no segment fills and commits in the middle of the push.
 */
const RECEIVE_SEGMENT_EVENTS = 1 << 18;
/** During postcopy the journal commits this often (the crash tail holds the records in between). */
const POSTCOPY_COMMIT_EVERY_MS = 2000;
/** After SHUT, how long the final housekeeping waits for the source to hang up. */
const PEER_HANG_UP_WAIT_MS = 2000;

/** A file name for a RAM block's idstr ('/rom@etc/acpi/tables' → '_rom@etc_acpi_tables.bin'). */
export function memoryFileName(block: string): string {
  return `${block.replace(/[^A-Za-z0-9@._-]/g, '_')}.bin`;
}

interface Conn {
  sock: Socket;
  role: 'pending' | 'candidate' | 'main' | 'preempt' | 'refused';
  id: number;
  /** A candidate's bytes so far, until they show whether it is the preempt channel. */
  early?: Buffer[];
  /** The number of pauses before it connected: a connection from before the last pause is stale. */
  epoch: number;
}

/**
 * Runs one incoming migration from a QEMU source to its end: completed (0), left paused
 * (3), failed (1) or refused (2). Never throws for anything the peer does.
 */
export async function runReceiver(o: ReceiveOptions): Promise<ReceiveResult> {
  // t = 0 is the source's first connection (reset there), so the journal does not open on
  // however long receive waited for it; the wall clock of the same moment is the journal's origin.
  let t0 = Number(process.hrtime.bigint());
  let originWallNs = Date.now() * 1e6;
  const now = (): number => Number(process.hrtime.bigint()) - t0;
  const startedAt = performance.now();

  let engine: Destination | null = null;
  let backend: UffdBackend | null = null;
  let writer: JournalWriter | null = null;
  let layouts: BlockLayout[] = [];
  const blockIndex = new Map<string, number>();
  const run: Record<string, unknown> = {
    kind: 'receive',
    role: 'destination',
    peer: 'qemu',
    listen: `${o.listen.host}:${o.listen.port}`,
    workload: o.workload,
    seed: o.seed,
    vcpus: o.vcpus,
    backend: 'uffd',
  };
  let machineType: string | null = null;
  let deviceStateBytes = 0;
  let deviceStateSha256: string | null = null;
  const pages = { precopy: 0, main: 0, preempt: 0 };
  const connections = { main: 0, preempt: 0, resumes: 0, refused: 0 };
  let pauses = 0;
  let listenAt = -1;
  let endAt = -1;
  let vcpuDone: Promise<unknown> = Promise.resolve();
  /** After SHUT: resolves when the source has closed the main connection. */
  let peerGone: Promise<unknown> = Promise.resolve();
  let vcpusStarted = false;

  /** Commands that came before MEM_SIZE (no engine yet), with their arrival times. */
  const early: Array<{ command: number; payload: Uint8Array; t: number }> = [];

  let main: Conn | null = null;
  let mainDecoder: MainStreamDecoder | null = null;
  /** What a resumed main connection takes over from the one before. */
  let mainState: MainStreamState | null = null;
  let preempt: Conn | null = null;
  let preemptDecoder: PreemptChannelDecoder | null = null;
  /** A preempt channel may still connect (once per main connection). */
  let preemptSlotOpen = false;
  /** The preempt connection came before LISTEN was read: its bytes wait, and so does its CHANNEL_CONNECTED. */
  let preemptEarly: Buffer[] | null = null;
  /** Main items after a RESUME read before the recovery's preempt channel connected. */
  let heldMain: MainItem[] | null = null;
  let connIds = 0;
  /** The last thing that went wrong (a break, a refused input): what a failure is put down to. */
  let lastProblem: string | null = null;
  /** Connections made while paused that have not said what they are yet (no byte yet). */
  const pending = new Set<Conn>();

  let settle!: (r: ReceiveResult) => void;
  const done = new Promise<ReceiveResult>((r) => (settle = r));
  let finished = false;
  let pauseTimer: NodeJS.Timeout | null = null;
  let stopCommits = (): void => {};
  let recoverServer: Server | null = null;

  const returnPath = new ReturnPathSender(() => main?.sock);

  const migrationStatus = (): string => (engine ? engine.stateOf(MachineId.MIGRATION) : 'none');

  /** An input the engine refuses is journaled (FX_ERROR) by the engine; the stream goes on. */
  const apply = (fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof PostcopyError)) throw err;
      lastProblem = err.message;
      o.log(`engine refused an input: ${err.message}`);
    }
  };

  const createJournal = (blocks: JournalMeta['blocks']): JournalWriter => {
    const w = JournalWriter.create(o.journalPath, {
      engineVersion: PACKAGE_VERSION,
      source: 'engine',
      created: new Date().toISOString(),
      timeOriginNs: originWallNs,
      blocks,
      vcpuTids: [],
      capabilities: o.preempt ? ['preempt'] : [],
      // QEMU sends only requested pages on the preempt channel, and 10.0 never ends it.
      preemptEnd: 'main-eos',
      blocktimeMode: 'both',
      run,
    }, { overwrite: true, autoCheckpoint: false, segmentEvents: RECEIVE_SEGMENT_EVENTS });
    return w;
  };

  // ---------------------------------------------------------------------------
  // Ends

  const summary = (status: ReceiveStatus, exitCode: 0 | 1 | 2 | 3, message: string, error?: PostcopyError): ReceiveResult => {
    const outstandingPages: Array<{ block: string; offset: number }> = [];
    if (engine) {
      for (const [key] of engine.requested.entries()) {
        let b = engine.blocks[0]!;
        for (const rb of engine.blocks) if (key >= rb.base) b = rb;
        outstandingPages.push({ block: b.name, offset: key - b.base });
        if (outstandingPages.length >= 64) break;
      }
    }
    return {
      status,
      exitCode,
      message,
      ...(error ? { error: { code: error.code, message: error.message } } : {}),
      journalPath: o.journalPath,
      requests: returnPath.requests,
      pagesByChannel: pages,
      blocktime: engine ? engine.blocktime.report() : null,
      deviceStateBytes,
      deviceStateSha256,
      machineType,
      blocks: layouts.map((l) => ({ name: l.name, usedLength: l.length })),
      outstanding: engine ? engine.requested.size : 0,
      outstandingPages,
      connections: { ...connections, silent: candidates.size },
      pauses,
      durationsMs: {
        total: performance.now() - startedAt,
        precopy: listenAt >= 0 ? listenAt / 1e6 : null,
        postcopy: listenAt >= 0 && endAt >= 0 ? (endAt - listenAt) / 1e6 : null,
      },
    };
  };

  const closeEverything = (): void => {
    if (pauseTimer) clearTimeout(pauseTimer);
    stopCommits();
    server.close();
    recoverServer?.close();
    for (const c of [main, preempt]) c?.sock.destroy();
  };

  const finish = async (status: ReceiveStatus, exitCode: 0 | 1 | 2 | 3, message: string, error?: PostcopyError): Promise<void> => {
    if (finished) return;
    finished = true;
    o.log(message);
    let saved: ReceiveResult['savedMemory'];
    if (status === 'completed') {
      // The vCPUs finish their walk over memory that is all there now.
      // (The bound's timer is cleared: left running it kept the process alive 30 s after the end.)
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([vcpuDone, new Promise((r) => (bound = setTimeout(r, 30_000)))]);
      clearTimeout(bound);
      // The source completes once it has read SHUT and cleaned up on its side. What is left
      // here (the journal's last commit and checkpoint, unmapping guest memory) waits until
      // it has hung up, so as not to take the CPU from it meanwhile on a host with few cores.
      await Promise.race([peerGone, new Promise((r) => (bound = setTimeout(r, PEER_HANG_UP_WAIT_MS)))]);
      clearTimeout(bound);
      if (o.saveMemoryDir && backend) {
        mkdirSync(o.saveMemoryDir, { recursive: true });
        saved = [];
        const index: Record<string, string> = {};
        for (let i = 0; i < layouts.length; i++) {
          const l = layouts[i]!;
          const file = join(o.saveMemoryDir, memoryFileName(l.name));
          writeFileSync(file, backend.read(i, 0, l.length));
          saved.push({ block: l.name, file, bytes: l.length });
          index[l.name] = memoryFileName(l.name);
        }
        writeFileSync(join(o.saveMemoryDir, 'blocks.json'), JSON.stringify(index, null, 2) + '\n');
      }
    }
    const result = summary(status, exitCode, message, error);
    if (saved) result.savedMemory = saved;
    closeEverything();
    if (writer) {
      writer.updateMeta({ run: { ...run, result: { status, exitCode, requests: returnPath.requests, pagesByChannel: pages, deviceStateBytes, message } } });
      writer.close();
    }
    backend?.close();
    settle(result);
  };

  /** The peer is not a QEMU source (or asks for too much): journaled, exit 2. */
  const refuse = (err: PostcopyError): void => {
    if (finished) return;
    const refusal = err instanceof ReceiveRefusedError ? err : new ReceiveRefusedError('not-qemu', err.message);
    run.refused = { code: refusal.code, reason: refusal.reason, message: refusal.message, ...(err instanceof WireError ? { wire: { reason: err.reason, offset: err.offset } } : {}) };
    try {
      if (!writer) writer = createJournal([]);
      // An engine without blocks records the refusal as an input (a stream error before
      // postcopy: the migration fails), so the journal still replays.
      if (!engine) {
        engine = new Destination({ blocks: [], vcpuTids: [], vcpus: o.vcpus, preempt: o.preempt, preemptEnd: 'main-eos' }, new MockBackend([]), returnPath, writer);
      }
      apply(() => engine!.streamError(0, refusal.message, now()));
    } catch (journalErr) {
      o.log(`could not journal the refusal: ${(journalErr as Error).message}`);
    }
    void finish('refused', 2, `refused: ${refusal.message}`, refusal);
  };

  const checkEnd = (): void => {
    if (finished || !engine) return;
    const status = migrationStatus();
    if (status === 'completed') {
      if (endAt < 0) endAt = now();
      // SHUT (0: fine) tells the source this side is done; then the return path closes.
      const sock = main!.sock;
      peerGone = sock.destroyed ? Promise.resolve() : new Promise((resolve) => sock.once('close', resolve));
      if (returnPath.shut(0)) sock.end();
      void finish('completed', 0, `completed: ${returnPath.requests} page requests, ${pages.precopy} precopy + ${pages.main} main + ${pages.preempt} preempt pages`);
    } else if (status === 'failed') {
      void finish('failed', 1, `failed${lastProblem ? ` after: ${lastProblem}` : ''} (migration status failed before postcopy could pause; journal ${o.journalPath})`);
    }
  };

  let pausedNoted = false;
  const onPaused = (why: string): void => {
    if (finished || migrationStatus() !== 'postcopy-paused' || pausedNoted) return;
    pausedNoted = true;
    pauses++;
    preemptSlotOpen = o.preempt;
    heldMain = null;
    o.log(`postcopy paused (${why}); ${engine!.requested.size} requests outstanding; waiting ${o.pauseTimeoutMs} ms for the source to resume on ${o.listen.host}:${o.listen.port}${o.recoverListen ? ` or ${o.recoverListen.host}:${o.recoverListen.port}` : ''}`);
    if (o.recoverListen && !recoverServer) {
      recoverServer = createServer({ pauseOnConnect: true }, onConnection);
      recoverServer.on('error', (err) => o.log(`--recover-listen ${o.recoverListen!.host}:${o.recoverListen!.port}: ${err.message}`));
      recoverServer.listen(o.recoverListen.port, o.recoverListen.host);
    }
    if (pauseTimer) clearTimeout(pauseTimer);
    pauseTimer = setTimeout(() => {
      if (migrationStatus() === 'postcopy-paused') {
        void finish('paused', 3, `left paused: no resumed main connection within ${o.pauseTimeoutMs} ms; ${engine!.requested.size} requests outstanding`);
      }
    }, o.pauseTimeoutMs);
  };

  // ---------------------------------------------------------------------------
  // The engine, at MEM_SIZE

  const createEngine = (blocks: readonly RamBlockInfo[], t: number): boolean => {
    const total = blocks.reduce((s, b) => s + b.usedLength, 0);
    if (total > o.maxMemoryBytes) {
      refuse(new ReceiveRefusedError('too-large', `MEM_SIZE offers ${total} bytes of RAM in ${blocks.length} blocks (${blocks.map((b) => `${b.name} ${b.usedLength}`).join(', ')}), above --max-memory ${o.maxMemoryBytes}`));
      return false;
    }
    const own = blocks.find((b) => b.pageSize !== undefined && b.pageSize !== TARGET_PAGE_SIZE);
    if (own) {
      refuse(new ReceiveRefusedError('unsupported', `block '${own.name}' has page size ${own.pageSize}: only 4 KiB pages are supported`));
      return false;
    }
    layouts = blocks.map((b) => ({ name: b.name, length: b.usedLength, hostPageSize: TARGET_PAGE_SIZE }));
    layouts.forEach((l, i) => blockIndex.set(l.name, i));
    try {
      backend = new UffdBackend(layouts, { readerMode: o.faultReader });
    } catch (err) {
      if (!(err instanceof PostcopyError)) throw err;
      void finish('failed', 1, `failed: cannot map guest memory: ${err.message}`, err);
      return false;
    }
    const b = backend;
    writer = createJournal(layouts.map((l, i) => ({ ...l, hostAddress: b.hostAddress(i) })));
    engine = new Destination({ blocks: layouts, vcpuTids: [], vcpus: o.vcpus, preempt: o.preempt, preemptEnd: 'main-eos' }, backend, returnPath, writer);
    engine.faultTimeOriginNs = t0;
    const e = engine;
    const w = writer;
    w.setSnapshotSource(() => e.snapshot());
    // Busy: a request waits for its page, or postcopy is under way. A commit holds the
    // event loop for as long as its records take to encode and write (a 100 000-record
    // commit took 185 ms on a loaded host), and the source's push waits on a full socket
    // meanwhile; a short lull in the push is no quiet moment for it. So during postcopy
    // commits come every POSTCOPY_COMMIT_EVERY_MS (and when a segment fills), and the crash
    // tail keeps the records safe in between.
    stopCommits = commitAtQuietMoments(
      w,
      () => e.requested.size > 0 || (e.postcopyState >= PostcopyState.LISTENING && e.postcopyState < PostcopyState.END),
      POSTCOPY_COMMIT_EVERY_MS,
    );
    o.log(`MEM_SIZE: ${blocks.length} RAM blocks, ${total} bytes (${blocks.map((x) => x.name).join(', ')}); guest memory mapped, journal ${o.journalPath}`);
    for (const c of early.splice(0)) apply(() => e.command(c.command, c.payload, c.t));
    void t;
    return true;
  };

  const command = (cmd: number, payload: Uint8Array, t: number): void => {
    if (!engine) {
      early.push({ command: cmd, payload: payload.slice(), t });
      return;
    }
    const e = engine;
    apply(() => e.command(cmd, payload, t));
    if (migrationStatus() === 'failed') checkEnd();
  };

  /** A main-stream item that is an engine command (wireFeed.ts says which). */
  const feed = (item: MainItem, t: number): void => {
    const c = engineCommandOf(item);
    if (c !== null) command(c.command, c.payload, t);
  };

  const startVcpus = (): void => {
    if (vcpusStarted || !backend || !engine || !writer) return;
    vcpusStarted = true;
    let ram = 0;
    layouts.forEach((l, i) => {
      if (l.name === 'pc.ram' || (layouts[ram]!.name !== 'pc.ram' && l.length > layouts[ram]!.length)) ram = i;
    });
    const vcpuRun = backend.startVcpus({ pattern: o.workload, vcpus: o.vcpus, seed: o.seed, block: ram, passes: 1 });
    if (o.vcpuNice !== 0) for (const tid of vcpuRun.tids) lowerPriority(tid, o.vcpuNice);
    engine.attachVcpus(vcpuRun.tids);
    writer.updateMeta({ vcpuTids: vcpuRun.tids });
    vcpuDone = vcpuRun.done;
    o.log(`RUN: ${o.vcpus} vCPU threads (${o.workload}) over '${layouts[ram]!.name}'`);
  };

  // ---------------------------------------------------------------------------
  // Items

  const page = (channel: 0 | 1, item: { kind: 'page' | 'zero-page'; block: string; pageOffset: number; data?: Uint8Array }): void => {
    const e = engine;
    if (!e) throw new ReceiveRefusedError('not-qemu', `a RAM page of '${item.block}' before MEM_SIZE`);
    // Faults read meanwhile are decided before this page (as QEMU's fault thread would), and
    // the page's time is taken after them: a placement never precedes the fault it ends.
    if (e.postcopyState >= PostcopyState.LISTENING) backend!.takeFaults();
    const t = now();
    const index = blockIndex.get(item.block)!;
    if (channel === 1) pages.preempt++;
    else if (e.postcopyState >= PostcopyState.LISTENING) pages.main++;
    else pages.precopy++;
    apply(() => e.page(channel, index, item.pageOffset, item.kind === 'zero-page', item.data ?? EMPTY, 0, t));
  };

  /**
   * A run of consecutive main-stream pages of one read (pageRuns.ts), one engine input for
   * the run: faults read meanwhile are decided before it (once per run, where page() reads
   * them before every page), and the run's time is taken after them.
   */
  const pageRun = (block: string, offset: number, count: number, zero: boolean, data: Uint8Array): void => {
    const e = engine;
    if (!e) throw new ReceiveRefusedError('not-qemu', `a RAM page of '${block}' before MEM_SIZE`);
    const postcopy = e.postcopyState >= PostcopyState.LISTENING;
    if (postcopy) backend!.takeFaults();
    const t = now();
    if (postcopy) pages.main += count;
    else pages.precopy += count;
    apply(() => e.pages(0, blockIndex.get(block)!, offset, count, zero, data, 0, t));
  };
  const mainRuns = new PageRuns(pageRun);

  const onMainItem = (item: MainItem): void => {
    if (finished) return;
    const t = now();
    if (heldMain !== null && item.kind !== 'recv-bitmap-request') {
      // Copies of what is a view into the read buffer.
      heldMain.push(item.kind === 'page' ? { ...item, data: item.data.slice() } : item.kind === 'device-state' ? { ...item, bytes: item.bytes.slice() } : item);
      return;
    }
    switch (item.kind) {
      case 'header':
      case 'section-start':
      case 'section-full':
      case 'section-part':
      case 'section-end':
      case 'section-footer':
      case 'eos':
      case 'switchover-start':
        return;
      case 'configuration':
        machineType = item.machineType;
        run.machineType = item.machineType;
        return;
      case 'mem-size':
        if (engine) return; // a later MEM_SIZE (none in 7.2): the layout stays
        createEngine(item.blocks, t);
        return;
      case 'open-return-path':
      case 'ping':
      case 'advise':
      case 'ram-discard':
      case 'packaged':
        return feed(item, t);
      case 'listen': {
        feed(item, t);
        if (engine && engine.postcopyState === PostcopyState.LISTENING && listenAt < 0) {
          listenAt = t;
          o.log(`LISTEN: postcopy listens (${pages.precopy} precopy pages so far)`);
          if (preemptEarly !== null) connectPreempt();
        }
        return;
      }
      case 'device-state': {
        deviceStateBytes = item.bytes.length;
        deviceStateSha256 = createHash('sha256').update(item.bytes).digest('hex');
        if (o.deviceStatePath) writeFileSync(o.deviceStatePath, item.bytes);
        run.deviceState = { bytes: deviceStateBytes, sha256: deviceStateSha256, ...(o.deviceStatePath ? { file: o.deviceStatePath } : {}) };
        writer?.updateMeta({ run });
        return;
      }
      case 'run':
        feed(item, t);
        if (engine && engine.postcopyState === PostcopyState.RUNNING) startVcpus();
        return;
      case 'postcopy-resume':
        if (o.preempt && preempt === null) {
          // The recovery's preempt channel is not there yet: the RESUME and what follows wait for it.
          heldMain = [item];
          return;
        }
        feed(item, t);
        if (migrationStatus() === 'postcopy-active') o.log(`RESUME: answered RESUME_ACK, ${engine!.requested.size} outstanding requests sent again`);
        return;
      case 'recv-bitmap-request': {
        if (!returnPath.answerBitmapRequest(item.blockName)) o.log(`RECV_BITMAP for '${item.blockName}', which has no receive bitmap to send (unknown block or asked twice)`);
        return;
      }
      case 'page':
      case 'zero-page':
        return page(0, item);
      case 'eof':
        apply(() => engine?.endOfStream(0, t));
        checkEnd();
        return;
    }
  };

  const onPreemptItem = (item: PreemptItem): void => {
    if (finished) return;
    const t = now();
    if (item.kind === 'eos') apply(() => engine?.endOfStream(1, t));
    else page(1, item);
    checkEnd();
  };

  // ---------------------------------------------------------------------------
  // Connections

  const refuseConnection = (c: Conn, why: string): void => {
    c.role = 'refused';
    connections.refused++;
    o.log(`connection #${c.id} from ${c.sock.remoteAddress}:${c.sock.remotePort} refused: ${why}`);
    c.sock.destroy();
  };

  /** Pushes a chunk of the main stream; a bad stream is refused (before the engine) or a stream error. */
  const pushMain = (c: Conn, chunk: Buffer): void => {
    if (main !== c || !mainDecoder) return;
    const sock = c.sock;
    sock.cork();
    try {
      for (const item of mainDecoder.push(chunk)) {
        if ((item.kind === 'page' || item.kind === 'zero-page') && heldMain === null && !finished) {
          mainRuns.add(item);
          continue;
        }
        mainRuns.flush();
        onMainItem(item);
      }
      mainRuns.flush();
    } catch (err) {
      if (!(err instanceof PostcopyError)) throw err;
      mainFailed(c, err);
    } finally {
      sock.uncork();
    }
  };

  const mainFailed = (c: Conn, err: PostcopyError): void => {
    if (finished || main !== c) return;
    if (!engine) {
      refuse(err);
      return;
    }
    o.log(`main stream error: ${err.message}`);
    mainState = mainDecoder!.state();
    main = null;
    c.sock.destroy();
    const e = engine;
    apply(() => e.streamError(0, err.message, now()));
    afterBreak('main stream error');
  };

  const afterBreak = (why: string): void => {
    lastProblem = why;
    if (migrationStatus() === 'postcopy-paused') onPaused(why);
    else checkEnd();
  };

  const startMain = (c: Conn, resumed: boolean): void => {
    if (!resumed && connections.main === 0 && engine === null) {
      t0 = Number(process.hrtime.bigint());
      originWallNs = Date.now() * 1e6;
    }
    c.role = 'main';
    main = c;
    preemptSlotOpen = o.preempt;
    if (resumed) {
      connections.resumes++;
      mainDecoder = new MainStreamDecoder({ resume: mainState! });
      if (pauseTimer) clearTimeout(pauseTimer);
      pauseTimer = null;
      pausedNoted = false;
      // Whatever is left of the earlier connections is stale now.
      if (preempt && preempt.epoch < pauses) {
        const old = preempt;
        preempt = null;
        old.sock.destroy();
        apply(() => engine!.channelBroken(1, 'superseded by the resumed main connection', now()));
      }
      returnPath.clearBitmaps();
      apply(() => engine!.channelConnected(0, now()));
      o.log(`connection #${c.id}: the resumed main stream (postcopy ${migrationStatus()}; ${returnPath.bitmapsReady} receive bitmaps ready)`);
      // A connection of this recovery that came first and has said nothing yet is its preempt
      // channel (it carries nothing until pages are requested, and RESUME waits for it).
      for (const p of [...pending]) {
        pending.delete(p);
        if (p.sock.destroyed) continue;
        if (preemptSlotOpen && preempt === null) startPreempt(p);
        else refuseConnection(p, 'a second connection of this recovery besides main and preempt');
      }
    } else {
      connections.main++;
      mainDecoder = new MainStreamDecoder();
      o.log(`connection #${c.id} from ${c.sock.remoteAddress}:${c.sock.remotePort}: the main stream`);
    }
    c.sock.on('close', () => {
      if (main !== c || finished) return;
      // A truncated first connection: the decoder says where it stopped.
      if (!engine && mainDecoder) {
        if (mainDecoder.bytesReceived === 0) {
          // Connected and closed without a byte (a port probe): not a migration, keep waiting.
          o.log(`connection #${c.id} closed before sending anything`);
          main = null;
          mainDecoder = null;
          connections.main--;
          return;
        }
        try {
          mainDecoder.end();
          refuse(new ReceiveRefusedError('not-qemu', 'the main connection closed before MEM_SIZE'));
        } catch (err) {
          refuse(err as PostcopyError);
        }
        return;
      }
      mainState = mainDecoder!.state();
      main = null;
      if (migrationStatus() === 'completed') return;
      apply(() => engine!.channelBroken(0, 'main connection closed by the peer', now()));
      afterBreak('the main connection closed');
    });
  };

  const connectPreempt = (): void => {
    const c = preempt!;
    const chunks = preemptEarly ?? [];
    preemptEarly = null;
    apply(() => engine!.channelConnected(1, now()));
    for (const chunk of chunks) pushPreempt(c, chunk);
    if (heldMain !== null) {
      const held = heldMain;
      heldMain = null;
      for (const item of held) onMainItem(item);
    }
  };

  /** Connections in the preempt slot that have not yet shown what they are. */
  const candidates = new Set<Conn>();

  /** Whether bytes begin the preempt channel: a RAM record of a known block (a trial decode), a reason why not, or too few bytes yet. */
  const preemptVerdict = (bytes: Buffer): 'preempt' | 'undecided' | string => {
    const trial = new PreemptChannelDecoder({ blocks: layouts.map((l) => ({ name: l.name, usedLength: l.length })) });
    try {
      return trial.push(bytes).length > 0 ? 'preempt' : 'undecided';
    } catch (err) {
      if (!(err instanceof PostcopyError)) throw err;
      return err.message;
    }
  };

  const startPreempt = (c: Conn): void => {
    c.role = 'preempt';
    preempt = c;
    preemptSlotOpen = false;
    connections.preempt++;
    preemptDecoder = new PreemptChannelDecoder({ blocks: layouts.map((l) => ({ name: l.name, usedLength: l.length })) });
    o.log(`connection #${c.id}: the preempt channel`);
    // Before LISTEN was read (its connection can overtake the main stream), it waits for it.
    if (!engine || (engine.postcopyState < PostcopyState.LISTENING && listenAt < 0)) preemptEarly = [];
    else connectPreempt();
    c.sock.on('close', () => {
      if (preempt !== c || finished) return;
      preempt = null;
      if (!engine || migrationStatus() === 'completed' || engine.postcopyState >= PostcopyState.END) return;
      if (preemptEarly !== null || !engine.preemptChannelOpen) return; // never in use, or it ended (EOS) before it closed
      apply(() => engine!.channelBroken(1, 'preempt connection closed by the peer', now()));
      afterBreak('the preempt connection closed');
    });
  };

  const pushPreempt = (c: Conn, chunk: Buffer): void => {
    if (preempt !== c || !preemptDecoder) return;
    if (preemptEarly !== null) {
      preemptEarly.push(Buffer.from(chunk)); // a copy: the chunk is the read buffer's
      return;
    }
    const rp = main?.sock;
    rp?.cork();
    try {
      for (const item of preemptDecoder.push(chunk)) onPreemptItem(item);
    } catch (err) {
      if (!(err instanceof PostcopyError)) throw err;
      o.log(`preempt channel error: ${err.message}`);
      preempt = null;
      c.sock.destroy();
      apply(() => engine!.streamError(1, err.message, now()));
      afterBreak('preempt channel error');
    } finally {
      rp?.uncork();
    }
  };

  const onConnection = (accepted: Socket): void => {
    // While paused, the first byte tells a resumed main stream from a preempt channel.
    // `chunk` is a view into the connection's read buffer (readBufferSocket.ts): valid during this call only.
    const onData = (chunk: Buffer): void => {
      if (c.role === 'pending') {
        pending.delete(c);
        if (chunk[0] === RESUMED_MAIN_FIRST_BYTE && main === null && migrationStatus() === 'postcopy-paused') startMain(c, true);
        else if (preemptSlotOpen && preempt === null && main !== null) startPreempt(c);
        else if (preemptSlotOpen && preempt === null && main === null && chunk[0] !== RESUMED_MAIN_FIRST_BYTE) startPreempt(c);
        else {
          refuseConnection(c, `not a connection of this paused migration (first byte 0x${chunk[0]!.toString(16).padStart(2, '0')})`);
          return;
        }
      }
      if (c.role === 'candidate') {
        c.early!.push(Buffer.from(chunk)); // a copy: the chunk is the read buffer's
        const verdict = preemptVerdict(Buffer.concat(c.early!));
        if (verdict === 'undecided') return;
        candidates.delete(c);
        if (verdict !== 'preempt' || preempt !== null || finished) {
          refuseConnection(c, verdict !== 'preempt' ? `its first bytes are not the preempt channel's: ${verdict}` : 'this migration already has its preempt connection');
          return;
        }
        const early = c.early!;
        delete c.early;
        startPreempt(c);
        for (const b of early) pushPreempt(c, b);
        return;
      }
      if (c.role === 'main') pushMain(c, chunk);
      else if (c.role === 'preempt') pushPreempt(c, chunk);
    };
    const sock = withReadBuffer(accepted, (chunk) => onData(chunk));
    sock.setNoDelay(true);
    sock.on('error', () => {});
    const c: Conn = { sock, role: 'pending', id: ++connIds, epoch: pauses };
    if (finished) {
      refuseConnection(c, 'the migration is over');
      return;
    }
    const paused = engine !== null && (migrationStatus() === 'postcopy-paused' || migrationStatus() === 'postcopy-recover');
    if (main === null && connections.main === 0) {
      startMain(c, false);
    } else if (!paused && main !== null && preemptSlotOpen && preempt === null) {
      // Connections carry no name: the preempt channel is known by its first RAM record, which
      // may come late (QEMU 10.0 connects it at the switch and sends only answers to requests).
      c.role = 'candidate';
      c.early = [];
      candidates.add(c);
    } else if (!paused) {
      refuseConnection(c, o.preempt ? 'this migration already has its main and preempt connections' : 'this migration already has its main connection (is postcopy-preempt on at the source? then run receive with --preempt)');
      return;
    } else if (main !== null && main.epoch === pauses && preemptSlotOpen && preempt === null) {
      // The recovery's main stream is back: the next connection is its preempt channel.
      startPreempt(c);
    } else {
      pending.add(c);
    }
    sock.on('close', () => {
      pending.delete(c);
      candidates.delete(c);
      if (c.role === 'pending' || c.role === 'candidate') o.log(`connection #${c.id} closed before sending anything`);
    });
  };

  const server = createServer({ pauseOnConnect: true }, onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen.port, o.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as { address: string; port: number };
  run.listen = `${o.listen.host}:${bound.port}`;
  o.onListening?.({ host: o.listen.host, port: bound.port });
  o.log(`listening on ${o.listen.host}:${bound.port} for a QEMU migration source${o.preempt ? ' (postcopy-preempt)' : ''}`);
  return done;
}
