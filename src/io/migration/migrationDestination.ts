import { createServer, type Server, type Socket } from 'node:net';
import { MigCommand, PostcopyState, TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { Destination } from '../../engine/destination.js';
import { MachineId } from '../../engine/events.js';
import { decodeCommandFrame } from '../../engine/wire.js';
import { PostcopyError } from '../../errors.js';
import { JournalWriter } from '../../journal/journalWriter.js';
import type { AccessPatternName } from '../backends/accessPatterns.js';
import type { BlockLayout } from '../../engine/ports.js';
import { pageDigest } from '../backends/guestImage.js';
import { chooseBackend } from '../backends/vcpuLauncher.js';
import { commitAtQuietMoments } from '../quietCommits.js';
import { FrameKind, FrameReader, decodePage, frame, returnPathFrame } from './streamFrames.js';
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
/** The main channel's pages are acknowledged to the source every this many (its push window is 1024). */
const ACK_EVERY_PAGES = 128;

/**
 * The destination side of an end-to-end migration, in its own process: the engine over
 * the native userfaultfd backend (or the mock one, with the reason said), a TCP server
 * on 127.0.0.1 for the main channel (with the return path) and the preempt channel, real
 * vCPU threads started at RUN, the journal, and at the end a digest of guest memory.
 */
export async function runMigrationDestination(opts: DestinationOptions, report: (m: DestinationMessage) => void, giveUp: Promise<void>): Promise<number> {
  const layout: BlockLayout = { name: BLOCK, length: opts.sizeBytes, hostPageSize: opts.hostPageSize };
  const { backend, startVcpus: launchVcpus } = chooseBackend(opts.backend, layout, { readerMode: opts.faultReader }, (kind, reason) =>
    report(reason === undefined ? { type: 'backend', kind } : { type: 'backend', kind, reason }),
  );
  const t0 = Number(process.hrtime.bigint());
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
  /** Pages consumed from the current main connection, acknowledged for flow control. */
  let mainConsumed = 0;
  const engine = new Destination(
    { blocks: [layout], vcpuTids: [], vcpus: opts.vcpus, preempt: opts.preempt },
    backend,
    { send: (type, payload) => (current[0] !== null && !current[0].destroyed ? (current[0].write(returnPathFrame(type, payload)), true) : false) },
    writer,
  );
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

  /**
   * A reconnecting main channel starts a recovery, and the source dropped every earlier
   * connection before it reconnected. What this process has not read from those yet
   * (under load, even their close) is stale: read later, it would place pages after the
   * receive bitmap went out, or pause the recovery that is under way. So they break now.
   */
  const supersedeEarlierConnections = (): void => {
    heldMainFrames = null; // a RESUME of the recovery that failed
    for (const c of [0, 1]) {
      const old = current[c];
      if (!old) continue;
      current[c] = null;
      old.destroy();
      apply(() => engine.channelBroken(c, 'superseded by the reconnected main channel (its close was not read yet)', now()));
    }
  };

  /**
   * With preempt, recovery resumes once both channels are back. The source connects the
   * preempt channel before it sends RESUME, but two sockets have no order between them:
   * a RESUME read before the preempt channel's HELLO waits for it, and so do the main
   * channel's frames after it, in order.
   */
  let heldMainFrames: Array<[number, Uint8Array]> | null = null;
  const releaseHeldMainFrames = (): void => {
    const held = heldMainFrames;
    heldMainFrames = null;
    for (const [kind, payload] of held ?? []) onChannelFrame(0)(kind, payload);
  };

  /** Tells the source how many pages of the current main connection were consumed (flow control). */
  const acknowledgeMain = (): void => {
    if (current[0] === null) return;
    const ack = Buffer.allocUnsafe(4);
    ack.writeUInt32BE(mainConsumed >>> 0, 0);
    current[0].write(frame(FrameKind.ACK, ack));
  };

  const onChannelFrame = (channel: number) => (kind: number, payload: Uint8Array): void => {
    if (channel === 0 && heldMainFrames !== null) {
      heldMainFrames.push([kind, payload.slice()]);
      return;
    }
    switch (kind) {
      case FrameKind.COMMAND: {
        const f = decodeCommandFrame(payload);
        if (f.kind === MigCommand.POSTCOPY_RESUME && opts.preempt && current[1] === null) {
          heldMainFrames = [[kind, payload.slice()]];
          return;
        }
        apply(() => engine.command(f.kind, f.payload, now()));
        if (engine.postcopyState === PostcopyState.LISTENING && listenAt < 0) {
          listenAt = now();
          // At once, not at the next 128 pages: tells the source that this side listens
          // (a break from here on pauses postcopy instead of failing the migration).
          acknowledgeMain();
        }
        if (engine.postcopyState === PostcopyState.RUNNING && !vcpusStarted) startVcpus();
        return;
      }
      case FrameKind.PAGE: {
        // One socket read can hand over hundreds of pages; a fault read meanwhile is
        // decided now, before the next of them is placed, not after the whole run: the
        // page it waits for is requested or found on its way, and its blocktime starts at
        // its read, not after the placement that already woke it (section 3).
        if (engine.postcopyState >= PostcopyState.LISTENING) backend.takeFaults();
        const p = decodePage(payload);
        apply(() => engine.page(channel, p.block, p.offset, p.zero, p.data, 0, now()));
        if (channel === 0 && ++mainConsumed % ACK_EVERY_PAGES === 0) acknowledgeMain();
        // The last outstanding page on the preempt channel may be what ends postcopy.
        if (endAt < 0 && engine.postcopyState === PostcopyState.END) endAt = now();
        return;
      }
      case FrameKind.EOS:
        apply(() => engine.endOfStream(channel, now()));
        if (engine.postcopyState === PostcopyState.END && endAt < 0) endAt = now();
        return;
      default:
        throw new PostcopyError('BAD_FRAME', `unexpected frame kind ${kind} on channel ${channel}`);
    }
  };

  const server: Server = createServer((sock) => {
    if (stopped) return void sock.destroy();
    connections.add(sock);
    sock.once('close', () => connections.delete(sock));
    sock.setNoDelay(true);
    let channel = -1;
    const reader = new FrameReader((kind, payload) => {
      if (channel < 0) {
        if (kind !== FrameKind.HELLO) throw new PostcopyError('BAD_FRAME', 'a connection must start with HELLO');
        if (payload[0] !== 0 && payload[0] !== 1) throw new PostcopyError('BAD_FRAME', `HELLO names channel ${payload[0]}; there are channels 0 (main) and 1 (preempt)`);
        channel = payload[0];
        const reconnect = payload[1] === 1;
        if (channel === 0 && reconnect) supersedeEarlierConnections();
        current[channel] = sock;
        if (channel === 0) mainConsumed = 0;
        if (channel === 0 && reconnect) apply(() => engine.channelConnected(0, now()));
        if (channel === 1) {
          apply(() => engine.channelConnected(1, now()));
          releaseHeldMainFrames();
        }
        sock.on('close', () => {
          if (stopped || current[channel] !== sock) return; // superseded: its break was already applied
          current[channel] = null;
          if (engine.postcopyState >= PostcopyState.END || engine.stateOf(MachineId.MIGRATION) === 'completed') return;
          apply(() => engine.channelBroken(channel, 'connection closed by the peer', now()));
        });
        return;
      }
      if (current[channel] !== sock) return; // a superseded connection's last buffered frames
      onChannelFrame(channel)(kind, payload);
    });
    sock.on('data', (chunk: Buffer) => {
      if (stopped) return;
      // The return path is corked while a read is consumed: the requests and ACKs it
      // causes leave in one write after it instead of one syscall each between pages:
      // most requests are for pages that come later in the same read.
      const rp = current[0];
      rp?.cork();
      try {
        reader.push(chunk);
      } catch (err) {
        // Bad bytes from the peer are a stream error (postcopy pauses); anything else is our bug and must not pass for one.
        if (!(err instanceof PostcopyError)) throw err;
        // A connection that never named its channel is no channel of this migration: it is only dropped.
        if (channel < 0) process.stderr.write(`destination: a connection dropped before its HELLO: ${err.message}\n`);
        else if (current[channel] === sock) apply(() => engine.streamError(channel, err.message, now()));
        sock.destroy();
      } finally {
        rp?.uncork();
      }
    });
    sock.on('error', () => {});
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
