import { connect, type Socket } from 'node:net';
import { PostcopyError } from '../../errors.js';

/**
 * A small QEMU Machine Protocol client over a unix socket (QEMU's `-qmp unix:PATH,server=on,wait=off`).
 * QMP is one JSON object per line each way: a greeting, then `{"execute", "arguments", "id"}`
 * commands answered by `{"return", "id"}` or `{"error": {"class", "desc"}, "id"}`, with
 * `{"event", "data", "timestamp"}` messages in between whenever QEMU has something to say.
 *
 * (npm's `qemu-qmp` was looked at: one release, untyped, an unpinned dependency; this is smaller.)
 */

/** A command QEMU refused: `qmpClass` is QMP's error class (e.g. CommandNotFound, GenericError). */
export class QmpError extends PostcopyError {
  constructor(
    readonly command: string,
    readonly qmpClass: string,
    readonly desc: string,
  ) {
    super('QMP', `QMP ${command}: ${qmpClass}: ${desc}`);
  }
}

/** The connection could not be made, was lost, or a reply or event did not come in time. */
export class QmpConnectionError extends PostcopyError {
  constructor(readonly socketPath: string, message: string) {
    super('QMP_CONNECTION', `QMP ${socketPath}: ${message}`);
  }
}

/** One asynchronous event, with QEMU's own timestamp in µs since the epoch. */
export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestampUs: number;
}

export interface QmpConnectOptions {
  /** How long to keep retrying while the socket does not exist or refuses (default 10 s). */
  timeoutMs?: number;
  /** Stop retrying early when this settles (e.g. the QEMU process exited): its rejection is passed on. */
  abort?: Promise<unknown>;
}

const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class QmpClient {
  /** Every event received since the connection, in arrival order. */
  readonly events: QmpEvent[] = [];
  /** QEMU's greeting: `{"QMP": {"version": …, "capabilities": […]}}`. */
  greeting: Record<string, unknown> = {};
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<() => void>();
  private nextId = 1;
  private buffer = '';
  private closedError: Error | null = null;
  private greeted: ((g: Record<string, unknown>) => void) | null = null;

  private constructor(private readonly socket: Socket, readonly socketPath: string) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new QmpConnectionError(socketPath, `socket error: ${err.message}`)));
    socket.on('close', () => this.fail(new QmpConnectionError(socketPath, 'connection closed')));
  }

  /**
   * Connects to `socketPath` (retrying every 20 ms while it does not exist yet or refuses, up to
   * `timeoutMs`), reads the greeting and leaves capabilities negotiation with `qmp_capabilities`.
   */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    let aborted: unknown = null;
    let isAborted = false;
    options.abort?.then((v) => { isAborted = true; aborted = v; }, (e) => { isAborted = true; aborted = e; });
    for (;;) {
      const socket = await new Promise<Socket | Error>((resolve) => {
        const s = connect(socketPath);
        s.once('connect', () => { s.removeAllListeners('error'); resolve(s); });
        s.once('error', (err) => { s.destroy(); resolve(err); });
      });
      if (!(socket instanceof Error)) {
        const client = new QmpClient(socket, socketPath);
        try {
          client.greeting = await client.waitGreeting(Math.max(1000, deadline - Date.now()));
          await client.execute('qmp_capabilities');
        } catch (err) {
          socket.destroy();
          throw err;
        }
        return client;
      }
      const code = (socket as NodeJS.ErrnoException).code;
      if (isAborted) throw aborted instanceof Error ? aborted : new QmpConnectionError(socketPath, `gave up connecting: ${String(aborted)}`);
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() >= deadline) {
        throw new QmpConnectionError(socketPath, `cannot connect: ${socket.message}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Runs `command` and resolves with its `return` value; rejects with a QmpError when QEMU refuses it. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpConnectionError(this.socketPath, `no answer to ${command} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id })}\n`);
    });
  }

  /** How many events have arrived so far: pass it as `since` to wait for an event after this point. */
  mark(): number {
    return this.events.length;
  }

  /**
   * Resolves with the first event called `name` (and matching `match`, when given) among those that
   * arrived from index `since` on (default: from now on); rejects after `timeoutMs`.
   */
  waitEvent(name: string, timeoutMs: number, options: { since?: number; match?: (e: QmpEvent) => boolean } = {}): Promise<QmpEvent> {
    let next = options.since ?? this.events.length;
    const find = (): QmpEvent | undefined => {
      for (; next < this.events.length; next++) {
        const e = this.events[next]!;
        if (e.event === name && (!options.match || options.match(e))) return e;
      }
      return undefined;
    };
    const now = find();
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      const listener = () => {
        const e = find();
        if (e) { done(); resolve(e); } else if (this.closedError) { done(); reject(this.closedError); }
      };
      const timer = setTimeout(() => {
        done();
        reject(new QmpConnectionError(this.socketPath, `no ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      this.listeners.add(listener);
    });
  }

  /** Closes the connection (QEMU keeps running); pending commands reject. */
  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
    this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), 1000);
    await closed;
    clearTimeout(timer);
  }

  /** Whether the connection is gone (closed by either side). */
  get closed(): boolean {
    return this.closedError !== null;
  }

  private waitGreeting(timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
        reject(new QmpConnectionError(this.socketPath, `no greeting within ${timeoutMs} ms`));
      }, timeoutMs);
      this.greeted = (g) => { clearTimeout(timer); resolve(g); };
      this.pending.set(0, { command: '(greeting)', resolve: () => {}, reject: (e) => { clearTimeout(timer); reject(e); }, timer });
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.dispatch(JSON.parse(line) as Record<string, unknown>);
    }
  }

  private dispatch(msg: Record<string, unknown>): void {
    if ('QMP' in msg) {
      this.pending.delete(0);
      this.greeted?.(msg);
      this.greeted = null;
      return;
    }
    if (typeof msg.event === 'string') {
      const ts = msg.timestamp as { seconds: number; microseconds: number } | undefined;
      this.events.push({
        event: msg.event,
        data: (msg.data as Record<string, unknown> | undefined) ?? {},
        timestampUs: ts ? ts.seconds * 1e6 + ts.microseconds : Date.now() * 1000,
      });
      for (const l of [...this.listeners]) l();
      return;
    }
    const id = msg.id as number | undefined;
    const call = id === undefined ? undefined : this.pending.get(id);
    if (!call || id === undefined) return;
    this.pending.delete(id);
    clearTimeout(call.timer);
    if (msg.error) {
      const err = msg.error as { class?: string; desc?: string };
      call.reject(new QmpError(call.command, err.class ?? 'GenericError', err.desc ?? JSON.stringify(msg.error)));
    } else {
      call.resolve(msg.return);
    }
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const call of this.pending.values()) {
      clearTimeout(call.timer);
      call.reject(err);
    }
    this.pending.clear();
    for (const l of [...this.listeners]) l();
  }
}
