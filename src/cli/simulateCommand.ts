import { runSimulatedMigration } from '../io/migration/simulatedMigration.js';
import { ACCESS_PATTERN_NAMES, type AccessPatternName } from '../io/backends/accessPatterns.js';
import { UsageError } from '../errors.js';
import { createProgress } from './progress.js';
import { parsePrefetchPages, parseSize, refuseGuestTooLarge } from './options.js';
import { chooseJournal } from './outputs.js';
import { setCurrentJournal } from './lastResort.js';

/** The journal of a run without --journal (or the next free name beside it). */
export const DEFAULT_SIM_JOURNAL = 'postcopy-sim.db';
/**
 * Guest-sized buffers simulate really allocates: the source image, the expected image,
 * the mock backend's memory (sparse, but a complete migration fills it) and the read
 * back for verification.
 */
const SIMULATE_COPIES = 4;
import { inMs } from './jsonUnits.js';
import { formatMs } from '../text.js';

export interface SimulateCommandOptions {
  size: string;
  vcpus: string;
  workload: string;
  seed: string;
  preempt?: boolean;
  hugePages?: boolean;
  breakAt?: string;
  prefetch?: string;
  /** Default: postcopy-sim.db, or the next free postcopy-sim-N.db. */
  journal?: string;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/**
 * `postcopy simulate`: a whole migration in one process on a simulated clock (mock
 * backend), journaled to SQLite, replayed to prove zero divergence, memory verified.
 * Exit 0 only when the memory verifies and the replay matches.
 */
export function simulateCommand(opts: SimulateCommandOptions): number {
  const size = parseSize(opts.size, '--size');
  const vcpus = Number(opts.vcpus);
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 64) throw new UsageError(`--vcpus must be a whole number from 1 to 64, got '${opts.vcpus}'`);
  if (!ACCESS_PATTERN_NAMES.includes(opts.workload as AccessPatternName)) {
    throw new UsageError(`--workload must be one of ${ACCESS_PATTERN_NAMES.join(', ')}, got '${opts.workload}'`);
  }
  const seed = Number(opts.seed);
  if (!Number.isSafeInteger(seed)) throw new UsageError(`--seed must be an integer, got '${opts.seed}'`);
  const breakAt = opts.breakAt !== undefined ? Number(opts.breakAt) : undefined;
  if (breakAt !== undefined && !(breakAt >= 0 && breakAt < 1)) throw new UsageError(`--break-at must be a fraction in [0, 1), got '${opts.breakAt}'`);
  const hostPageSize = opts.hugePages ? 2 * 2 ** 20 : 4096;
  if (size % hostPageSize !== 0) throw new UsageError(`--size ${opts.size} is not a multiple of the ${hostPageSize}-byte host page`);
  const prefetchPages = parsePrefetchPages(opts.prefetch);
  refuseGuestTooLarge(opts.size, size, SIMULATE_COPIES, 'simulate holds the source image, the expected image, the destination\'s memory and the copy it verifies');
  // Before anything is created: an earlier run's journal is never replaced unasked.
  const journal = chooseJournal(opts.journal, DEFAULT_SIM_JOURNAL, !!opts.force);
  setCurrentJournal(journal.path);
  if (journal.renamed && !opts.json) process.stderr.write(`note: ${DEFAULT_SIM_JOURNAL} exists (an earlier run's journal, kept): this run's journal is ${journal.path}\n`);
  const progress = createProgress('migrating', { format: 'simulate {phase} [{bar}] {value}/{total} pages | outstanding {outstanding}', enabled: !opts.json && !opts.quiet });
  const r = runSimulatedMigration({
    sizeBytes: size,
    hostPageSize,
    vcpus,
    workload: opts.workload as AccessPatternName,
    seed,
    preempt: !!opts.preempt,
    prefetchPages,
    ...(breakAt !== undefined ? { breakAt } : {}),
    journalPath: journal.path,
    overwrite: !!opts.force,
    onProgress: (p) => progress.update(p.received, p.total, { phase: p.phase, outstanding: p.outstanding }),
  });
  progress.stop();
  const ok = r.verified && (r.replay?.ok ?? false);
  if (opts.json) {
    console.log(JSON.stringify(inMs(r), null, 2));
    return ok ? 0 : 1;
  }
  const lat = r.blocktime.exact.latency;
  const lines = [
    `simulated postcopy migration: ${opts.size} guest, ${vcpus} vCPUs, workload ${opts.workload}, seed ${seed}${opts.preempt ? ', preempt' : ''}${breakAt !== undefined ? `, break at ${breakAt}` : ''} (mock backend, simulated clock)`,
    `  status:      ${r.status}; memory ${r.verified ? 'verified page for page' : `MISMATCH at offsets ${r.mismatches.map((o) => '0x' + o.toString(16)).join(', ')}`}`,
    `  phases:      precopy ${formatMs(r.simulatedMs.precopy)}, postcopy ${formatMs(r.simulatedMs.postcopy)} (simulated time)`,
    `  pages:       precopy ${r.source.precopyPages}, postcopy ${r.source.postcopyPages}, urgent ${r.source.urgentPages}, prefetched ${r.source.prefetchPages}, zero ${r.source.zeroPages}`,
    `  discard:     ${r.discard.rangesSent} ranges in ${r.discard.commandsSent} commands`,
    `  faults:      ${r.stats.faults}; requests ${r.stats.requests}, re-sent ${r.stats.resends}`,
    `  latency:     fault→placement p50 ${formatMs(lat.p50Ns / 1e6)}, p99 ${formatMs(lat.p99Ns / 1e6)}, max ${formatMs(lat.maxNs / 1e6)}`,
    `  blocktime:   exact: per vCPU [${r.blocktime.exact.perVcpuBlockedNs.map((n) => formatMs(n / 1e6)).join(', ')}], all vCPUs at once ${formatMs(r.blocktime.exact.totalNs / 1e6)}; qemu mode: per vCPU [${r.blocktime.qemu.perVcpuMs.join(', ')}] ms, all at once ${r.blocktime.qemu.totalMs} ms`,
    `  journal:     ${r.journalPath} (${r.records} events); replay ${r.replay?.ok ? 'matches with zero divergence' : `DIVERGES: ${r.replay?.message}`}`,
  ];
  console.log(lines.join('\n'));
  return ok ? 0 : 1;
}
