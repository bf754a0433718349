import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

/**
 * A minimal Chrome DevTools Protocol client for tests, over `--remote-debugging-pipe`
 * (JSON messages ending in a NUL byte on file descriptors 3 and 4): the transport
 * Playwright itself uses for Chromium. No WebSocket (Node 20 has none without a flag),
 * no port, no dependency.
 */

export interface CdpEvent {
  method: string;
  params: Record<string, unknown>;
  sessionId?: string;
}

/**
 * The flags the report test runs Chromium with (the executable comes from
 * test/testDeps.ts): headless, no network of its own.
 */
export const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-extensions', '--disable-dev-shm-usage', '--hide-scrollbars', '--mute-audio',
];

const CALL_TIMEOUT_MS = 30_000;

export class Chromium {
  readonly events: CdpEvent[] = [];
  private readonly pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void; method: string }>();
  private readonly listeners: Array<(e: CdpEvent) => void> = [];
  private nextId = 1;
  private stderr = '';
  private exited: Error | null = null;

  private constructor(private readonly proc: ChildProcess, private readonly userDataDir: string) {
    const input = proc.stdio[3] as Writable;
    const output = proc.stdio[4] as Readable;
    let buffered = Buffer.alloc(0);
    output.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (let end = buffered.indexOf(0); end >= 0; end = buffered.indexOf(0)) {
        this.dispatch(JSON.parse(buffered.subarray(0, end).toString('utf8')));
        buffered = buffered.subarray(end + 1);
      }
    });
    input.on('error', () => {}); // a write after exit: reported through `exited`
    proc.stderr!.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-4000); });
    proc.on('exit', (code, signal) => this.fail(new Error(`chromium exited (code ${code}, signal ${signal}); its stderr ends:\n${this.stderr}`)));
    proc.on('error', (err) => this.fail(new Error(`cannot run chromium: ${err.message}`)));
  }

  /**
   * Starts `executable` headless with a fresh profile and waits until it answers;
   * rejects with the reason (missing binary, early exit and its stderr, no answer).
   */
  static async launch(executable: string): Promise<Chromium> {
    const userDataDir = mkdtempSync(join(tmpdir(), 'postcopy-chromium-'));
    const proc = spawn(executable, [...CHROMIUM_FLAGS, `--user-data-dir=${userDataDir}`, '--remote-debugging-pipe', 'about:blank'], {
      stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
    });
    const browser = new Chromium(proc, userDataDir);
    try {
      await browser.send('Browser.getVersion');
    } catch (err) {
      await browser.close();
      throw err;
    }
    return browser;
  }

  /** Sends a command (to a page when `sessionId` is given) and resolves with its result. */
  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`chromium did not answer ${method} within ${CALL_TIMEOUT_MS} ms; its stderr ends:\n${this.stderr}`));
      }, CALL_TIMEOUT_MS);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
        method,
      });
      (this.proc.stdio[3] as Writable).write(`${JSON.stringify(sessionId ? { id, method, params, sessionId } : { id, method, params })}\0`);
    });
  }

  /** Resolves with the first event (from now on) that matches. */
  waitFor(method: string, sessionId: string, timeoutMs = CALL_TIMEOUT_MS): Promise<CdpEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${method} within ${timeoutMs} ms`)), timeoutMs);
      const listener = (e: CdpEvent) => {
        if (e.method !== method || e.sessionId !== sessionId) return;
        clearTimeout(timer);
        this.listeners.splice(this.listeners.indexOf(listener), 1);
        resolve(e);
      };
      this.listeners.push(listener);
    });
  }

  /** A new tab of `width` × `height` CSS px, attached: returns its session id. */
  async newPage(width: number, height: number): Promise<string> {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true });
    const s = sessionId as string;
    await this.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false }, s);
    return s;
  }

  /** Closes the browser (killing it if it does not go) and removes its profile. */
  async close(): Promise<void> {
    if (!this.exited) {
      const gone = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
      this.send('Browser.close').catch(() => {});
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(this.userDataDir, { recursive: true, force: true });
  }

  private dispatch(msg: { id?: number; result?: Record<string, unknown>; error?: { message: string }; method?: string; params?: Record<string, unknown>; sessionId?: string }): void {
    if (msg.id !== undefined) {
      const call = this.pending.get(msg.id);
      if (!call) return;
      this.pending.delete(msg.id);
      if (msg.error) call.reject(new Error(`${call.method}: ${msg.error.message}`));
      else call.resolve(msg.result ?? {});
      return;
    }
    if (msg.method) {
      const event: CdpEvent = { method: msg.method, params: msg.params ?? {}, ...(msg.sessionId ? { sessionId: msg.sessionId } : {}) };
      this.events.push(event);
      for (const l of [...this.listeners]) l(event);
    }
  }

  private fail(err: Error): void {
    if (this.exited) return;
    this.exited = err;
    for (const call of this.pending.values()) call.reject(err);
    this.pending.clear();
  }
}
