import test from 'ava';
import { JournalReader } from '../../../src/journal/journalReader.js';
import { runSimulatedMigration, SimulationScratch, type SimulatedMigrationOptions } from '../../../src/io/migration/simulatedMigration.js';
import { scratchDir } from '../../scratchDir.js';

/** Every event of a journal, payloads as hex (what a run recorded, the meta's creation time aside). */
function eventsOf(path: string): string[] {
  const reader = JournalReader.open(path);
  try {
    return [...reader.records()].map((e) => `${e.seq} ${e.kind} ${e.t} ${e.cause} ${e.block} ${e.offset} ${e.a} ${e.b} ${e.payload === null ? '-' : Buffer.from(e.payload).toString('hex')}`);
  } finally {
    reader.close();
  }
}

const run = (o: Partial<SimulatedMigrationOptions> & { journalPath: string }): ReturnType<typeof runSimulatedMigration> =>
  runSimulatedMigration({ sizeBytes: 8 << 20, vcpus: 2, workload: 'random', seed: 7, preempt: true, breakAt: 0.4, prefetchPages: 8, verifyReplay: false, ...o });

test('a run without the memory check (and with reused scratch memory) writes the same journal as a verified run', (t) => {
  const dir = scratchDir('pcsim-verify-');
  const verified = run({ journalPath: `${dir}/verified.db` });
  t.true(verified.verified, 'memory checked page for page');
  t.deepEqual(verified.mismatches, []);

  const scratch = new SimulationScratch();
  // A larger run first, so the second one gets a buffer and chunks that held another guest.
  run({ sizeBytes: 16 << 20, seed: 99, workload: 'sequential-increment', journalPath: `${dir}/other.db`, scratch, verifyMemory: false });
  const unverified = run({ journalPath: `${dir}/unverified.db`, scratch, verifyMemory: false });
  t.is(unverified.records, verified.records);
  t.is(unverified.status, 'completed');
  t.deepEqual(unverified.mismatches, [], 'nothing compared, nothing reported');
  const a = eventsOf(`${dir}/verified.db`);
  t.true(a.length > 1000);
  t.deepEqual(eventsOf(`${dir}/unverified.db`), a);
});

test('a run on reused scratch memory still verifies page for page', (t) => {
  const dir = scratchDir('pcsim-scratch-');
  const scratch = new SimulationScratch();
  for (const [seed, sizeBytes] of [[3, 16 << 20], [4, 8 << 20], [5, 8 << 20]] as const) {
    const r = run({ seed, sizeBytes, journalPath: `${dir}/run-${seed}.db`, scratch, verifyReplay: true });
    t.true(r.verified, `seed ${seed}: memory checked page for page (${r.mismatches.join(', ')})`);
    t.is(r.replay?.ok, true, r.replay?.message);
  }
  t.true(scratch.chunkPool.pooledBytes >= 8 << 20, 'the chunks went back to the pool for the next run');
});
