/**
 * Pass 1 of a QEMU trace import: a survey that parses only a few events, to learn what the
 * journal's meta must say before the journal is created: the RAM blocks, the capabilities,
 * the vCPU of each faulting thread and QEMU's blocktime clock offset.
 */
import { TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { type TraceEvent, type TraceEventName } from '../../engine/qemuTraceEvents.js';
import { loadThreadsJson, vcpuCountOf, vcpuIndexByTid } from './qemuThreads.js';
// ---------------------------------------------------------------------------
// Pass 1: the survey

export const SURVEY_EVENTS: readonly TraceEventName[] = [
  'qmp_enter_migrate_set_capabilities',
  'postcopy_init_range',
  'postcopy_ram_fault_thread_request',
  'mark_postcopy_blocktime_begin',
  'postcopy_preempt_thread_entry',
  'postcopy_preempt_new_channel',
  'loadvm_postcopy_handle_listen',
];

export interface SurveyBlock {
  name: string;
  hostAddress: number;
  length: number;
  /** Known from postcopy_init_range (else guessed from faults). */
  declared: boolean;
}

/** Thrown by the survey to stop reading once it knows enough. */
export class SurveyDone extends Error {}

/**
 * What pass 1 learns. Bounded: blocks and threads, not lines. It stops at the end of
 * LISTEN (the blocks, declared at ADVISE, and the capabilities are known by then)
 * unless it must read on: the vCPUs are to be inferred from the faults, or no block
 * was declared and the faults must show them.
 */
export class TraceSurvey {
  readonly blocks = new Map<string, SurveyBlock>();
  readonly capabilities = new Set<string>();
  /** Faulting thread (pid=) → vCPU index, from begin lines. */
  readonly cpuOfPid = new Map<number, number>();
  /** Faulting threads in order of first fault. */
  readonly pidOrder: number[] = [];
  cpuConflicts = 0;
  private readonly lastPidOfTid = new Map<number, number>();

  constructor(private readonly needFaults: boolean) {}

  push(e: TraceEvent): void {
    switch (e.kind) {
      case 'postcopy_init_range':
        if (e.block !== null && !this.blocks.get(e.block)?.declared) {
          this.blocks.set(e.block, { name: e.block, hostAddress: e.host, length: e.length, declared: true });
        }
        break;
      case 'loadvm_postcopy_handle_listen':
        if (e.stage === 'return' && !this.needFaults && this.blocks.size > 0) throw new SurveyDone();
        break;
      case 'postcopy_ram_fault_thread_request': {
        this.lastPidOfTid.set(e.tid, e.pid);
        if (!this.pidOrder.includes(e.pid) && this.pidOrder.length < 4096) this.pidOrder.push(e.pid);
        if (e.block === null) break;
        const known = this.blocks.get(e.block);
        const end = e.offset - (e.offset % TARGET_PAGE_SIZE) + TARGET_PAGE_SIZE;
        if (known === undefined) this.blocks.set(e.block, { name: e.block, hostAddress: e.hva - e.offset, length: end, declared: false });
        else if (!known.declared && end > known.length) known.length = end;
        break;
      }
      case 'mark_postcopy_blocktime_begin': {
        const pid = this.lastPidOfTid.get(e.tid);
        if (pid === undefined || e.cpu < 0) break;
        const had = this.cpuOfPid.get(pid);
        if (had === undefined) this.cpuOfPid.set(pid, e.cpu);
        else if (had !== e.cpu) this.cpuConflicts++;
        break;
      }
      case 'qmp_enter_migrate_set_capabilities':
        for (const cap of enabledCapabilities(e.args)) this.capabilities.add(cap);
        break;
      case 'postcopy_preempt_thread_entry':
      case 'postcopy_preempt_new_channel':
        this.capabilities.add('postcopy-preempt');
        break;
      default:
        break;
    }
  }
}

/** Pure: the capabilities a migrate-set-capabilities QMP argument turns on (none when it does not parse). */
export function enabledCapabilities(args: string | null): string[] {
  if (args === null) return [];
  try {
    const doc = JSON.parse(args) as { capabilities?: Array<{ capability?: unknown; state?: unknown }> };
    return (doc.capabilities ?? []).filter((c) => c.state === true && typeof c.capability === 'string').map((c) => c.capability as string);
  } catch {
    return [];
  }
}

import type { ImportSummary } from './qemuImport.js';

export interface VcpuMapping {
  tids: number[];
  source: ImportSummary['vcpus']['source'];
  detail: string;
}

/** The vCPU threads: from threads.json when there is one, else from the faults. */
export async function resolveVcpus(survey: TraceSurvey, threadsPath: string | null, warnings: string[]): Promise<VcpuMapping> {
  if (threadsPath !== null) {
    const threads = await loadThreadsJson(threadsPath);
    const byTid = vcpuIndexByTid(threads.dst);
    const tids = new Array<number>(vcpuCountOf(threads.dst)).fill(0);
    for (const [tid, idx] of byTid) tids[idx] = tid;
    let disagree = 0;
    for (const [pid, cpu] of survey.cpuOfPid) if (byTid.get(pid) !== cpu) disagree++;
    if (disagree > 0) warnings.push(`${disagree} faulting thread(s) have a vCPU in the blocktime lines that threads.json does not give them`);
    if (tids.length === 0) warnings.push(`${threadsPath} names no destination vCPU thread ('CPU n/KVM'): blocktime cannot be attributed`);
    return { tids, source: 'threads.json', detail: threadsPath };
  }
  if (survey.cpuOfPid.size > 0) {
    const count = Math.max(...survey.cpuOfPid.values()) + 1;
    const tids = new Array<number>(count).fill(0);
    for (const [pid, cpu] of survey.cpuOfPid) tids[cpu] = pid;
    const missing = tids.filter((tid) => tid === 0).length;
    if (missing > 0) warnings.push(`${missing} vCPU(s) never faulted: their thread is unknown`);
    warnings.push(`no threads.json: ${count} vCPU(s) inferred from the faults (pid= paired with the blocktime line's cpu:); a vCPU that never faulted is not counted, which changes QEMU's all-vCPUs-blocked total`);
    if (survey.cpuConflicts > 0) warnings.push(`${survey.cpuConflicts} blocktime line(s) gave a faulting thread another vCPU than before`);
    return { tids, source: 'inferred', detail: 'fault pid= paired with the next blocktime begin cpu:' };
  }
  if (survey.pidOrder.length > 0) {
    warnings.push(`no threads.json and no blocktime lines: ${survey.pidOrder.length} vCPU(s) inferred from the faulting threads in order of first fault (QEMU's own numbering is unknown)`);
    return { tids: [...survey.pidOrder], source: 'inferred', detail: 'faulting threads in order of first fault' };
  }
  warnings.push('no threads.json and no faults: the vCPUs are unknown');
  return { tids: [], source: 'none', detail: '' };
}

