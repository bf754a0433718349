import type { RamBlockConfig } from '../engine/ramBlock.js';

/** A block as the journal records it: its configuration plus where it lived in memory. */
export interface JournalBlock extends RamBlockConfig {
  /** Host virtual address of the block's first byte (fault addresses are in this space). */
  hostAddress: number;
}

/**
 * What a journal says about itself (the `meta` table, one JSON value per key).
 * Everything replay needs to rebuild the engine is here.
 */
export interface JournalMeta {
  /** Written by the writer; a reader refuses versions it does not know. */
  formatVersion?: number;
  engineVersion: string;
  /** 'engine': recorded by this engine (replayable); 'qemu-trace': imported from a QEMU trace log. */
  source: 'engine' | 'qemu-trace';
  /** ISO time the journal was created. */
  created: string;
  /** Wall-clock ns of t = 0 (event times are ns relative to it). */
  timeOriginNs: number;
  blocks: JournalBlock[];
  vcpuTids: number[];
  /** 'preempt' when the postcopy-preempt capability is on. */
  capabilities: string[];
  /** Which blocktime figures the run reports: both modes are always derivable from the events. */
  blocktimeMode: 'qemu' | 'exact' | 'both';
  /** Free-form description of the run (role, workload, seed, command line...). */
  run?: Record<string, unknown>;
}
