import { createServer } from 'node:net';
import { PostcopyError } from '../../errors.js';
import type { QmpClient } from './qmp.js';

/**
 * Drives a QEMU 7.2 postcopy migration over QMP. The source helpers take a target URI and the
 * destination is any `MigrationSide` (a QEMU through `qemuSide(qmp)`, or later our own
 * destination), so either end can be swapped.
 *
 * The sequence that works with 7.2 (see test/io/qemu/qemuToQemu.test.ts):
 *   both:  migrate-set-capabilities postcopy-ram=on (+ postcopy-preempt=on on both, optional);
 *          the return path is opened by postcopy-ram itself, the return-path capability is not needed
 *   dst:   migrate-incoming uri=tcp:127.0.0.1:PORT
 *   src:   [migrate-set-parameters max-bandwidth / max-postcopy-bandwidth]  migrate uri=…
 *   src:   query-migrate until ram.dirty-sync-count >= 2, then migrate-start-postcopy
 *   both:  query-migrate until completed
 * Recovery: migrate-pause (source, in postcopy-active) → both postcopy-paused; then on the
 * destination migrate-recover uri=NEW and, without waiting for anything, on the source
 * migrate uri=NEW resume=true.
 */

/** query-migrate's answer (the parts used here; QEMU sends more). */
export interface MigrationInfo {
  status?: string;
  ram?: {
    total?: number;
    transferred?: number;
    remaining?: number;
    'dirty-sync-count'?: number;
    'postcopy-requests'?: number;
    'precopy-bytes'?: number;
    'postcopy-bytes'?: number;
    [k: string]: unknown;
  };
  'total-time'?: number;
  downtime?: number;
  'postcopy-blocktime'?: number;
  'postcopy-vcpu-blocktime'?: number[];
  'error-desc'?: string;
  [k: string]: unknown;
}

/** One end of a migration as far as waiting goes: something that answers query-migrate. */
export interface MigrationSide {
  name: string;
  queryMigrate(): Promise<MigrationInfo>;
}

/** A QEMU end, through its QMP connection. */
export function qemuSide(name: string, qmp: QmpClient): MigrationSide {
  return { name, queryMigrate: () => qmp.execute<MigrationInfo>('query-migrate') };
}

/** A migration that failed, stalled or went somewhere unexpected; the message holds every side's query-migrate. */
export class MigrationDriveError extends PostcopyError {
  constructor(message: string, readonly infos: Record<string, MigrationInfo | string>) {
    super('MIGRATION_DRIVE', `${message}; query-migrate: ${JSON.stringify(infos)}`);
  }
}

export type MigrationCapability = 'postcopy-ram' | 'postcopy-preempt' | 'return-path' | 'events' | 'pause-before-switchover' | string;

/** query-migrate-capabilities as `{name: on/off}`. */
export async function getCapabilities(qmp: QmpClient): Promise<Record<string, boolean>> {
  const list = await qmp.execute<Array<{ capability: string; state: boolean }>>('query-migrate-capabilities');
  return Object.fromEntries(list.map((c) => [c.capability, c.state]));
}

/** migrate-set-capabilities with `{name: on/off}`. */
export async function setCapabilities(qmp: QmpClient, caps: Record<MigrationCapability, boolean>): Promise<void> {
  await qmp.execute('migrate-set-capabilities', {
    capabilities: Object.entries(caps).map(([capability, state]) => ({ capability, state })),
  });
}

/**
 * The capabilities of a postcopy migration, set the same on both sides: postcopy-ram, plus
 * postcopy-blocktime (on by default: without it the destination's query-migrate never reports
 * postcopy-blocktime / postcopy-vcpu-blocktime) and, when asked, postcopy-preempt.
 */
export function postcopyCapabilities(options: { preempt?: boolean; blocktime?: boolean } = {}): Record<string, boolean> {
  return {
    'postcopy-ram': true,
    ...(options.blocktime !== false ? { 'postcopy-blocktime': true } : {}),
    ...(options.preempt ? { 'postcopy-preempt': true } : {}),
  };
}

/** migrate-set-parameters, e.g. `{ 'max-bandwidth': n, 'max-postcopy-bandwidth': n }` (bytes/s). */
export async function setParameters(qmp: QmpClient, params: Record<string, unknown>): Promise<void> {
  await qmp.execute('migrate-set-parameters', params);
}

/** Caps the postcopy background push at `bytesPerSecond` (0 = unlimited, 7.2's default). */
export async function setPostcopyBandwidth(qmp: QmpClient, bytesPerSecond: number): Promise<void> {
  await setParameters(qmp, { 'max-postcopy-bandwidth': bytesPerSecond });
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** `tcp:127.0.0.1:PORT` on a free port. */
export async function freeTcpUri(): Promise<string> {
  return `tcp:127.0.0.1:${await freePort()}`;
}

/** Destination: migrate-incoming (QEMU started with `-incoming defer`). */
export async function startIncoming(dst: QmpClient, uri: string): Promise<void> {
  await dst.execute('migrate-incoming', { uri });
}

/** Source: migrate to `uri` (resume=true to reconnect a paused postcopy). */
export async function startMigration(src: QmpClient, uri: string, options: { resume?: boolean } = {}): Promise<void> {
  await src.execute('migrate', options.resume ? { uri, resume: true } : { uri });
}

const POLL_MS = 50;

async function infosOf(sides: MigrationSide[]): Promise<Record<string, MigrationInfo | string>> {
  const out: Record<string, MigrationInfo | string> = {};
  for (const s of sides) {
    out[s.name] = await s.queryMigrate().catch((e: Error) => `query-migrate failed: ${e.message}`);
  }
  return out;
}

const FAILED = new Set(['failed', 'cancelled', 'cancelling']);

/** Polls the source until `ram.dirty-sync-count` >= `count` (i.e. count-1 full RAM passes done). */
export async function waitDirtySync(src: MigrationSide, count: number, timeoutMs: number, others: MigrationSide[] = []): Promise<MigrationInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await src.queryMigrate();
    if ((info.ram?.['dirty-sync-count'] ?? 0) >= count) return info;
    if (FAILED.has(info.status ?? '') || info.status === 'completed') {
      throw new MigrationDriveError(`${src.name} is ${info.status} before dirty-sync-count reached ${count}`, await infosOf([src, ...others]));
    }
    if (Date.now() >= deadline) {
      throw new MigrationDriveError(`${src.name}: dirty-sync-count did not reach ${count} within ${timeoutMs} ms`, await infosOf([src, ...others]));
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Source: switch to postcopy. */
export async function startPostcopy(src: QmpClient): Promise<void> {
  await src.execute('migrate-start-postcopy');
}

/**
 * Polls every side until each one's status is in `want` (per side: `want[name]`, else `want['*']`);
 * throws when one fails (failed/cancelled, or any status in `fatal`) or time runs out, with every
 * side's query-migrate in the message. Resolves with the final infos by side name.
 */
export async function waitStatus(
  sides: MigrationSide[],
  want: string[] | Record<string, string[]>,
  timeoutMs: number,
  options: { fatal?: string[] } = {},
): Promise<Record<string, MigrationInfo>> {
  const wanted = (name: string) => (Array.isArray(want) ? want : (want[name] ?? want['*'] ?? []));
  const fatal = new Set([...FAILED, ...(options.fatal ?? [])]);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const raw = await infosOf(sides);
    const lost = sides.find((s) => typeof raw[s.name] === 'string');
    if (lost) throw new MigrationDriveError(`${lost.name} did not answer query-migrate`, raw);
    const infos = raw as Record<string, MigrationInfo>;
    const bad = sides.find((s) => fatal.has(infos[s.name]!.status ?? '') && !wanted(s.name).includes(infos[s.name]!.status ?? ''));
    if (bad) throw new MigrationDriveError(`${bad.name} went ${infos[bad.name]!.status}`, infos);
    if (sides.every((s) => wanted(s.name).includes(infos[s.name]!.status ?? ''))) return infos;
    if (Date.now() >= deadline) {
      const want1 = sides.map((s) => `${s.name} ${wanted(s.name).join('|')}`).join(', ');
      throw new MigrationDriveError(`not ${want1} within ${timeoutMs} ms`, infos);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/**
 * Every side completed (the usual end), bounded by `timeoutMs`. A side in postcopy-paused fails
 * it at once: a 7.2 pause only ends by migrate-recover / resume, so waiting longer cannot help.
 */
export function waitCompleted(sides: MigrationSide[], timeoutMs: number): Promise<Record<string, MigrationInfo>> {
  return waitStatus(sides, ['completed'], timeoutMs, { fatal: ['postcopy-paused'] });
}

export interface PostcopyRunOptions {
  /** The source QEMU. */
  src: QmpClient;
  /** Where the source sends (the destination already listens there). */
  uri: string;
  /** The sides to watch: the source first, then the destination(s). */
  sides: MigrationSide[];
  /** Switch once ram.dirty-sync-count reaches this (default 2: one full precopy pass done). */
  dirtySyncCount?: number;
  /** Bound for the precopy part (default 120 s). */
  precopyTimeoutMs?: number;
}

/**
 * Source side of a postcopy migration to an already listening destination: migrate, wait for
 * the dirty sync count (watching the other sides too, for the error message), then
 * migrate-start-postcopy. Returns when postcopy was asked for (Date.now()); wait for
 * postcopy-active / completed with waitStatus / waitCompleted.
 */
export async function migrateAndSwitch(o: PostcopyRunOptions): Promise<number> {
  await startMigration(o.src, o.uri);
  const [srcSide, ...others] = o.sides;
  await waitDirtySync(srcSide!, o.dirtySyncCount ?? 2, o.precopyTimeoutMs ?? 120_000, others);
  await startPostcopy(o.src);
  return Date.now();
}

/** Pauses a postcopy migration (migrate-pause, on the source by default; 7.2 also takes it on a destination). */
export async function pausePostcopy(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate-pause');
}

/** Destination: listen again after a pause (migrate-recover); the status stays postcopy-paused until the source connects. */
export async function recoverIncoming(dst: QmpClient, uri: string): Promise<void> {
  await dst.execute('migrate-recover', { uri });
}

/**
 * After recoverIncoming + resumeMigration: until every side has left postcopy-paused
 * (postcopy-recover, postcopy-active or already completed). Then waitCompleted.
 */
export function waitResumed(sides: MigrationSide[], timeoutMs: number): Promise<Record<string, MigrationInfo>> {
  return waitStatus(sides, ['postcopy-recover', 'postcopy-active', 'completed'], timeoutMs);
}

/** Source: reconnect a paused postcopy migration to `uri` (migrate resume=true). */
export async function resumeMigration(src: QmpClient, uri: string): Promise<void> {
  await startMigration(src, uri, { resume: true });
}
