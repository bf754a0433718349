import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { resolve } from 'node:path';
import { POSTCOPY_STATE_NAMES, PostcopyState } from '../engine/constants.js';
import { UsageError } from '../errors.js';
import { MIGRATION_CHILD_PATH } from '../paths.js';
import { ACCESS_PATTERN_NAMES, bootblockShare, type AccessPatternName } from '../io/backends/accessPatterns.js';
import type { DestinationMessage, DestinationOptions, DestinationSummary } from '../io/migration/migrationDestination.js';
import type { SourceMessage, SourceOptions } from '../io/migration/migrationSource.js';
import { parsePrefetchPages, parseSize, refuseGuestTooLarge } from './options.js';
import { chooseJournal } from './outputs.js';
import { setCurrentJournal } from './lastResort.js';
import { formatMs } from '../text.js';
import { createProgress } from './progress.js';
import { analyzeJournal } from '../forensics/analysis.js';
import { channelCounts, phasesOf, qemuMs, type Analysis } from '../forensics/analysisTypes.js';
import { JournalReader } from '../journal/journalReader.js';
import { startTap, type TapHandle, type TapResult } from '../io/qemu/tap.js';
import { inMs } from './jsonUnits.js';

export interface MigrateCommandOptions {
  size: string;
  vcpus: string;
  hugePages?: boolean;
  workload: string;
  bandwidth: string;
  /** Postcopy's cap (QEMU's max-postcopy-bandwidth); '0' or absent: none. */
  maxPostcopyBandwidth?: string;
  dirtyRate: string;
  preempt?: boolean;
  /** Default: postcopy-journal.db, or the next free postcopy-journal-N.db. */
  journal?: string;
  /** Replace an existing --journal. */
  force?: boolean;
  backend: string;
  faultReader: string;
  vcpuNice?: string;
  prefetch?: string;
  seed: string;
  breakAt?: string;
  killSourceAt?: string;
  json?: boolean;
  quiet?: boolean;
  /**
   * Put `postcopy tap` between the source and the destination and journal what crosses it
   * here: the instrument that measures QEMU's migrations measures ours too (they speak the same wire).
   */
  tapJournal?: string;
}

/** Everything a finished `migrate` knows; printed as the summary or as --json. */
export interface MigrateResult {
  verified: boolean;
  exitCode: number;
  message: string;
  mismatches: number[];
  backend: { kind: string; reason?: string };
  /** The destination's journal (chosen before the run: never an earlier run's, unless --force). */
  journalPath: string;
  source?: Extract<SourceMessage, { type: 'done' }>;
  destination?: DestinationSummary;
  paused?: { outstanding: number; journalPath: string };
  /** A process of the migration that died unasked. */
  death?: PeerDeath;
  /** With --tap-journal: the relay's journal and what it saw (null: its recorder failed). */
  tap?: { journalPath: string; summary: TapResult['summary'] };
  wallMs: number;
}

/** The journal of a run without --journal (or the next free name beside it). */
export const DEFAULT_JOURNAL = 'postcopy-journal.db';

/** Guest-sized memory of a migration: the source's image and the destination's guest. */
const MIGRATE_COPIES = 2;

/** No progress for this long ends a migration as stalled. */
const STALL_MS = 30_000;


function fraction(text: string | undefined, option: string): number | undefined {
  if (text === undefined) return undefined;
  const f = Number(text);
  if (!(f >= 0 && f < 1)) throw new UsageError(`${option} must be a fraction in [0, 1), got '${text}'`);
  return f;
}

/** Validates the options into the two processes' options (pure, throws UsageError). */
export function planMigration(o: MigrateCommandOptions): { src: Omit<SourceOptions, 'port'>; dst: DestinationOptions; killSourceAt?: number } {
  const size = parseSize(o.size, '--size');
  const vcpus = Number(o.vcpus);
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 64) throw new UsageError(`--vcpus must be a whole number from 1 to 64, got '${o.vcpus}'`);
  if (!ACCESS_PATTERN_NAMES.includes(o.workload as AccessPatternName)) throw new UsageError(`--workload must be one of ${ACCESS_PATTERN_NAMES.join(', ')}, got '${o.workload}'`);
  const seed = Number(o.seed);
  if (!Number.isSafeInteger(seed)) throw new UsageError(`--seed must be an integer, got '${o.seed}'`);
  const bandwidth = o.bandwidth === '0' || o.bandwidth === 'unlimited' ? 0 : parseSize(o.bandwidth, '--bandwidth');
  const mpb = o.maxPostcopyBandwidth;
  const postcopyBandwidth = mpb === undefined || mpb === '0' || mpb === 'unlimited' ? 0 : parseSize(mpb, '--max-postcopy-bandwidth');
  const dirtyRate = Number(o.dirtyRate);
  if (!(dirtyRate >= 0)) throw new UsageError(`--dirty-rate must be pages per second (>= 0), got '${o.dirtyRate}'`);
  if (!['auto', 'uffd', 'mock'].includes(o.backend)) throw new UsageError(`--backend must be auto, uffd or mock, got '${o.backend}'`);
  if (!['thread', 'loop'].includes(o.faultReader)) throw new UsageError(`--fault-reader must be thread or loop, got '${o.faultReader}'`);
  const hostPageSize = o.hugePages ? 2 * 2 ** 20 : 4096;
  if (size % hostPageSize !== 0) throw new UsageError(`--size ${o.size} is not a multiple of the ${hostPageSize}-byte host page`);
  if (size / 4096 < vcpus) throw new UsageError(`--size ${o.size} is too small for ${vcpus} vCPUs`);
  const breakAt = fraction(o.breakAt, '--break-at');
  const killSourceAt = fraction(o.killSourceAt, '--kill-source-at');
  if (breakAt !== undefined && killSourceAt !== undefined) throw new UsageError('--break-at and --kill-source-at cannot be combined');
  const preempt = !!o.preempt;
  const vcpuNice = Number(o.vcpuNice ?? '5');
  if (!Number.isInteger(vcpuNice) || vcpuNice < 0 || vcpuNice > 19) throw new UsageError(`--vcpu-nice must be a whole number from 0 to 19, got '${o.vcpuNice}'`);
  const prefetchPages = parsePrefetchPages(o.prefetch);
  // The bootblock guests write their whole share of [1/256, 240/256) of RAM pass after pass:
  // all of it is dirty when they stop, as in QEMU's runs of them.
  // The vCPUs' shares, first to last, are that working set (the same split as the vCPUs' walks).
  const pages = size / 4096;
  const bootblockGuest = o.workload === 'bootblock' || o.workload === 'bootblock-random';
  const first = bootblockShare(pages, vcpus, 0);
  const last = bootblockShare(pages, vcpus, vcpus - 1);
  const workingSet = { firstPage: first.first, pages: last.first + last.count - first.first };
  refuseGuestTooLarge(o.size, size, MIGRATE_COPIES, 'the source and the destination each hold the guest');
  return {
    src: { sizeBytes: size, hostPageSize, seed, preempt, bandwidth, postcopyBandwidth, dirtyRate, prefetchPages, ...(breakAt !== undefined ? { breakAt } : {}), ...(bootblockGuest ? { dirtyAtSwitch: workingSet } : {}) },
    dst: { sizeBytes: size, hostPageSize, vcpus, workload: o.workload as AccessPatternName, seed, preempt, journalPath: resolve(o.journal ?? DEFAULT_JOURNAL), backend: o.backend as DestinationOptions['backend'], faultReader: o.faultReader as DestinationOptions['faultReader'], vcpuNice },
    ...(killSourceAt !== undefined ? { killSourceAt } : {}),
  };
}

function spawnRole(role: 'source' | 'destination', options: unknown): ChildProcess {
  return fork(MIGRATION_CHILD_PATH, [role, JSON.stringify(options)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
}

/** What a test (or a caller) may watch while a migration runs. */
export interface MigrationHooks {
  /** Called as each child process starts. */
  onSpawn?: (role: 'source' | 'destination', child: ChildProcess) => void;
}

/** A child process that ended without being asked to: who, how, and when. */
export interface PeerDeath {
  who: 'source' | 'destination';
  pid: number;
  /** 'SIGKILL', or 'exit code 1'. */
  how: string;
  /** What the migration was doing: setup (before the source connected), precopy, postcopy (before the destination's LISTEN or after it), recovery. */
  phase: string;
  /** Milliseconds since `migrate` started. */
  atMs: number;
}

/**
 * After a process of the migration died, every other one has ended within this long:
 * what is still running then is killed (the destination first had its chance to close
 * its journal cleanly).
 */
const SURVIVOR_DEADLINE_MS = 4000;
/** How long a source outlives a destination that ended without a result before it is killed (see onDestinationEnd). */
const SOURCE_REAP_GRACE_MS = 500;
/** A source lost before the destination paused: how long the destination may take to pause (or fail) before it is told to give up. */
const PAUSE_WAIT_MS = 1500;

/**
 * Runs a real postcopy migration between two child processes on 127.0.0.1 and verifies
 * the destination's memory against the source's final image. Resolves with the result
 * (exit code 0 only for a verified migration). Both children are watched (exit and IPC
 * disconnect): when one dies, the other is stopped, and nothing waits for ever.
 */
export async function runMigration(o: MigrateCommandOptions, hooks: MigrationHooks = {}): Promise<MigrateResult> {
  const plan = planMigration(o);
  // Before anything is created: an earlier run's journal is never replaced unasked.
  const journalChoice = chooseJournal(o.journal, DEFAULT_JOURNAL, !!o.force);
  plan.dst.journalPath = journalChoice.path;
  plan.dst.overwrite = !!o.force;
  setCurrentJournal(journalChoice.path);
  if (journalChoice.renamed && !o.quiet) process.stderr.write(`note: ${DEFAULT_JOURNAL} exists (an earlier run's journal, kept): this run's journal is ${journalChoice.path}\n`);
  const started = Date.now();
  const result: MigrateResult = { verified: false, exitCode: 1, message: '', mismatches: [], backend: { kind: '?' }, journalPath: journalChoice.path, wallMs: 0 };
  const dst = spawnRole('destination', plan.dst);
  hooks.onSpawn?.('destination', dst);
  let src: ChildProcess | null = null;
  let srcDigest: Extract<SourceMessage, { type: 'digest' }> | null = null;
  let dstDigest: Extract<DestinationMessage, { type: 'digest' }> | null = null;
  let lastStatus = '';
  let lastPostcopyState = -1;
  let sourcePhase = 'setup';
  /** The progress bar's total (precopy + postcopy halves), once known. */
  let barTotal = 0;
  let sourceKilled = false;
  let givenUp = false;
  /** The first process that died unasked (the one the reason line names). */
  let death: PeerDeath | null = null;
  /** Children this process killed on purpose: their end is no death. */
  const killedHere = new Set<ChildProcess>();
  /** Children that sent their last word ('done', 'paused' or 'error'). */
  const finished = new Set<ChildProcess>();
  let sourceSaysPeerLost = false;
  const bar = createProgress('migrate', {
    format: 'migrate {phase} [{bar}] {percentage}% | {pages} pages | outstanding {outstanding} | p50 request→page {latency}',
    enabled: !o.json && !o.quiet,
    plainEveryMs: 1000,
  });
  const alive = (c: ChildProcess | null): c is ChildProcess => c !== null && c.exitCode === null && c.signalCode === null;
  const kill = (c: ChildProcess | null): void => {
    if (!alive(c)) return;
    killedHere.add(c);
    c.kill('SIGKILL');
  };
  /** IPC to a child that may be gone: never throws, never emits 'error'. */
  const tell = (c: ChildProcess, m: { type: string }): void => {
    if (c.connected) c.send(m, (err) => void err);
  };
  const giveUp = (delayMs = 0): void => {
    if (givenUp) return;
    givenUp = true;
    setTimeout(() => tell(dst, { type: 'give-up' }), delayMs);
  };
  /** What the migration is doing now, for the reason line. */
  const phaseNow = (): string => {
    if (sourcePhase === 'postcopy' && lastPostcopyState < PostcopyState.LISTENING) return 'postcopy (before the destination\'s LISTEN)';
    if (sourcePhase === 'paused') return 'recovery';
    if (sourcePhase === 'setup') return 'setup (before precopy)';
    if (sourcePhase === 'done') return 'postcopy (the source had sent its last page)';
    return sourcePhase;
  };
  let deadline: NodeJS.Timeout | null = null;
  /** From now on, whatever still runs after SURVIVOR_DEADLINE_MS is killed. */
  const armDeadline = (): void => {
    deadline ??= setTimeout(() => {
      kill(src);
      kill(dst);
    }, SURVIVOR_DEADLINE_MS);
  };

  // A migration that stops moving is reported, never waited on forever: the journal says why.
  let lastSignature = '';
  let lastChange = Date.now();
  let stalled = false;
  /** The destination's migration status became `failed` (final). */
  let failed = false;
  const watchdog = setInterval(() => {
    if (givenUp || lastStatus === 'completed' || Date.now() - lastChange < STALL_MS) return;
    stalled = true;
    kill(src);
    giveUp();
    armDeadline();
  }, 1000);

  /** The source is gone for good: the destination pauses (after LISTEN) or fails; then it gives up, its journal closed. */
  const sourceGone = (): void => {
    armDeadline();
    if (lastStatus === 'postcopy-paused' || lastStatus === 'failed') giveUp(500);
    // In postcopy the destination pauses once it has read what the source sent; before, nothing waits.
    else setTimeout(() => giveUp(), lastStatus.startsWith('postcopy') ? PAUSE_WAIT_MS : 300);
  };

  /** With --tap-journal: the relay between the two processes, once started. */
  let tap: TapHandle | null = null;
  let tapStarting: Promise<void> | null = null;

  await new Promise<void>((resolveAll) => {
    let dstEnded = false;
    let srcEnded = false;
    const settle = (): void => {
      if (dstEnded && (src === null || srcEnded)) resolveAll();
    };
    const how = (code: number | null, signal: NodeJS.Signals | null): string => (signal !== null ? signal : `exit code ${code}`);

    const onDestinationEnd = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (dstEnded) return;
      dstEnded = true;
      const unasked = !killedHere.has(dst) && (signal !== null || !finished.has(dst));
      if (unasked && death === null) death = { who: 'destination', pid: dst.pid ?? -1, how: how(code, signal), phase: phaseNow(), atMs: Date.now() - started };
      // Nothing will read what the source sends: it goes. Not at once: a destination that ended
      // because its source died (SIGKILL) may be reaped before that source is, and a kill sent
      // now would make that death look like ours.
      if (result.destination === undefined) setTimeout(() => kill(src), SOURCE_REAP_GRACE_MS);
      else armDeadline(); // done: the source ends once it sees the connection close
      settle();
    };
    const onSourceEnd = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (srcEnded) return;
      srcEnded = true;
      const s = src!;
      // After its 'done' the source has sent everything: how it ends changes nothing.
      if (result.source === undefined && !killedHere.has(s)) {
        const record = (): void => {
          // The destination died first, the source only noticed: unless a signal killed the source,
          // whose death a loaded host may report after the destination's own (failed) exit.
          if (death !== null || (dstEnded && signal === null)) return;
          death = { who: 'source', pid: s.pid ?? -1, how: how(code, signal), phase: phaseNow(), atMs: Date.now() - started };
          sourceGone();
        };
        // A source that saw the destination's connection close may just be reporting the
        // destination's death: the destination's exit, due any moment, decides who died.
        if (sourceSaysPeerLost) setTimeout(record, 1000);
        else record();
      }
      settle();
    };

    const startSource = (port: number): void => {
      src = spawnRole('source', { ...plan.src, port });
      hooks.onSpawn?.('source', src);
      src.on('message', (sm: SourceMessage | { type: 'error'; message: string }) => {
        if (sm.type === 'digest') srcDigest = sm;
        else if (sm.type === 'done') {
          result.source = sm;
          finished.add(src!);
        } else if (sm.type === 'error') {
          finished.add(src!);
          sourceSaysPeerLost = /^the destination closed/.test(sm.message);
          result.message = `source failed: ${sm.message}`;
        } else if (sm.type === 'phase') sourcePhase = sm.phase;
        else if (sm.type === 'progress' && plan.killSourceAt !== undefined && !sourceKilled && sm.destinationListening && sm.sentFraction >= plan.killSourceAt) {
          sourceKilled = true;
          kill(src);
          sourceGone();
        }
      });
      src.once('exit', onSourceEnd);
      // 'error' is also a failed kill or send: only a process that never started has ended by it.
      src.on('error', () => src!.pid === undefined && onSourceEnd(null, null));
      src.once('disconnect', () => {
        // No IPC without its last word: it is dead or lost, either way of no more use.
        if (!finished.has(src!)) setTimeout(() => alive(src) && !finished.has(src) && src.kill('SIGKILL'), 200);
      });
    };

    dst.on('message', (m: DestinationMessage | { type: 'error'; message: string }) => {
      switch (m.type) {
        case 'listening':
          if (!alive(dst) || givenUp) return;
          if (o.tapJournal !== undefined && tap === null) {
            // The source connects to the tap, which forwards to the destination (also after a break).
            const journalPath = resolve(o.tapJournal);
            tapStarting = startTap({ listen: { host: '127.0.0.1', port: 0 }, to: { host: '127.0.0.1', port: m.port }, journalPath, overwrite: true })
              .then((h) => {
                tap = h;
                if (!alive(dst) || givenUp) return;
                startSource(h.listening.port);
              })
              .catch((err: Error) => {
                result.message = `the tap could not start: ${err.message}`;
                giveUp();
              });
            return;
          }
          startSource(m.port);
          return;

        case 'backend':
          result.backend = m.reason !== undefined ? { kind: m.kind, reason: m.reason } : { kind: m.kind };
          if (m.kind === 'mock' && !o.json) process.stderr.write(`note: using the mock backend: ${m.reason}\n`);
          return;
        case 'progress': {
          const signature = `${m.status}/${m.postcopyState}/${m.received}/${m.outstanding}/${m.faults}`;
          if (signature !== lastSignature) {
            lastSignature = signature;
            lastChange = Date.now();
          }
          lastStatus = m.status;
          lastPostcopyState = m.postcopyState;
          const phase = m.status.startsWith('postcopy-') && m.status !== 'postcopy-active' ? m.status : POSTCOPY_STATE_NAMES[m.postcopyState as 0] ?? '?';
          // Precopy fills the first half, postcopy the second (the received bitmap starts again at LISTEN): the bar never runs backwards and a completed migration ends at 100 %.
          const postcopyHalf = m.postcopyState >= 3 ? m.total : 0;
          const done = m.status === 'completed' ? 2 * m.total : Math.min(2 * m.total, postcopyHalf + m.received);
          barTotal = 2 * m.total;
          bar.update(done, 2 * m.total, { phase, pages: `${m.received}/${m.total}`, outstanding: m.outstanding, latency: formatMs(m.lastLatencyMs) });
          if (m.status === 'failed' && !givenUp) {
            // Final: nothing will move again, so there is no stall to wait for.
            failed = true;
            kill(src);
            giveUp();
            armDeadline();
          }
          if ((sourceKilled || death?.who === 'source') && !givenUp && m.status === 'postcopy-paused') {
            // The source is gone: nothing will resume this migration. Keep the evidence.
            giveUp(500);
          }
          return;
        }
        case 'digest':
          dstDigest = m;
          return;
        case 'paused':
          finished.add(dst);
          result.paused = { outstanding: m.outstanding, journalPath: m.journalPath };
          if (m.status !== undefined) lastStatus = m.status;
          return;
        case 'done':
          finished.add(dst);
          result.destination = m.summary;
          return;
        case 'error':
          finished.add(dst);
          result.message = `destination failed: ${m.message}`;
          return;
      }
    });
    dst.once('exit', onDestinationEnd);
    dst.on('error', () => dst.pid === undefined && onDestinationEnd(null, null));
    dst.once('disconnect', () => {
      if (!finished.has(dst)) setTimeout(() => alive(dst) && !finished.has(dst) && dst.kill('SIGKILL'), 200);
    });
  });
  clearInterval(watchdog);
  if (tapStarting !== null) await tapStarting;
  if (tap !== null) {
    // The migration is over (or given up): the tap commits its journal once its connections close.
    const t: TapHandle = tap;
    const ended = await Promise.race([t.done, new Promise<null>((r) => setTimeout(() => r(null), 5_000))]);
    const r = ended ?? (await t.stop());
    result.tap = { journalPath: r.journalPath, summary: r.summary };
  }
  if (deadline) clearTimeout(deadline);
  if (barTotal > 0 && (lastStatus === 'completed' || result.destination?.status === 'completed')) bar.update(barTotal, barTotal, { phase: 'END' });
  bar.stop();
  const dstCode = exitCodeOf(dst);
  const srcCode = src ? exitCodeOf(src) : -1;
  result.wallMs = Date.now() - started;
  const journal = plan.dst.journalPath;

  if (death !== null) {
    const d: PeerDeath = death;
    result.death = d;
    const who = `the ${d.who} (pid ${d.pid}) died (${d.how}) during ${d.phase}, ${d.atMs} ms after the start`;
    if (d.who === 'destination') {
      result.exitCode = 1;
      result.message = existsSync(journal)
        ? `${who}; the source was stopped. The destination's journal holds what it committed plus its crash tail: ${journal} (run 'postcopy inspect ${journal}')`
        : `${who}, before it created its journal; the source was stopped`;
    } else if (result.paused && lastStatus === 'postcopy-paused') {
      result.exitCode = 3;
      result.message = `${who}: the destination stays postcopy-paused with ${result.paused.outstanding} outstanding page requests. The journal is complete: run 'postcopy inspect ${result.paused.journalPath}' to see them.`;
    } else {
      result.exitCode = 1;
      result.message = `${who}: the migration failed (destination ${lastStatus || 'not started'}). The destination's journal is complete: ${journal} (run 'postcopy inspect ${journal}')`;
    }
    return result;
  }
  if (failed) {
    result.exitCode = 1;
    result.message = `the destination's migration failed (status 'failed'): the stream broke or was refused before postcopy could pause it. Run 'postcopy inspect ${journal}' to see why.`;
    return result;
  }
  if (stalled) {
    result.exitCode = 1;
    result.message = `the migration stalled: nothing moved for ${STALL_MS / 1000} s (destination ${lastStatus || 'not started'}${result.paused ? `, ${result.paused.outstanding} outstanding page requests` : ''}). Run 'postcopy inspect ${journal}' to see why.`;
    return result;
  }
  if (result.paused) {
    result.exitCode = 3;
    result.message = `the source was lost during postcopy: the destination stays ${lastStatus || 'postcopy-paused'} with ${result.paused.outstanding} outstanding page requests. The journal is complete: run 'postcopy inspect ${result.paused.journalPath}' to see them.`;
    return result;
  }
  // A source that said 'done' has sent everything (and its digest), however it ended.
  if (dstCode !== 0 || result.source === undefined || srcDigest === null || dstDigest === null) {
    result.message ||= `the migration did not complete (destination exit ${dstCode}, source exit ${srcCode})`;
    return result;
  }
  result.mismatches = compareDigests(srcDigest, dstDigest, plan.dst.workload);
  result.verified = result.mismatches.length === 0;
  result.exitCode = result.verified ? 0 : 1;
  result.message = result.verified
    ? 'verified: the destination memory equals the source image page for page (plus the destination vCPUs\' own writes)'
    : `MEMORY MISMATCH at ${result.mismatches.length === 10 ? 'least 10' : result.mismatches.length} pages, first: ${result.mismatches.map((p) => `page ${p} (offset 0x${(p * 4096).toString(16)})`).join(', ')}`;
  return result;
}

/** A child's exit code, 128 + n for a signal (as a shell says it). */
function exitCodeOf(c: ChildProcess): number {
  if (c.exitCode !== null) return c.exitCode;
  if (c.signalCode !== null) return 128 + (osConstants.signals[c.signalCode] ?? 0);
  return -1;
}

/**
 * Page numbers whose content differs (at most 10). Bytes 1..4095 must be identical; byte 0
 * is the one the guest increments: +1 per page for sequential-increment (one pass), and
 * for random and hot-set the increments must add up to the vCPUs' accesses (mod 256).
 */
export function compareDigests(
  src: { pages: number; hashes: string; byte0: string },
  dst: { pages: number; hashes: string; byte0: string; vcpuAccesses: number[]; passes: number },
  workload: AccessPatternName,
): number[] {
  const sh = Buffer.from(src.hashes, 'base64');
  const dh = Buffer.from(dst.hashes, 'base64');
  const s0 = Buffer.from(src.byte0, 'base64');
  const d0 = Buffer.from(dst.byte0, 'base64');
  const bad: number[] = [];
  let deltaSum = 0;
  for (let p = 0; p < src.pages && bad.length < 10; p++) {
    if (sh.compare(dh, p * 8, p * 8 + 8, p * 8, p * 8 + 8) !== 0) {
      bad.push(p);
      continue;
    }
    const delta = (d0[p]! - s0[p]! + 256) & 0xff;
    if (workload === 'sequential-increment' && delta !== (dst.passes & 0xff)) bad.push(p);
    deltaSum += delta;
  }
  if (bad.length === 0 && workload !== 'sequential-increment') {
    const accesses = dst.vcpuAccesses.reduce((a, b) => a + b, 0);
    if ((deltaSum & 0xff) !== (accesses & 0xff)) bad.push(-1);
  }
  return bad;
}

/** The summary a person reads after a migration (pure). */
export function formatSummary(r: MigrateResult, plan: ReturnType<typeof planMigration>): string {
  const d = r.destination;
  const s = r.source;
  const lines = [
    `postcopy migration: ${plan.dst.sizeBytes / 2 ** 20} MiB guest, ${plan.dst.vcpus} vCPUs, workload ${plan.dst.workload}${plan.dst.preempt ? ', preempt' : ''}${plan.dst.hostPageSize > 4096 ? ', 2 MiB huge pages' : ''}, backend ${r.backend.kind}${r.backend.reason ? ` (${r.backend.reason})` : ''}`,
    `  result:      ${r.message}`,
  ];
  if (s) lines.push(`  phases:      precopy ${formatMs(s.precopyMs)}, postcopy ${formatMs(s.postcopyMs)}, total ${formatMs(r.wallMs)} wall${s.reconnects ? `; ${s.reconnects} reconnect(s)` : ''}`);
  if (s) lines.push(`  pages:       precopy ${s.counters.precopyPages}, postcopy ${s.counters.postcopyPages}, urgent ${s.counters.urgentPages}, prefetched ${s.counters.prefetchPages} (zero pages ${s.counters.zeroPages}); discard ${s.discard.rangesSent} ranges in ${s.discard.commandsSent} commands`);
  if (d) {
    const l = d.requestLatency;
    lines.push(`  requests:    ${d.stats.requests} (re-sent ${d.stats.resends}); faults ${d.stats.faults}; placed by channel ${d.stats.placedByChannel.join(' / ')}`);
    lines.push(`  latency:     page request → placement p50 ${formatMs(l.p50Ns / 1e6)}, p99 ${formatMs(l.p99Ns / 1e6)}, max ${formatMs(l.maxNs / 1e6)} (${l.count} requests)`);
    lines.push(`  blocktime:   exact: per vCPU [${d.blocktime.exact.perVcpuBlockedNs.map((n) => formatMs(n / 1e6)).join(', ')}], all vCPUs at once ${formatMs(d.blocktime.exact.totalNs / 1e6)}; qemu mode: per vCPU [${d.blocktime.qemu.perVcpuMs.join(', ')}] ms, all at once ${d.blocktime.qemu.totalMs} ms`);
    lines.push(`  journal:     ${d.journalPath} (${d.events} events)`);
  }
  if (r.paused) lines.push(`  journal:     ${r.paused.journalPath}`);
  return lines.join('\n');
}

/**
 * Pure: the figures of the summary from the journal's analysis, the same figures and words
 * `inspect` prints (phases, pages, requests, latency, blocktime), and what to run next.
 */
export function journalSummaryLines(a: Analysis, wallMs: number): string[] {
  const ph = phasesOf(a);
  const f = a.faults;
  const q = a.blocktime.qemu;
  const e = a.blocktime.exact;
  return [
    `  phases:      precopy ${ph.precopyMs === null ? '—' : formatMs(ph.precopyMs)}, postcopy ${ph.postcopyMs === null ? '—' : formatMs(ph.postcopyMs)} (LISTENING → ${ph.postcopyEnded ? 'END' : 'never ended'}), journal ${formatMs(ph.journalMs)}, ${formatMs(wallMs)} wall`,
    `  pages:       precopy ${a.pages.precopy.toLocaleString('en-US')} (re-sent dirty pages included); postcopy ${a.pages.placed.toLocaleString('en-US')} host pages placed (${a.pages.zero.toLocaleString('en-US')} zero-filled locally), by channel: ${channelCounts(a.pages.byChannel)}; ${a.pages.discardedRanges} discarded range(s)`,
    `  requests:    ${a.requests.count.toLocaleString('en-US')} sent, ${a.requests.resent} re-sent, ${a.requests.outstanding.length} outstanding; faults ${f.count.toLocaleString('en-US')}`,
    `  latency:     fault → placement p50 ${formatMs(f.p50Ms)}, p99 ${formatMs(f.p99Ms)}, max ${formatMs(f.maxMs)} (${f.timed.toLocaleString('en-US')} faults timed${f.unanswered ? `, ${f.unanswered} still waiting` : ''})`,
    `  blocktime:   exact: per vCPU [${e.perVcpuMs.map((ms) => formatMs(ms)).join(', ')}], all vCPUs at once ${formatMs(e.totalMs)}; qemu mode: per vCPU [${q.perVcpuMs.map(qemuMs).join(', ')}], all at once ${qemuMs(q.totalMs)}`,
    `  journal:     ${a.journal.path} (${a.journal.events.toLocaleString('en-US')} events)`,
    `next: postcopy inspect ${a.journal.path}   (or: postcopy report ${a.journal.path} -o report.html)`,
  ];
}

/** The journal's analysis, or null when it cannot be read (the summary then keeps the processes' own figures). */
function analyzeJournalAt(path: string): Analysis | null {
  if (!existsSync(path)) return null;
  try {
    const reader = JournalReader.open(path);
    try {
      return analyzeJournal(reader, { slowest: 0 });
    } finally {
      reader.close();
    }
  } catch {
    return null;
  }
}

/** `postcopy migrate`: exit 0 only for a verified migration; 3 when left paused. */
export async function migrateCommand(o: MigrateCommandOptions): Promise<number> {
  const plan = planMigration(o);
  const r = await runMigration(o);
  if (o.json) {
    console.log(JSON.stringify(inMs(r), null, 2));
    return r.exitCode;
  }
  const a = analyzeJournalAt(r.paused?.journalPath ?? r.destination?.journalPath ?? plan.dst.journalPath);
  if (a === null) console.log(formatSummary(r, plan));
  else console.log([...formatSummary(r, plan).split('\n').slice(0, 2), ...journalSummaryLines(a, r.wallMs)].join('\n'));
  // The one line that says why, where a script's stderr log shows it.
  if (r.exitCode !== 0) console.error(`postcopy migrate: ${r.message}`);
  return r.exitCode;
}
