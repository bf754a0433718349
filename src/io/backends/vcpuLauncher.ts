/**
 * Starting a guest's vCPUs on whichever backend runs the migration: real threads on the
 * uffd backend, simulated vCPUs stepped from a timer on the mock one. The destination asks
 * for vCPUs once at RUN and never needs to know which backend it has.
 */
import { setPriority } from 'node:os';
import type { Backend, BlockLayout } from '../../engine/ports.js';
import { PostcopyError } from '../../errors.js';
import type { AccessPatternName } from './accessPatterns.js';
import { MockBackend } from './mockBackend.js';
import { UffdBackend, type UffdBackendOptions } from './uffdBackend.js';

export interface VcpuLaunch {
  pattern: AccessPatternName;
  vcpus: number;
  seed: number;
  /** Nice value of the vCPU threads (0: unchanged); a simulated vCPU has none. */
  nice: number;
  /** The clock the mock backend's vCPUs step on, ns. */
  nowNs: () => number;
}

export interface StartedVcpus {
  /** The vCPUs' thread ids (the mock backend's are its own numbers). */
  readonly tids: number[];
  /** Resolves with each vCPU's access count once all have finished their work. */
  readonly done: Promise<number[]>;
  /** Stops stepping simulated vCPUs (real threads end by themselves). */
  stop(): void;
}

export interface LaunchableBackend {
  readonly backend: Backend;
  startVcpus(launch: VcpuLaunch): StartedVcpus;
}

/** Renices a vCPU thread; one that already finished its work (ESRCH) needs nothing. */
export function lowerPriority(tid: number, nice: number): void {
  try {
    setPriority(tid, nice);
  } catch (err) {
    if ((err as { info?: { code?: string } }).info?.code !== 'ESRCH') throw err;
  }
}

/** Real vCPU threads of the native backend, which fault on missing pages. */
export function uffdVcpus(backend: UffdBackend): LaunchableBackend {
  return {
    backend,
    startVcpus: ({ pattern, vcpus, seed, nice }) => {
      const run = backend.startVcpus({ pattern, vcpus, seed, block: 0, passes: 1 });
      // vCPU threads run at a lower priority than the migration (the fault path must win a
      // core when a vCPU is blocked and another one spins): a VMM's choice, made explicit.
      if (nice !== 0) for (const tid of run.tids) lowerPriority(tid, nice);
      return { tids: run.tids, done: run.done.then((reports) => reports.map((r) => r.accesses)), stop: () => {} };
    },
  };
}

/** Simulated vCPUs of the mock backend, stepped every millisecond on `nowNs`. */
export function mockVcpus(backend: MockBackend): LaunchableBackend {
  return {
    backend,
    startVcpus: ({ pattern, vcpus, seed, nowNs }) => {
      const tids = [...backend.startVcpus({ pattern, vcpus, seed, block: 0, touchOffset: 0 })];
      let stepper: NodeJS.Timeout | null = null;
      const done = new Promise<number[]>((resolve) => {
        stepper = setInterval(() => {
          backend.stepVcpus(256 * vcpus, nowNs());
          if (backend.allVcpusFinished()) {
            clearInterval(stepper!);
            resolve(backend.vcpuStates().map((v) => v.accessesDone));
          }
        }, 1);
      });
      return { tids, done, stop: () => stepper && clearInterval(stepper) };
    },
  };
}

/**
 * The native backend where the probe allows, otherwise the mock one (`fallback` is told
 * why). `choice` 'uffd' refuses to fall back; 'mock' skips the probe.
 */
export function chooseBackend(
  choice: 'auto' | 'uffd' | 'mock',
  layout: BlockLayout,
  uffdOptions: UffdBackendOptions,
  said: (kind: 'uffd' | 'mock', reason?: string) => void,
): LaunchableBackend {
  if (choice !== 'mock') {
    const probe = UffdBackend.probe([layout]);
    if (probe.ok) {
      said('uffd');
      return uffdVcpus(new UffdBackend([layout], uffdOptions));
    }
    if (choice === 'uffd') throw new PostcopyError('NO_HOST_SUPPORT', `the userfaultfd backend was asked for but the host refuses it: ${probe.reason}`);
    said('mock', probe.reason ?? 'userfaultfd refused');
  } else {
    said('mock', 'asked for with --backend mock');
  }
  const mock = new MockBackend([layout]);
  mock.reserveMemory(layout.length);
  return mockVcpus(mock);
}
