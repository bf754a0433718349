/**
 * `postcopy tap`: a relay between a QEMU source and its destination that journals what
 * crosses it (a flight recorder for migrations nobody traced).
 *
 * Forwarding comes first and never waits for the recorder. It is native (src/native/tapRelay.ts,
 * native/src/relay.cc): two threads per connection, one per direction, each reading what is
 * there, up to 1 MiB, and writing all of it to the other socket (TCP_NODELAY both ways; a
 * peer that does not take its bytes holds its thread in the write, so nothing is buffered
 * beyond one read), and only then copying the read into a ring of shared memory (tapRing.ts), from which a
 * worker thread decodes and journals (tapWorker.ts -> tapRecorder.ts). No JavaScript runs
 * between a read and its write. When the worker falls a whole ring (`maxBacklogBytes`)
 * behind, the relay stops handing it that direction's bytes and the journal says from which
 * byte (TAP_UNDECODED); the migration goes on untouched. Bytes the recorder cannot decode are
 * forwarded all the same: the tap never breaks a migration it does not understand.
 *
 * This thread accepts (paused: a client's bytes wait in the kernel), connects upstream, and
 * hands the connected pair to the relay. Every connection the source opens is accepted and
 * forwarded to `to` (main, preempt, an unrelated client too: each journaled as its own
 * connection). Once the source ended the first connection (the main one), new connections go
 * to `resumeTo` when given: the destination recovers on another address (QEMU: migrate-recover URI).
 *
 * The tap ends when every connection is closed and the migration completed or failed, or
 * on stop() (SIGINT in the CLI); it then commits the journal.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import { assertNever } from '../../engine/events.js';
import { JournalWriter } from '../../journal/journalWriter.js';
import { socketFd } from '../../native/socketOptions.js';
import { createTapRelay, type NativeTapRelay, type RelayEvent } from '../../native/tapRelay.js';
import { TapRecorder, type DirectionValue, type TapSummary } from './tapRecorder.js';
import { createRing, RecordType } from './tapRing.js';
import type { Endpoint } from './qemuReceiver.js';

export interface TapOptions {
  listen: Endpoint;
  to: Endpoint;
  /** Where connections go once the first (main) connection closed: the destination recovering elsewhere. */
  resumeTo?: Endpoint;
  journalPath: string;
  /** Replace an existing journal file. */
  overwrite?: boolean;
  /** Bytes handed to the recorder and not yet decoded (the size of its ring, resident), beyond which a direction stops being decoded. Default 128 MiB. */
  maxBacklogBytes?: number;
  /** End by itself once every connection closed and the migration is over (default true). */
  endWhenDone?: boolean;
  log?: (line: string) => void;
}

export interface TapResult {
  journalPath: string;
  /** Null when the recorder failed (`recorderError`): the journal holds what it committed before. */
  summary: TapSummary | null;
  recorderError?: string;
  /** Bytes forwarded in all, per direction. */
  forwarded: { toDestination: number; toSource: number };
  durationMs: number;
}

export interface TapHandle {
  /** The address actually bound (port 0 picks one). */
  listening: Endpoint;
  /** Resolves when the tap ended (migration over, or stop()). */
  done: Promise<TapResult>;
  /** Ends the tap: open connections are closed, the journal committed. */
  stop(): Promise<TapResult>;
}

/** What the recorder takes, in order (the ring's records, decoded by tapWorker.ts). */
export type TapMessage =
  | { type: 'open'; id: number; t: number; client: string; upstream: string }
  | { type: 'data'; id: number; dir: DirectionValue; t: number; bytes: Uint8Array }
  | { type: 'gap'; id: number; dir: DirectionValue; from: number; reason: string; t: number }
  | { type: 'close'; id: number; dir: DirectionValue; bytes: number; t: number }
  | { type: 'error'; id: number; side: DirectionValue; message: string; t: number }
  | { type: 'finish' };

/** What the recorder tells the relay. */
export type TapReply =
  | { type: 'migration'; status: string }
  | { type: 'ready' }
  | { type: 'done'; summary: TapSummary }
  | { type: 'failed'; message: string };

/** The recorder thread. */
interface RecorderLink {
  /** Resolves once the recorder reads the ring. */
  ready: Promise<void>;
  onReply(f: (r: TapReply) => void): void;
  close(): Promise<void>;
}

const DEFAULT_MAX_BACKLOG = 128 * 1024 * 1024;

/** Starts the tap; resolves once it listens. */
export async function startTap(o: TapOptions): Promise<TapHandle> {
  const log = o.log ?? (() => {});
  const started = performance.now();
  const run = {
    kind: 'tap',
    listen: `${o.listen.host}:${o.listen.port}`,
    to: `${o.to.host}:${o.to.port}`,
    ...(o.resumeTo ? { resumeTo: `${o.resumeTo.host}:${o.resumeTo.port}` } : {}),
  };
  const ring = createRing(o.maxBacklogBytes ?? DEFAULT_MAX_BACKLOG);
  const control = new Int32Array(ring, 0, 1);
  /** The relay's threads cannot wake the worker's Atomics.wait; this thread does, when they say so. */
  const wakeRecorder = (): void => void Atomics.notify(control, 0);

  let nextId = 0;
  let open = 0;
  let firstClosed = false;
  let migration = 'setup';
  let ending = false;
  /** Sockets not yet handed to the relay (accepted, upstream connecting). */
  const connecting = new Set<Socket>();
  let settle!: (r: TapResult) => void;
  let fail!: (e: Error) => void;
  const done = new Promise<TapResult>((resolve, reject) => {
    settle = resolve;
    fail = reject;
  });
  let summary: TapSummary | null = null;
  let recorderError: string | undefined;
  let summaryArrived!: () => void;
  const summaryPromise = new Promise<void>((r) => (summaryArrived = r));

  const maybeEnd = (): void => {
    if (o.endWhenDone === false || ending || open > 0 || nextId === 0) return;
    if (migration === 'completed' || migration === 'failed') void stop();
  };

  const connectionOver = (id: number, line: string): void => {
    open--;
    if (id === 0) firstClosed = true;
    log(line);
    maybeEnd();
  };

  const onRelayEvents = (events: RelayEvent[]): void => {
    wakeRecorder();
    for (const e of events) {
      switch (e.type) {
        case 'end':
          // The source left its first (main) connection: what it opens next is a resumption.
          if (e.id === 0 && e.dir === 0) firstClosed = true;
          break;
        case 'error':
          if (e.id === 0) firstClosed = true;
          log(`connection ${e.id}: ${e.message}`);
          break;
        case 'closed':
          connectionOver(e.id, `connection ${e.id} closed: ${e.toDestination} bytes to the destination, ${e.toSource} to the source`);
          break;
        case 'gap':
          log(`connection ${e.id}: ${e.dir === 0 ? 'to the destination' : 'to the source'} from byte ${e.from} on, forwarded but not recorded: ${e.reason}`);
          break;
        case 'wake':
          break;
        default:
          assertNever(e, 'relay event');
      }
    }
  };
  // The relay's clock starts now, with the journal's wall-clock origin.
  const relay: NativeTapRelay = createTapRelay(ring, onRelayEvents);
  const link = startRecorder(o.journalPath, o.overwrite ?? false, run, Date.now() * 1e6, ring);

  link.onReply((r) => {
    switch (r.type) {
      case 'migration':
        migration = r.status;
        log(`migration ${r.status}`);
        maybeEnd();
        return;
      case 'ready':
        return;
      case 'done':
        summary = r.summary;
        summaryArrived();
        return;
      case 'failed':
        // Forwarding goes on: a recorder that broke must not break the migration it records.
        log(`recorder failed (forwarding goes on, the journal stops here): ${r.message}`);
        recorderError ??= r.message;
        summaryArrived();
        return;
    }
  });

  const onConnection = (client: Socket): void => {
    if (ending) {
      client.destroy();
      return;
    }
    const id = nextId++;
    open++;
    const target = firstClosed && o.resumeTo ? o.resumeTo : o.to;
    const clientName = `${client.remoteAddress}:${client.remotePort}`;
    const upstreamName = `${target.host}:${target.port}`;
    relay.post(RecordType.OPEN, id, 0, 0, `${clientName}\n${upstreamName}`);
    wakeRecorder();
    log(`connection ${id}: ${clientName} -> ${upstreamName}`);
    const upstream = connect({ host: target.host, port: target.port, noDelay: true });
    // Nothing is read on this thread: the relay reads both sockets once they are handed over.
    upstream.pause();
    connecting.add(client);
    connecting.add(upstream);
    const forget = (): void => {
      connecting.delete(client);
      connecting.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    const refused = (side: DirectionValue, message: string): void => {
      const what = `${side === 0 ? 'source side' : 'destination side'}: ${message}`;
      relay.post(RecordType.ERROR, id, side, 0, what);
      wakeRecorder();
      log(`connection ${id}: ${what}`);
      forget();
      connectionOver(id, `connection ${id} closed: 0 bytes to the destination, 0 to the source`);
    };
    client.on('error', () => {}); // paused until the hand-over: nothing is read here
    upstream.once('error', (err) => {
      if (connecting.has(upstream)) refused(1, err.message);
    });
    upstream.once('connect', () => {
      if (!connecting.has(upstream)) return;
      const clientFd = socketFd(client);
      const upstreamFd = socketFd(upstream);
      if (clientFd === null) return refused(0, 'the connection closed before it was forwarded');
      if (upstreamFd === null) return refused(1, 'the connection closed before it was forwarded');
      try {
        relay.attach(id, clientFd, upstreamFd);
      } catch (err) {
        return refused(0, `the relay could not take the connection: ${(err as Error).message}`);
      }
      // The relay holds its own fds now; these only close this thread's.
      upstream.on('error', () => {});
      forget();
    });
  };

  const closeEverything = async (): Promise<void> => {
    relay.close();
    await link.close(); // the recorder thread would keep the process alive
  };
  try {
    await link.ready;
  } catch (err) {
    await closeEverything();
    throw err;
  }
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, onConnection);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.listen.port, o.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await closeEverything();
    throw err;
  }
  const address = server.address();
  const listening = { host: o.listen.host, port: typeof address === 'object' && address !== null ? address.port : o.listen.port };
  log(`listening on ${listening.host}:${listening.port}, forwarding to ${o.to.host}:${o.to.port}${o.resumeTo ? ` (after the first connection closed: ${o.resumeTo.host}:${o.resumeTo.port})` : ''}; journal ${o.journalPath}`);

  let stopping: Promise<TapResult> | null = null;
  const stop = (): Promise<TapResult> => {
    if (stopping) return stopping;
    ending = true;
    stopping = (async () => {
      server.close();
      for (const s of connecting) s.destroy();
      // Every connection ends and the relay's threads are joined: FINISH is the ring's last record.
      relay.stop();
      relay.post(RecordType.FINISH, 0, 0, 0, null);
      wakeRecorder();
      await Promise.race([summaryPromise, done.then(() => undefined)]);
      const [toDestination, toSource] = relay.forwarded();
      await closeEverything();
      const result: TapResult = { journalPath: o.journalPath, summary, forwarded: { toDestination, toSource }, durationMs: performance.now() - started, ...(recorderError === undefined ? {} : { recorderError }) };
      if (summary !== null) log(`journal committed: ${summary.requests} page requests, pages ${summary.pages.precopy} precopy + ${summary.pages.main} main + ${summary.pages.preempt} preempt, migration ${summary.migration}`);
      settle(result);
      return result;
    })();
    stopping.catch(fail);
    return stopping;
  };

  return { listening, done, stop };
}

/** The recorder in a worker thread, reading the ring the relay writes. */
function startRecorder(journalPath: string, overwrite: boolean, run: Record<string, unknown>, timeOriginNs: number, ring: SharedArrayBuffer): RecorderLink {
  const worker = new Worker(new URL('./tapWorker.js', import.meta.url), { workerData: { journalPath, overwrite, run, timeOriginNs, ring } });
  const handlers: Array<(r: TapReply) => void> = [];
  let isReady!: () => void;
  let notReady!: (e: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    isReady = resolve;
    notReady = reject;
  });
  worker.on('message', (r: TapReply) => {
    if (r.type === 'ready') isReady();
    else if (r.type === 'failed') notReady(new Error(`the tap's recorder failed: ${r.message}`));
    handlers.forEach((h) => h(r));
  });
  worker.on('error', (err) => {
    notReady(err);
    handlers.forEach((h) => h({ type: 'failed', message: err.message }));
  });
  return {
    ready,
    onReply: (f) => handlers.push(f),
    close: async () => {
      await worker.terminate();
    },
  };
}

/** A journal writer and a recorder, taking the relay's messages (used by the worker and inline). */
export class RecorderSession {
  private readonly writer: JournalWriter | null;
  private readonly recorder: TapRecorder | null;
  private lastMigration = '';
  private readonly timer: NodeJS.Timeout | null;

  constructor(
    journalPath: string,
    overwrite: boolean,
    run: Record<string, unknown>,
    timeOriginNs: number,
    private readonly reply: (r: TapReply) => void,
    discard = false,
    /** Commit on a timer (an event loop runs); the worker, which blocks on its ring, calls commit() itself. */
    commitOnTimer = true,
  ) {
    if (discard) {
      this.writer = null;
      this.recorder = null;
      this.timer = null;
      return;
    }
    this.writer = JournalWriter.create(journalPath, TapRecorder.initialMeta(run, timeOriginNs), { overwrite, autoCheckpoint: false });
    this.recorder = new TapRecorder(this.writer, run);
    this.timeOriginNs = timeOriginNs;
    // Commit now and then, so a tap killed mid-migration keeps most of its journal in SQLite (the crash tail keeps the rest).
    const w = this.writer;
    this.timer = commitOnTimer ? setInterval(() => w.flush(), 250) : null;
  }

  /** Commits what was journaled so far. */
  commit(): void {
    this.writer?.flush();
  }

  /** Wall-clock origin of the tap's clock; the journal's t = 0 moves to the first connection. */
  private timeOriginNs = 0;
  /** The tap's time of the first connection (null before it): subtracted from every time. */
  private shiftNs: number | null = null;

  take(message: TapMessage): void {
    const r = this.recorder;
    if (r === null) {
      if (message.type === 'finish') this.reply({ type: 'done', summary: { connections: [], requests: 0, pages: { precopy: 0, main: 0, preempt: 0 }, migration: 'unknown', postcopy: 'unknown', breaks: 0 } });
      return;
    }
    // t = 0 is the first connection, not the tap's start (a tap may wait long for its source).
    if (this.shiftNs === null && message.type === 'open') {
      this.shiftNs = message.t;
      this.writer!.updateMeta({ timeOriginNs: this.timeOriginNs + message.t });
    }
    const m = this.shiftNs === null || message.type === 'finish' ? message : { ...message, t: Math.max(0, message.t - this.shiftNs) };
    switch (m.type) {
      case 'open':
        r.opened(m.id, m.t, m.client, m.upstream);
        break;
      case 'data':
        r.data(m.id, m.dir, m.bytes, m.t);
        break;
      case 'gap':
        r.gap(m.id, m.dir, m.from, m.reason, m.t);
        break;
      case 'close':
        r.closed(m.id, m.dir, m.bytes, m.t);
        break;
      case 'error':
        r.failed(m.id, m.side, m.message, m.t);
        break;
      case 'finish': {
        const summary = r.finish();
        if (this.timer) clearInterval(this.timer);
        this.writer!.close();
        this.reply({ type: 'done', summary });
        return;
      }
    }
    const status = r.migrationStatus;
    if (status !== this.lastMigration) {
      this.lastMigration = status;
      this.reply({ type: 'migration', status });
    }
  }
}
