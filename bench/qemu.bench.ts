/**
 * `qemu.*`: real QEMU migrations on this machine (TCG here: no /dev/kvm), our destination
 * beside QEMU's own, alternating in one run and measured by the same code (bench/qemuRuns.ts).
 */
import { median, type Benchmark } from './harness.js';
import { qemu10, QEMU_7_2, runQemuMigration, type QemuBuild } from './qemuRuns.js';

/** Alternating pairs per variant (`QEMU_RECEIVE_PAIRS`, default 3). */
const PAIRS = Number(process.env.QEMU_RECEIVE_PAIRS ?? 3);

/** Alternates QEMU → QEMU and QEMU → receive, PAIRS of each, which goes first flipped each pair; the ratio of the postcopy phases' medians. */
function receiveVsQemu(name: string, build: () => Promise<QemuBuild>, preempt: boolean): Benchmark {
  return {
    name,
    description: `postcopy phase (source postcopy-active → completed, QEMU's event times) of QEMU → postcopy receive${preempt ? ', preempt' : ''}, against QEMU → QEMU in the same run (goal ≤ 1.2 ×)`,
    async run() {
      const source = await build();
      const ours: number[] = [];
      const theirs: number[] = [];
      const requests: number[] = [];
      for (let i = 0; i < PAIRS; i++) {
        // Neither side always runs on a warmer machine.
        const order = i % 2 === 0 ? (['qemu', 'receive'] as const) : (['receive', 'qemu'] as const);
        for (const destination of order) {
          const r = await runQemuMigration({ source, destination, preempt });
          if (destination === 'qemu') {
            theirs.push(r.postcopyMs);
          } else {
            ours.push(r.postcopyMs);
            requests.push(r.requests);
          }
        }
      }
      const f = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
      return {
        median: median(ours),
        unit: 'ms',
        runs: PAIRS,
        higherIsBetter: false,
        baseline: { name: `${source.label} → ${source.label} (same guest, alternating)`, median: median(theirs), source: 'measured' },
        notes: `${source.label} source, bootblock guest 256 MiB 2 vCPUs, postcopy after 2 dirty syncs; receive ${f(ours)} ms, QEMU ${f(theirs)} ms; requests to receive ${requests.join(', ')}`,
      };
    },
  };
}

export const benchmarks: Benchmark[] = [
  receiveVsQemu('qemu.receive.postcopy', async () => QEMU_7_2, false),
  receiveVsQemu('qemu.receive.postcopy.preempt', async () => QEMU_7_2, true),
  receiveVsQemu('qemu.receive.postcopy.10', qemu10, true),
];
