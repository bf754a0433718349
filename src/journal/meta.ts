import type { PreemptEnd } from '../engine/destination.js';
import type { RamBlockConfig } from '../engine/ramBlock.js';
import { JournalFormatError } from '../errors.js';

/** A block as the journal records it: its configuration plus where it lived in memory. */
export interface JournalBlock extends RamBlockConfig {
  /** Host virtual address of the block's first byte (fault addresses are in this space). */
  hostAddress: number;
}

export type JournalSource = 'engine' | 'qemu-trace' | 'tap';
const SOURCES: readonly JournalSource[] = ['engine', 'qemu-trace', 'tap'];

/**
 * What a journal says about itself (the `meta` table, one JSON value per key).
 * Everything replay needs to rebuild the engine is here.
 */
export interface JournalMeta {
  /** Written by the writer; a reader refuses versions it does not know. */
  formatVersion?: number;
  engineVersion: string;
  /**
   * 'engine': recorded by this engine (replayable); 'qemu-trace': imported from a QEMU trace log;
   * 'tap': recorded by `postcopy tap` between a QEMU source and destination (its inputs replay
   * through a fresh engine as a consistency check).
   */
  source: JournalSource;
  /** ISO time the journal was created. */
  created: string;
  /** Wall-clock ns of t = 0 (event times are ns relative to it). */
  timeOriginNs: number;
  blocks: JournalBlock[];
  vcpuTids: number[];
  /** 'preempt' when the postcopy-preempt capability is on. */
  capabilities: string[];
  /** With preempt, when postcopy may end (DestinationConfig.preemptEnd); absent: 'channel-eos'. */
  preemptEnd?: PreemptEnd;
  /** Which blocktime figures the run reports: both modes are always derivable from the events. */
  blocktimeMode: 'qemu' | 'exact' | 'both';
  /** Free-form description of the run (role, workload, seed, command line...). */
  run?: Record<string, unknown>;
}

/**
 * Checks a journal's meta (JSON values by key) against what the engine writes and returns
 * it typed; throws JournalFormatError naming the key at the first value that is not.
 * Optional keys a reader needs get their defaults (capabilities: [], blocktimeMode: 'both').
 */
export function validateMeta(file: string, raw: Record<string, unknown>): JournalMeta {
  const bad = (key: string, reason: string): never => {
    throw new JournalFormatError(file, `meta.${key}`, reason);
  };
  const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  for (const k of ['source', 'blocks', 'vcpuTids']) if (!(k in raw)) bad(k, 'missing');
  if (!SOURCES.includes(raw.source as JournalSource)) bad('source', `must be 'engine', 'qemu-trace' or 'tap', got ${show(raw.source)}`);
  if (!Array.isArray(raw.blocks)) bad('blocks', `must be an array of blocks, got ${show(raw.blocks)}`);
  const blocks = raw.blocks as unknown[];
  if (blocks.length > 32767) bad('blocks', `${blocks.length} blocks (the journal's block column holds at most 32767)`);
  blocks.forEach((b, i) => {
    const at = `blocks[${i}]`;
    if (b === null || typeof b !== 'object' || Array.isArray(b)) bad(at, `must be an object, got ${show(b)}`);
    const o = b as Record<string, unknown>;
    if (typeof o.name !== 'string') bad(`${at}.name`, `must be a string, got ${show(o.name)}`);
    if (!isCount(o.length)) bad(`${at}.length`, `must be a whole number of bytes, got ${show(o.length)}`);
    if (o.maxLength !== undefined && !(isCount(o.maxLength) && o.maxLength >= (o.length as number))) bad(`${at}.maxLength`, `must be a whole number >= length, got ${show(o.maxLength)}`);
    if (o.hostPageSize !== undefined && !(isCount(o.hostPageSize) && o.hostPageSize >= 4096 && (o.hostPageSize & (o.hostPageSize - 1)) === 0)) {
      bad(`${at}.hostPageSize`, `must be a power of two >= 4096, got ${show(o.hostPageSize)}`);
    }
    if (o.hugetlbfs !== undefined && typeof o.hugetlbfs !== 'boolean') bad(`${at}.hugetlbfs`, `must be true or false, got ${show(o.hugetlbfs)}`);
    if (!isNum(o.hostAddress)) bad(`${at}.hostAddress`, `must be a number, got ${show(o.hostAddress)}`);
    if (o.discarded !== undefined && !(Array.isArray(o.discarded) && o.discarded.every((r) => Array.isArray(r) && r.length === 2 && isCount(r[0]) && isCount(r[1])))) {
      bad(`${at}.discarded`, `must be a list of [offset, length], got ${show(o.discarded)}`);
    }
  });
  if (!(Array.isArray(raw.vcpuTids) && raw.vcpuTids.every(isNum))) bad('vcpuTids', `must be an array of thread ids, got ${show(raw.vcpuTids)}`);
  if ((raw.vcpuTids as unknown[]).length > 4096) bad('vcpuTids', `${(raw.vcpuTids as unknown[]).length} vCPUs (at most 4096)`);
  if (raw.capabilities === undefined) raw.capabilities = [];
  if (!(Array.isArray(raw.capabilities) && raw.capabilities.every((c) => typeof c === 'string'))) bad('capabilities', `must be an array of strings, got ${show(raw.capabilities)}`);
  if (raw.preemptEnd !== undefined && raw.preemptEnd !== 'channel-eos' && raw.preemptEnd !== 'main-eos') bad('preemptEnd', `must be 'channel-eos' or 'main-eos', got ${show(raw.preemptEnd)}`);
  if (raw.blocktimeMode === undefined) raw.blocktimeMode = 'both';
  if (!['qemu', 'exact', 'both'].includes(raw.blocktimeMode as string)) bad('blocktimeMode', `must be 'qemu', 'exact' or 'both', got ${show(raw.blocktimeMode)}`);
  if (raw.timeOriginNs !== undefined && !isNum(raw.timeOriginNs)) bad('timeOriginNs', `must be a number, got ${show(raw.timeOriginNs)}`);
  for (const k of ['engineVersion', 'created']) if (raw[k] !== undefined && typeof raw[k] !== 'string') bad(k, `must be a string, got ${show(raw[k])}`);
  if (raw.run !== undefined && (raw.run === null || typeof raw.run !== 'object' || Array.isArray(raw.run))) bad('run', `must be an object, got ${show(raw.run)}`);
  return raw as unknown as JournalMeta;
}

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
