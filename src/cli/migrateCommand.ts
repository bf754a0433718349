import { fork, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { POSTCOPY_STATE_NAMES } from '../engine/constants.js';
import { UsageError } from '../errors.js';
import { MIGRATION_CHILD_PATH } from '../paths.js';
import { ACCESS_PATTERN_NAMES, type AccessPatternName } from '../io/backends/accessPatterns.js';
import type { DestinationMessage, DestinationOptions, DestinationSummary } from '../io/migration/migrationDestination.js';
import type { SourceMessage, SourceOptions } from '../io/migration/migrationSource.js';
import { parsePrefetchPages, parseSize } from './options.js';
import { formatMs } from '../text.js';
import { createProgress } from './progress.js';
import { existsSync } from 'node:fs';
import { analyzeJournal } from '../forensics/analysis.js';
import { channelCounts, phasesOf, qemuMs, type Analysis } from '../forensics/analysisTypes.js';
import { JournalReader } from '../journal/journalReader.js';
import { inMs } from './jsonUnits.js';

export interface MigrateCommandOptions {
  size: string;
  vcpus: string;
  hugePages?: boolean;
  workload: string;
  bandwidth: string;
  dirtyRate: string;
  preempt?: boolean;
  journal: string;
  backend: string;
  faultReader: string;
  vcpuNice?: string;
  prefetch?: string;
  seed: string;
  breakAt?: string;
  killSourceAt?: string;
  json?: boolean;
  quiet?: boolean;
}

/** Everything a finished `migrate` knows; printed as the summary or as --json. */
export interface MigrateResult {
  verified: boolean;
  exitCode: number;
  message: string;
  mismatches: number[];
  backend: { kind: string; reason?: string };
  source?: Extract<SourceMessage, { type: 'done' }>;
  destination?: DestinationSummary;
  paused?: { outstanding: number; journalPath: string };
  wallMs: number;
}

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
  return {
    src: { sizeBytes: size, hostPageSize, seed, preempt, bandwidth, dirtyRate, prefetchPages, ...(breakAt !== undefined ? { breakAt } : {}) },
    dst: { sizeBytes: size, hostPageSize, vcpus, workload: o.workload as AccessPatternName, seed, preempt, journalPath: resolve(o.journal), backend: o.backend as DestinationOptions['backend'], faultReader: o.faultReader as DestinationOptions['faultReader'], vcpuNice },
    ...(killSourceAt !== undefined ? { killSourceAt } : {}),
  };
}

function spawnRole(role: 'source' | 'destination', options: unknown): ChildProcess {
  return fork(MIGRATION_CHILD_PATH, [role, JSON.stringify(options)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
}

/**
 * Runs a real postcopy migration between two child processes on 127.0.0.1 and verifies
 * the destination's memory against the source's final image. Resolves with the result
 * (exit code 0 only for a verified migration).
 */
export async function runMigration(o: MigrateCommandOptions): Promise<MigrateResult> {
  const plan = planMigration(o);
  const started = Date.now();
  const result: MigrateResult = { verified: false, exitCode: 1, message: '', mismatches: [], backend: { kind: '?' }, wallMs: 0 };
  const dst = spawnRole('destination', plan.dst);
  let src: ChildProcess | null = null;
  let srcDigest: Extract<SourceMessage, { type: 'digest' }> | null = null;
  let dstDigest: Extract<DestinationMessage, { type: 'digest' }> | null = null;
  let lastStatus = '';
  /** The progress bar's total (precopy + postcopy halves), once known. */
  let barTotal = 0;
  let sourceKilled = false;
  let givenUp = false;
  const bar = createProgress('migrate', {
    format: 'migrate {phase} [{bar}] {percentage}% | {pages} pages | outstanding {outstanding} | p50 request→page {latency}',
    enabled: !o.json && !o.quiet,
    plainEveryMs: 1000,
  });
  // A migration that stops moving is reported, never waited on forever: the journal says why.
  let lastSignature = '';
  let lastChange = Date.now();
  let stalled = false;
  /** The destination's migration status became `failed` (final). */
  let failed = false;
  const watchdog = setInterval(() => {
    if (givenUp || lastStatus === 'completed' || Date.now() - lastChange < STALL_MS) return;
    stalled = true;
    src?.kill('SIGKILL');
    if (!givenUp) {
      givenUp = true;
      dst.send({ type: 'give-up' });
    }
  }, 1000);
  const exited = (child: ChildProcess): Promise<number> =>
    new Promise((r) => {
      if (child.exitCode !== null) r(child.exitCode);
      else if (child.signalCode !== null) r(128);
      else child.once('exit', (code, signal) => r(code ?? (signal ? 128 : 1)));
    });

  await new Promise<void>((resolveAll, reject) => {
    dst.on('message', (m: DestinationMessage | { type: 'error'; message: string }) => {
      switch (m.type) {
        case 'listening':
          src = spawnRole('source', { ...plan.src, port: m.port });
          src.on('message', (sm: SourceMessage | { type: 'error'; message: string }) => {
            if (sm.type === 'digest') srcDigest = sm;
            else if (sm.type === 'done') result.source = sm;
            else if (sm.type === 'error') result.message = `source failed: ${sm.message}`;
            else if (sm.type === 'progress' && plan.killSourceAt !== undefined && !sourceKilled && sm.destinationListening && sm.sentFraction >= plan.killSourceAt) {
              sourceKilled = true;
              src!.kill('SIGKILL');
            }
          });
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
          const phase = m.status.startsWith('postcopy-') && m.status !== 'postcopy-active' ? m.status : POSTCOPY_STATE_NAMES[m.postcopyState as 0] ?? '?';
          // Precopy fills the first half, postcopy the second (the received bitmap starts again at LISTEN): the bar never runs backwards and a completed migration ends at 100 %.
          const postcopyHalf = m.postcopyState >= 3 ? m.total : 0;
          const done = m.status === 'completed' ? 2 * m.total : Math.min(2 * m.total, postcopyHalf + m.received);
          barTotal = 2 * m.total;
          bar.update(done, 2 * m.total, { phase, pages: `${m.received}/${m.total}`, outstanding: m.outstanding, latency: formatMs(m.lastLatencyMs) });
          if (m.status === 'failed' && !givenUp) {
            // Final: nothing will move again, so there is no stall to wait for.
            failed = true;
            givenUp = true;
            src?.kill('SIGKILL');
            dst.send({ type: 'give-up' });
          }
          if (sourceKilled && !givenUp && m.status === 'postcopy-paused') {
            givenUp = true;
            // The source is gone: nothing will resume this migration. Keep the evidence.
            setTimeout(() => dst.send({ type: 'give-up' }), 500);
          }
          return;
        }
        case 'digest':
          dstDigest = m;
          return;
        case 'paused':
          result.paused = { outstanding: m.outstanding, journalPath: m.journalPath };
          return;
        case 'done':
          result.destination = m.summary;
          return;
        case 'error':
          result.message = `destination failed: ${m.message}`;
          return;
      }
    });
    dst.once('exit', () => resolveAll());
    dst.once('error', reject);
  });
  clearInterval(watchdog);
  if (barTotal > 0 && (lastStatus === 'completed' || result.destination?.status === 'completed')) bar.update(barTotal, barTotal, { phase: 'END' });
  bar.stop();
  const dstCode = await exited(dst);
  const srcCode = src ? await exited(src) : -1;
  result.wallMs = Date.now() - started;

  if (failed) {
    result.exitCode = 1;
    result.message = `the destination's migration failed (status 'failed'): the stream broke or was refused before postcopy could pause it. Run 'postcopy inspect ${plan.dst.journalPath}' to see why.`;
    return result;
  }
  if (stalled) {
    result.exitCode = 1;
    result.message = `the migration stalled: nothing moved for ${STALL_MS / 1000} s (destination ${lastStatus || 'not started'}${result.paused ? `, ${result.paused.outstanding} outstanding page requests` : ''}). Run 'postcopy inspect ${plan.dst.journalPath}' to see why.`;
    return result;
  }
  if (result.paused) {
    result.exitCode = 3;
    result.message = `the source was lost during postcopy: the destination stays ${lastStatus || 'postcopy-paused'} with ${result.paused.outstanding} outstanding page requests. The journal is complete: run 'postcopy inspect ${result.paused.journalPath}' to see them.`;
    return result;
  }
  if (dstCode !== 0 || srcCode !== 0 || srcDigest === null || dstDigest === null) {
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
  return r.exitCode;
}
