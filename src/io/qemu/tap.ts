/**
 * `postcopy tap`: a relay between a QEMU source and its destination that journals what
 * crosses it (a flight recorder for migrations nobody traced).
 *
 * Forwarding comes first and never waits for the recorder: every read is written to the
 * other socket at once (TCP_NODELAY both ways; a socket whose peer does not take its bytes
 * is paused, so nothing is buffered beyond one read), and only then is a copy of the chunk
 * handed to the recorder, which decodes and journals in a worker thread (tapWorker.ts ->
 * tapRecorder.ts), through a ring of shared memory (tapRing.ts). When the worker falls more
 * than the ring holds (`maxBacklogBytes`) behind, the tap stops
 * handing it that direction's bytes and the journal says from which byte (TAP_UNDECODED);
 * the migration goes on untouched. Bytes the recorder cannot decode are forwarded all the
 * same: the tap never breaks a migration it does not understand.
 *
 * Every connection the source opens is accepted and forwarded to `to` (main, preempt, an
 * unrelated client too: each journaled as its own connection). Once the source ended the
 * first connection (the main one), new connections go to `resumeTo` when given: the
 * destination recovers on another address (QEMU: migrate-recover URI).
 *
 * The tap ends when every connection is closed and the migration completed or failed, or
 * on stop() (SIGINT in the CLI); it then commits the journal.
 */
import { createServer, connect, type NetConnectOpts, type Server, type Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import { JournalWriter } from '../../journal/journalWriter.js';
import { TapRecorder, type DirectionValue, type TapSummary } from './tapRecorder.js';
import { createRing, RecordType, RingWriter } from './tapRing.js';
import type { Endpoint } from './qemuReceiver.js';

export interface TapOptions {
  listen: Endpoint;
  to: Endpoint;
  /** Where connections go once the first (main) connection closed: the destination recovering elsewhere. */
  resumeTo?: Endpoint;
  journalPath: string;
  /** Replace an existing journal file. */
  overwrite?: boolean;
  /** 'worker' (default): decode in a worker thread; 'inline': on this thread, between reads (tests, benches of the recorder itself). */
  decode?: 'worker' | 'inline' | 'none';
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

/** What the relay tells the recorder, in order. */
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

/** The recorder's side, wherever it runs. */
interface RecorderLink {
  /** Resolves once the recorder can take records. */
  ready: Promise<void>;
  /** Hands a message over; false when the recorder is too far behind to take it (data only). */
  post(m: TapMessage): boolean;
  /** Bytes handed over and not yet taken. */
  backlog(): number;
  onReply(f: (r: TapReply) => void): void;
  close(): Promise<void>;
}

const DEFAULT_MAX_BACKLOG = 128 * 1024 * 1024;
/** The most a socket read hands over (libuv's read size). */
const ONE_READ = 64 * 1024;

/** Starts the tap; resolves once it listens. */
export async function startTap(o: TapOptions): Promise<TapHandle> {
  const log = o.log ?? (() => {});
  const t0 = process.hrtime.bigint();
  const now = (): number => Number(process.hrtime.bigint() - t0);
  const started = performance.now();
  const maxBacklog = o.maxBacklogBytes ?? DEFAULT_MAX_BACKLOG;
  const run = {
    kind: 'tap',
    listen: `${o.listen.host}:${o.listen.port}`,
    to: `${o.to.host}:${o.to.port}`,
    ...(o.resumeTo ? { resumeTo: `${o.resumeTo.host}:${o.resumeTo.port}` } : {}),
  };
  const link = startRecorder(o.decode ?? 'worker', o.journalPath, o.overwrite ?? false, run, Date.now() * 1e6, maxBacklog);

  let nextId = 0;
  let open = 0;
  let firstClosed = false;
  let migration = 'setup';
  let ending = false;
  const forwarded = { toDestination: 0, toSource: 0 };
  const sockets = new Set<Socket>();
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

  const maybeEnd = (): void => {
    if (o.endWhenDone === false || ending || open > 0 || nextId === 0) return;
    if (migration === 'completed' || migration === 'failed') void stop();
  };

  const onConnection = (client: Socket): void => {
    if (ending) {
      client.destroy();
      return;
    }
    const id = nextId++;
    open++;
    sockets.add(client);
    const target = firstClosed && o.resumeTo ? o.resumeTo : o.to;
    const clientName = `${client.remoteAddress}:${client.remotePort}`;
    const upstreamName = `${target.host}:${target.port}`;
    client.setNoDelay(true);
    // (highWaterMark reaches the socket's stream options; @types/node does not list it for connect.)
    const upstream = connect({ host: target.host, port: target.port, noDelay: true, allowHalfOpen: true, highWaterMark: ONE_READ } as NetConnectOpts);
    sockets.add(upstream);
    link.post({ type: 'open', id, t: now(), client: clientName, upstream: upstreamName });
    log(`connection ${id}: ${clientName} -> ${upstreamName}`);
    const bytes: [number, number] = [0, 0];
    /** A direction no longer handed to the recorder (it fell behind). */
    const dropped: [boolean, boolean] = [false, false];
    let closedSockets = 0;
    let failed = false;

    /** After `chunk` went out: hands it to the recorder; when the recorder is too far behind, that direction is dropped from the record. */
    const hand = (dir: DirectionValue, chunk: Buffer, t: number): void => {
      if (dropped[dir]) return;
      if (!link.post({ type: 'data', id, dir, t, bytes: chunk })) {
        dropped[dir] = true;
        link.post({ type: 'gap', id, dir, from: bytes[dir] - chunk.length, reason: `the recorder fell ${link.backlog()} bytes behind (its ring holds ${maxBacklog}): bytes from here on were forwarded but not decoded`, t });
      }
    };

    client.on('data', (chunk: Buffer) => {
      const t = now();
      if (!upstream.write(chunk)) client.pause();
      bytes[0] += chunk.length;
      forwarded.toDestination += chunk.length;
      hand(0, chunk, t);
    });
    upstream.on('data', (chunk: Buffer) => {
      const t = now();
      if (!client.write(chunk)) upstream.pause();
      bytes[1] += chunk.length;
      forwarded.toSource += chunk.length;
      hand(1, chunk, t);
    });
    upstream.on('connect', () => client.resume());
    upstream.on('drain', () => client.resume());
    client.on('drain', () => upstream.resume());
    client.on('end', () => {
      // The source left its first (main) connection: what it opens next is a resumption.
      if (id === 0) firstClosed = true;
      link.post({ type: 'close', id, dir: 0, bytes: bytes[0], t: now() });
      upstream.end();
    });
    upstream.on('end', () => {
      link.post({ type: 'close', id, dir: 1, bytes: bytes[1], t: now() });
      client.end();
    });
    const onError = (side: DirectionValue) => (err: Error) => {
      if (id === 0) firstClosed = true;
      if (!failed) {
        failed = true;
        link.post({ type: 'error', id, side, message: `${side === 0 ? 'source side' : 'destination side'}: ${err.message}`, t: now() });
        log(`connection ${id}: ${side === 0 ? 'source side' : 'destination side'}: ${err.message}`);
      }
      client.destroy();
      upstream.destroy();
    };
    client.on('error', onError(0));
    upstream.on('error', onError(1));
    const onClose = (s: Socket) => () => {
      sockets.delete(s);
      if (++closedSockets < 2) return;
      open--;
      if (id === 0) firstClosed = true;
      log(`connection ${id} closed: ${bytes[0]} bytes to the destination, ${bytes[1]} to the source`);
      maybeEnd();
    };
    client.on('close', onClose(client));
    upstream.on('close', onClose(upstream));
  };

  // pauseOnConnect: a client's bytes wait in the kernel until its upstream connection is up.
  // highWaterMark of one read: a socket's write says "wait" only once more than one read is
  // queued in it, so a read the kernel took in part does not pause its source every time.
  try {
    await link.ready;
  } catch (err) {
    await link.close();
    throw err;
  }
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true, highWaterMark: ONE_READ }, onConnection);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.listen.port, o.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await link.close(); // the recorder thread would keep the process alive
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
      for (const s of sockets) s.destroy();
      // Let the sockets' close and error events reach the recorder before it finishes.
      await new Promise((r) => setImmediate(r));
      link.post({ type: 'finish' });
      await Promise.race([summaryPromise, done.then(() => undefined)]);
      await link.close();
      const result: TapResult = { journalPath: o.journalPath, summary, forwarded, durationMs: performance.now() - started, ...(recorderError === undefined ? {} : { recorderError }) };
      if (summary !== null) log(`journal committed: ${summary.requests} page requests, pages ${summary.pages.precopy} precopy + ${summary.pages.main} main + ${summary.pages.preempt} preempt, migration ${summary.migration}`);
      settle(result);
      return result;
    })();
    stopping.catch(fail);
    return stopping;
  };

  return { listening, done, stop };
}

/** The recorder in a worker thread, or on this thread between reads. */
function startRecorder(mode: 'worker' | 'inline' | 'none', journalPath: string, overwrite: boolean, run: Record<string, unknown>, timeOriginNs: number, maxBacklog: number): RecorderLink {
  if (mode === 'worker') {
    const ring = createRing(maxBacklog);
    const writer = new RingWriter(ring);
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
    // Control records must get through even when data no longer fits: they wait for room.
    const pending: TapMessage[] = [];
    let retry: NodeJS.Timeout | null = null;
    const putControl = (m: TapMessage): boolean => {
      switch (m.type) {
        case 'open':
          return writer.put(RecordType.OPEN, m.id, 0, m.t, 0, `${m.client}\n${m.upstream}`);
        case 'gap':
          return writer.put(RecordType.GAP, m.id, m.dir, m.t, m.from, m.reason);
        case 'close':
          return writer.put(RecordType.CLOSE, m.id, m.dir, m.t, m.bytes, null);
        case 'error':
          return writer.put(RecordType.ERROR, m.id, m.side, m.t, 0, m.message);
        case 'finish':
          return writer.put(RecordType.FINISH, 0, 0, 0, 0, null);
        case 'data':
          return writer.put(RecordType.DATA, m.id, m.dir, m.t, 0, m.bytes);
      }
    };
    const flushPending = (): void => {
      retry = null;
      while (pending.length > 0 && putControl(pending[0]!)) pending.shift();
      if (pending.length > 0) retry = setTimeout(flushPending, 5);
    };
    return {
      ready,
      post: (m) => {
        if (m.type === 'data') return pending.length === 0 && writer.put(RecordType.DATA, m.id, m.dir, m.t, 0, m.bytes);
        pending.push(m);
        if (retry === null) flushPending();
        return true;
      },
      backlog: () => writer.backlog,
      onReply: (f) => handlers.push(f),
      close: async () => {
        if (retry !== null) clearTimeout(retry);
        await worker.terminate();
      },
    };
  }
  const inline = new InlineRecorder(journalPath, overwrite, run, timeOriginNs, mode === 'none');
  return inline;
}

/**
 * The recorder on the relay's own thread: messages queue up and are decoded in setImmediate
 * batches, after the reads that brought them were forwarded.
 */
class InlineRecorder implements RecorderLink {
  readonly ready = Promise.resolve();
  private readonly queue: TapMessage[] = [];
  private scheduled = false;
  private readonly handlers: Array<(r: TapReply) => void> = [];
  private readonly session: RecorderSession;

  constructor(journalPath: string, overwrite: boolean, run: Record<string, unknown>, timeOriginNs: number, discard: boolean) {
    this.session = new RecorderSession(journalPath, overwrite, run, timeOriginNs, (r) => this.handlers.forEach((h) => h(r)), discard);
  }
  post(m: TapMessage): boolean {
    this.queue.push(m);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
    return true;
  }
  backlog(): number {
    return 0;
  }
  onReply(f: (r: TapReply) => void): void {
    this.handlers.push(f);
  }
  async close(): Promise<void> {}
  private drain(): void {
    this.scheduled = false;
    for (const m of this.queue.splice(0)) this.session.take(m);
  }
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
