/**
 * Records the replay fixtures: small journals of seeded simulated migrations. Run by
 * hand (`node dist/test/replay/recordFixtures.js`) only when the journal format or the
 * engine's behaviour changes on purpose; the committed files are the guard against
 * accidental nondeterminism, so regenerating them must be a deliberate, reviewed change.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { runSimulatedMigration } from '../../src/io/migration/simulatedMigration.js';
import { FIXTURES, fixtureDir } from './fixtureList.js';

for (const f of FIXTURES) {
  const path = join(fixtureDir(), f.file);
  rmSync(path, { force: true });
  const r = runSimulatedMigration({ ...f.options, journalPath: path, verifyReplay: true });
  console.log(`${f.file}: ${r.records} events, ${r.status}, memory ${r.verified ? 'verified' : 'MISMATCH'}, replay ${r.replay?.ok ? 'ok' : r.replay?.message}`);
}
