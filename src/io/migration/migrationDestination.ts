import { createServer, type Server, type Socket } from 'node:net';
import { PostcopyState, TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { Destination } from '../../engine/destination.js';
import { MachineId } from '../../engine/events.js';
import { MainStreamDecoder, PreemptChannelDecoder, type MainItem, type MainStreamState, type PreemptItem } from '../../engine/qemuWire/index.js';
import { PostcopyError } from '../../errors.js';
import { JournalWriter } from '../../journal/journalWriter.js';
import type { AccessPatternName } from '../backends/accessPatterns.js';
import type { BlockLayout } from '../../engine/ports.js';
import { pageDigest } from '../backends/guestImage.js';
import { PageRuns } from '../qemu/pageRuns.js';
import { chooseBackend } from '../backends/vcpuLauncher.js';
import { commitAtQuietMoments } from '../quietCommits.js';
import { engineCommandOf, RESUMED_MAIN_FIRST_BYTE, ReturnPathSender } from '../qemu/wireFeed.js';
import { PACKAGE_VERSION } from '../../paths.js';

export interface DestinationOptions {
  sizeBytes: number;
  hostPageSize: number;
  vcpus: number;
  workload: AccessPatternName;
  seed: number;
  preempt: boolean;
  journalPath: string;
  backend: 'auto' | 'uffd' | 'mock';
  faultReader: 'thread' | 'loop';
  /** Nice value of the vCPU threads (0: same as the migration threads). */
  vcpuNice: number;
  /** Replace an existing journal at journalPath (default true; `migrate` passes false unless --force). */
  overwrite?: boolean;
}

export type DestinationMessage =
  | { type: 'listening'; port: number }
  | { type: 'backend'; kind: 'uffd' | 'mock'; reason?: string }
  | { type: 'progress'; postcopyState: number; status: string; received: number; total: number; outstanding: number; faults: number; lastLatencyMs: number }
  | { type: 'digest'; pages: number; hashes: string; byte0: string; vcpuAccesses: number[]; passes: number }
  | { type: 'paused'; outstanding: number; journalPath: string; status?: string }
  | { type: 'done'; status: string; summary: DestinationSummary };

export interface DestinationSummary {
  status: string;
  journalPath: string;
  events: number;
  stats: Destination['stats'];
  requestLatency: ReturnType<Destination['requestLatency']['summary']>;
  blocktime: ReturnType<Destination['blocktime']['report']>;
  phasesMs: { precopy: number; postcopy: number };
  outstanding: number;
}

const BLOCK = 'pc.ram';
const EMPTY = new Uint8Array(0);

/**
 * The destination side of an end-to-end migration, in its own process: the engine over
 * the native userfaultfd backend (or the mock one, with the reason said), a TCP server
 * on 127.0.0.1 that reads QEMU's wire (the same decoders and item feeding as `postcopy
 * receive`, src/io/qemu/wireFeed.ts), real vCPU threads started at RUN, the journal, and
 * at the end a digest of guest memory.
 *
 * QEMU's wire names no channel; connections are known by their order and first byte, as
 * `receive` knows them: the first is the main stream ("QEVM"), whose reverse direction is
 * the return path; with preempt, the next one while that main connection is in use is the
 * preempt channel. Any later connection says what it is with its first byte: 0x08 (the
 * RECV_BITMAP command a resumed main stream starts with) is a recovery's main stream, and
 * a connection of that recovery that has not said anything is its preempt channel
 * (a preempt channel carries nothing until a page is requested). Anything else is dropped
 * without touching the migration.
 */
export async function runMigrationDestination(opts: DestinationOptions, report: (m: DestinationMessage) => void, giveUp: Promise<void>): Promise<number> {
  const layout: BlockLayout = { name: BLOCK, length: opts.sizeBytes, hostPageSize: opts.hostPageSize };
  const { backend, startVcpus: launchVcpus } = chooseBackend(opts.backend, layout, { readerMode: opts.faultReader }, (kind, reason) =>
    report(reason === undefined ? { type: 'backend', kind } : { type: 'backend', kind, reason }),
  );
  // t = 0 becomes the source's first connection (below), so the journal does not open on the
  // source process's start-up; the wall clock of that moment is the journal's origin.
  let t0 = Number(process.hrtime.bigint());
  const now = (): number => Number(process.hrtime.bigint()) - t0;
  const writer = JournalWriter.create(opts.journalPath, {
    engineVersion: PACKAGE_VERSION,
    source: 'engine',
    created: new Date().toISOString(),
    timeOriginNs: Date.now() * 1e6,
    blocks: [{ ...layout, hostAddress: backend.hostAddress(0) }],
    vcpuTids: [],
    capabilities: opts.preempt ? ['preempt'] : [],
    blocktimeMode: 'both',
    run: { kind: 'migrate', role: 'destination', backend: backend.kind, workload: opts.workload, seed: opts.seed, vcpus: opts.vcpus },
  }, { overwrite: opts.overwrite ?? true, autoCheckpoint: false }); // a WAL checkpoint stalled the event loop 10–17 ms mid-migration
  /** The connection each channel currently reads (main, preempt); the main one carries the return path. */
  const current: Array<Socket | null> = [null, null];
  const returnPath = new ReturnPathSender(() => current[0]);
  const engine = new Destination({ blocks: [layout], vcpuTids: [], vcpus: opts.vcpus, preempt: opts.preempt }, backend, returnPath, writer);
  engine.faultTimeOriginNs = t0;
  writer.setSnapshotSource(() => engine.snapshot());
  const stopCommits = commitAtQuietMoments(writer, () => engine.requested.size > 0);
  /** Set when this side gives up: what the connections still bring is not read (the journal closes). */
  let stopped = false;
  const connections = new Set<Socket>();
  let listenAt = -1;
  let endAt = -1;
  let vcpusStarted = false;
  let vcpuDone: Promise<number[]> = Promise.resolve([]);
  let stopVcpus = (): void => {};

  /** An input the engine refuses is journaled; the stream goes on (a bad peer is not fatal here). */
  const apply = (fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof PostcopyError)) throw err;
      process.stderr.write(`destination: ${err.message}\n`);
    }
  };

  const startVcpus = (): void => {
    vcpusStarted = true;
    const run = launchVcpus({ pattern: opts.workload, vcpus: opts.vcpus, seed: opts.seed, nice: opts.vcpuNice, nowNs: () => now() + t0 });
    engine.attachVcpus(run.tids);
    writer.updateMeta({ vcpuTids: run.tids });
    stopVcpus = run.stop;
    vcpuDone = run.done;
  };

  /** Decoders of the current main and preempt connections; what a resumed main stream takes over. */
  let mainDecoder: MainStreamDecoder | null = null;
  let preemptDecoder: PreemptChannelDecoder | null = null;
  let mainState: MainStreamState | null = null;
  /** The current main connection may still be joined by a preempt channel (once per main connection). */
  let preemptSlotOpen = false;
  /** Connections that have not said what they are yet (see the header comment). */
  const pending = new Set<Socket>();
  /** Main items after a RESUME read before the recovery's preempt channel connected. */
  let heldMain: MainItem[] | null = null;
  /** A first main connection was taken: every later main connection is a resumed one. */
  let mainTaken = false;

  /**
   * A resumed main connection starts a recovery, and the source dropped every earlier
   * connection before it reconnected. What this process has not read from those yet
   * (under load, even their close) is stale: read later, it would place pages after the
   * receive bitmap went out, or pause the recovery that is under way. So they break now.
   */
  const supersedeEarlierConnections = (): void => {
    heldMain = null; // a RESUME of the recovery that failed
    for (const c of [0, 1]) {
      const old = current[c];
      if (!old) continue;
      current[c] = null;
      old.destroy();
      apply(() => engine.channelBroken(c, 'superseded by the resumed main connection (its close was not read yet)', now()));
    }
  };

  const checkEnd = (): void => {
    if (endAt < 0 && engine.postcopyState === PostcopyState.END) endAt = now();
  };

  const page = (channel: 0 | 1, item: { kind: 'page' | 'zero-page'; pageOffset: number; data?: Uint8Array }): void => {
    // One socket read can hand over hundreds of pages; a fault read meanwhile is
    // decided now, before the next of them is placed, not after the whole run: the
    // page it waits for is requested or found on its way, and its blocktime starts at
    // its read, not after the placement that already woke it (section 3).
    if (engine.postcopyState >= PostcopyState.LISTENING) backend.takeFaults();
    apply(() => engine.page(channel, 0, item.pageOffset, item.kind === 'zero-page', item.data ?? EMPTY, 0, now()));
    // The last outstanding page on the preempt channel may be what ends postcopy.
    checkEnd();
  };

  /**
   * A run of consecutive main-stream pages of one read (pageRuns.ts): one engine input, one
   * UFFDIO_COPY in postcopy; faults read meanwhile are decided before it, once per run.
   */
  const pageRun = (channel: 0 | 1) => (_block: string, offset: number, count: number, zero: boolean, data: Uint8Array): void => {
    if (engine.postcopyState >= PostcopyState.LISTENING) backend.takeFaults();
    apply(() => engine.pages(channel, 0, offset, count, zero, data, 0, now()));
    // The last outstanding page on the preempt channel may be what ends postcopy.
    checkEnd();
  };
  const mainRuns = new PageRuns(pageRun(0));
  /** The preempt channel's runs: a requested page and the window prefetched after it. */
  const preemptRuns = new PageRuns(pageRun(1));

  const onMainItem = (item: MainItem): void => {
    if (heldMain !== null) {
      heldMain.push(item.kind === 'page' ? { ...item, data: item.data.slice() } : item);
      return;
    }
    switch (item.kind) {
      case 'mem-size': {
        // Our layout is given; the source's MEM_SIZE must describe the same memory.
        const b = item.blocks;
        if (b.length !== 1 || b[0]!.name !== BLOCK || b[0]!.usedLength !== opts.sizeBytes) {
          throw new PostcopyError('CONFIG_MISMATCH', `MEM_SIZE offers ${b.map((x) => `'${x.name}' ${x.usedLength}`).join(', ')}; this destination holds '${BLOCK}' ${opts.sizeBytes}`);
        }
        return;
      }
      case 'page':
      case 'zero-page':
        return page(0, item);
      case 'eof':
        apply(() => engine.endOfStream(0, now()));
        checkEnd();
        return;
      case 'recv-bitmap-request':
        if (!returnPath.answerBitmapRequest(item.blockName)) process.stderr.write(`destination: RECV_BITMAP for '${item.blockName}', which has no receive bitmap to send\n`);
        return;
      case 'postcopy-resume':
        if (opts.preempt && current[1] === null) {
          // The recovery's preempt channel is not there yet: the RESUME and what follows wait for it.
          heldMain = [item];
          return;
        }
        break;
      default:
        break;
    }
    const c = engineCommandOf(item);
    if (c === null) return;
    apply(() => engine.command(c.command, c.payload, now()));
    if (engine.postcopyState === PostcopyState.LISTENING && listenAt < 0) listenAt = now();
    if (engine.postcopyState === PostcopyState.RUNNING && !vcpusStarted) startVcpus();
  };

  const releaseHeldMain = (): void => {
    const held = heldMain;
    heldMain = null;
    for (const item of held ?? []) onMainItem(item);
  };

  const onPreemptItem = (item: PreemptItem): void => {
    if (item.kind === 'eos') {
      preemptRuns.flush();
      apply(() => engine.endOfStream(1, now()));
      checkEnd();
    } else preemptRuns.add(item);
  };

  /** Pushes a chunk into a channel's decoder; bad bytes from the peer are a stream error (postcopy pauses). */
  const push = (channel: 0 | 1, sock: Socket, chunk: Buffer): void => {
    if (current[channel] !== sock) return; // a superseded connection's last buffered bytes
    // The return path is corked while a read is consumed: the requests and PONGs it
    // causes leave in one write after it instead of one syscall each between pages:
    // most requests are for pages that come later in the same read.
    const rp = current[0];
    rp?.cork();
    let bad = false;
    try {
      if (channel === 0) {
        for (const item of mainDecoder!.push(chunk)) {
          if ((item.kind === 'page' || item.kind === 'zero-page') && heldMain === null) {
            mainRuns.add(item);
            continue;
          }
          mainRuns.flush();
          onMainItem(item);
        }
        mainRuns.flush();
      } else {
        for (const item of preemptDecoder!.push(chunk)) onPreemptItem(item);
        preemptRuns.flush();
      }
    } catch (err) {
      // Anything but a PostcopyError is our bug and must not pass for a bad peer.
      if (!(err instanceof PostcopyError)) throw err;
      if (current[channel] === sock) {
        if (channel === 0) mainState = mainDecoder!.state();
        current[channel] = null;
        apply(() => engine.streamError(channel, err.message, now()));
      }
      bad = true;
    } finally {
      rp?.uncork();
    }
    // After the uncork: what the read caused (a PONG) leaves before the connection closes.
    if (bad) sock.destroy();
  };

  const watchClose = (channel: 0 | 1, sock: Socket): void => {
    sock.on('close', () => {
      if (stopped || current[channel] !== sock) return; // superseded: its break was already applied
      if (channel === 0) mainState = mainDecoder!.state();
      current[channel] = null;
      if (engine.postcopyState >= PostcopyState.END || engine.stateOf(MachineId.MIGRATION) === 'completed') return;
      if (channel === 1 && !engine.preemptChannelOpen) return; // it ended (EOS) before it closed
      apply(() => engine.channelBroken(channel, 'connection closed by the peer', now()));
    });
  };

  const startMain = (sock: Socket, resumed: boolean): void => {
    if (resumed) {
      // The state of the last main stream, also when its close was not read yet.
      mainState = mainDecoder?.state() ?? mainState;
      supersedeEarlierConnections();
      mainDecoder = new MainStreamDecoder(mainState ? { resume: mainState } : {});
    } else {
      mainDecoder = new MainStreamDecoder(opts.hostPageSize !== TARGET_PAGE_SIZE ? { blocksWithOwnPageSize: new Set([BLOCK]) } : {});
    }
    mainTaken = true;
    current[0] = sock;
    preemptSlotOpen = opts.preempt;
    watchClose(0, sock);
    if (resumed) {
      returnPath.clearBitmaps();
      apply(() => engine.channelConnected(0, now()));
      // A connection of this recovery that came first and has said nothing yet is its preempt channel.
      for (const p of [...pending]) {
        pending.delete(p);
        if (p.destroyed) continue;
        if (preemptSlotOpen && current[1] === null) startPreempt(p);
        else dropConnection(p, 'a second connection of this recovery besides main and preempt');
      }
    }
  };

  const startPreempt = (sock: Socket): void => {
    preemptSlotOpen = false;
    current[1] = sock;
    preemptDecoder = new PreemptChannelDecoder({ blocks: [{ name: BLOCK, usedLength: opts.sizeBytes }] });
    watchClose(1, sock);
    apply(() => engine.channelConnected(1, now()));
    releaseHeldMain();
  };

  const dropConnection = (sock: Socket, why: string): void => {
    process.stderr.write(`destination: a connection dropped: ${why}\n`);
    sock.destroy();
  };

  const server: Server = createServer((sock) => {
    if (stopped) return void sock.destroy();
    if (!mainTaken && writer.nextSeq === 0) {
      t0 = Number(process.hrtime.bigint());
      engine.faultTimeOriginNs = t0;
      writer.updateMeta({ timeOriginNs: Date.now() * 1e6 });
    }
    connections.add(sock);
    sock.once('close', () => {
      connections.delete(sock);
      pending.delete(sock);
    });
    sock.setNoDelay(true);
    sock.on('error', () => {});
    let channel: 0 | 1 | null = null;
    if (!mainTaken) {
      startMain(sock, false);
      channel = 0;
    } else if (current[0] !== null && preemptSlotOpen && current[1] === null) {
      startPreempt(sock);
      channel = 1;
    } else {
      pending.add(sock);
    }
    sock.on('data', (chunk: Buffer) => {
      if (stopped) return;
      if (channel === null) {
        if (!pending.has(sock)) {
          // Taken as a preempt channel while it waited (a resumed main stream came first).
          channel = current[1] === sock ? 1 : null;
          if (channel === null) return;
        } else {
          pending.delete(sock);
          if (chunk[0] === RESUMED_MAIN_FIRST_BYTE) {
            startMain(sock, true);
            channel = 0;
          } else if (current[0] !== null && preemptSlotOpen && current[1] === null) {
            startPreempt(sock);
            channel = 1;
          } else {
            dropConnection(sock, `not a connection of this migration (first byte 0x${chunk[0]!.toString(16).padStart(2, '0')})`);
            return;
          }
        }
      }
      push(channel, sock, chunk);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  report({ type: 'listening', port: (server.address() as { port: number }).port });

  const total = opts.sizeBytes / TARGET_PAGE_SIZE;
  const progress = setInterval(() => {
    const lat = engine.requestLatency.count > 0 ? engine.requestLatency.quantile(0.5) / 1e6 : 0;
    report({
      type: 'progress',
      postcopyState: engine.postcopyState,
      status: engine.stateOf(MachineId.MIGRATION),
      received: engine.blocks[0]!.received.count(),
      total,
      outstanding: engine.requested.size,
      faults: engine.stats.faults,
      lastLatencyMs: lat,
    });
  }, 100);

  // Wait for completion, or for the orchestrator to give up on a paused migration.
  let check: NodeJS.Timeout | null = null;
  const outcome = await Promise.race([
    new Promise<'completed'>((resolve) => {
      check = setInterval(() => {
        if (engine.stateOf(MachineId.MIGRATION) === 'completed') resolve('completed');
      }, 5);
    }),
    giveUp.then(() => 'gave-up' as const),
  ]);
  clearInterval(check!);
  clearInterval(progress);
  if (outcome === 'gave-up') {
    // A source still sending (its parent gone, say) is cut off: nothing is journaled after the close.
    stopped = true;
    for (const c of connections) c.destroy();
    stopCommits();
    stopVcpus();
    const outstanding = engine.requested.size;
    const status = engine.stateOf(MachineId.MIGRATION);
    writer.close();
    report({ type: 'paused', outstanding, journalPath: opts.journalPath, status });
    server.close();
    backend.close();
    return 3;
  }
  // SHUT (0: fine) tells the source this side is done, as QEMU's destination does at the end.
  returnPath.shut(0);
  // The guest runs on: let the vCPUs finish their work, then take the memory's digest.
  const accesses = await vcpuDone;
  stopVcpus();
  const memory = backend.read(0, 0, opts.sizeBytes);
  report({ type: 'digest', ...pageDigest(memory, total), vcpuAccesses: accesses, passes: 1 });
  stopCommits();
  const events = writer.nextSeq;
  writer.close();
  report({
    type: 'done',
    status: engine.stateOf(MachineId.MIGRATION),
    summary: {
      status: engine.stateOf(MachineId.MIGRATION),
      journalPath: opts.journalPath,
      events,
      stats: engine.stats,
      requestLatency: engine.requestLatency.summary(),
      blocktime: engine.blocktime.report(),
      phasesMs: { precopy: listenAt / 1e6, postcopy: (endAt - listenAt) / 1e6 },
      outstanding: engine.requested.size,
    },
  });
  current[0]?.end();
  server.close();
  backend.close();
  return 0;
}
