import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SimulatedMigrationOptions } from '../../src/io/migration/simulatedMigration.js';

/** The committed fixture journals and the runs that recorded them. */
export const FIXTURES: Array<{ file: string; options: SimulatedMigrationOptions }> = [
  { file: 'plain-seq.journal', options: { sizeBytes: 1 << 20, vcpus: 2, workload: 'sequential-increment', seed: 11 } },
  { file: 'preempt-random-break.journal', options: { sizeBytes: 1 << 20, vcpus: 2, workload: 'random', seed: 12, preempt: true, breakAt: 0.3 } },
  { file: 'hugepage-hotset-break.journal', options: { sizeBytes: 8 << 20, hostPageSize: 2 << 20, vcpus: 3, workload: 'hot-set', seed: 13, breakAt: 0.5 } },
];

/** test/replay/fixtures in the source tree (tests run from dist/test/replay). */
export function fixtureDir(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'replay', 'fixtures');
}
