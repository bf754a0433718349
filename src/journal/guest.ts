/**
 * One description of the guest, from which the engine's configuration, the backend's block
 * layout and the journal's meta are all derived, so the three cannot disagree (writing them
 * separately, a block list three times over, is how they come to differ).
 */
import { TARGET_PAGE_SIZE } from '../engine/constants.js';
import type { DestinationConfig } from '../engine/destination.js';
import type { BlockLayout } from '../engine/ports.js';
import type { RamBlockConfig } from '../engine/ramBlock.js';
import { PACKAGE_VERSION } from '../paths.js';
import type { JournalMeta } from './meta.js';

/** One RAM block of the guest; every size is in bytes. */
export interface GuestBlock {
  /** idstr, e.g. 'pc.ram' (1 to 255 bytes of UTF-8). */
  name: string;
  /** Used length, a multiple of the host page size. */
  lengthBytes: number;
  /** Largest length a resize may reach (default lengthBytes). */
  maxLengthBytes?: number;
  /** 4096 (default), or a huge page size. */
  hostPageSizeBytes?: number;
  /** Backed by hugetlbfs. */
  hugetlbfs?: boolean;
}

/** The guest as the VMM knows it. */
export interface GuestDescription {
  blocks: readonly GuestBlock[];
  /**
   * Thread ids of the vCPU threads, index = vCPU index, when known before the migration
   * (else attach them later with `Destination.attachVcpus` and `JournalWriter.updateMeta`).
   */
  vcpuTids?: readonly number[];
  /** Number of vCPUs (default vcpuTids.length). */
  vcpus?: number;
  /** The postcopy-preempt capability (default false). */
  preempt?: boolean;
}

/** Journal fields that are not about the guest. */
export interface JournalMetaOptions {
  /** Wall-clock ns of the run's t = 0 (event times are ns relative to it). */
  timeOriginNs: number;
  /** ISO creation time (default now). */
  created?: string;
  /** Which blocktime figures the run reports (default 'both'). */
  blocktimeMode?: JournalMeta['blocktimeMode'];
  /** Free-form description of the run. */
  run?: Record<string, unknown>;
}

/** The three views of one guest: hand each to its consumer. */
export interface GuestConfig {
  /** For `new Destination(config, ...)`. */
  readonly destination: DestinationConfig;
  /** For the backend's constructor (`new MockBackend(layout)`, `new UffdBackend(layout)`, your own). */
  readonly layout: BlockLayout[];
  /** For `JournalWriter.create(path, meta)`; `hostAddressOf(i)` is the backend's address of block i. */
  journalMeta(hostAddressOf: (block: number) => number, opts: JournalMetaOptions): JournalMeta;
}

/**
 * Derives the engine config, the backend layout and the journal meta from one description.
 * Bad sizes are refused later, by the engine and the backend, with typed errors.
 */
export function describeGuest(guest: GuestDescription): GuestConfig {
  const blocks: RamBlockConfig[] = guest.blocks.map((b) => {
    const c: RamBlockConfig = { name: b.name, length: b.lengthBytes, maxLength: b.maxLengthBytes ?? b.lengthBytes, hostPageSize: b.hostPageSizeBytes ?? TARGET_PAGE_SIZE };
    if (b.hugetlbfs !== undefined) c.hugetlbfs = b.hugetlbfs;
    return c;
  });
  const vcpuTids = [...(guest.vcpuTids ?? [])];
  const preempt = guest.preempt ?? false;
  const destination: DestinationConfig = { blocks, vcpuTids, preempt };
  if (guest.vcpus !== undefined) destination.vcpus = guest.vcpus;
  const layout: BlockLayout[] = blocks.map((b) => ({ name: b.name, length: b.length, maxLength: b.maxLength ?? b.length, hostPageSize: b.hostPageSize ?? TARGET_PAGE_SIZE, hugetlbfs: b.hugetlbfs ?? false }));
  return {
    destination,
    layout,
    journalMeta: (hostAddressOf, opts) => {
      const meta: JournalMeta = {
        engineVersion: PACKAGE_VERSION,
        source: 'engine',
        created: opts.created ?? new Date().toISOString(),
        timeOriginNs: opts.timeOriginNs,
        blocks: blocks.map((b, i) => ({ ...b, hostAddress: hostAddressOf(i) })),
        vcpuTids: [...destination.vcpuTids],
        capabilities: preempt ? ['preempt'] : [],
        blocktimeMode: opts.blocktimeMode ?? 'both',
      };
      if (opts.run !== undefined) meta.run = opts.run;
      return meta;
    },
  };
}
