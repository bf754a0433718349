import test from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArraySink } from '../../src/engine/events.js';
import { TAIL_SUFFIX } from '../../src/journal/schema.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import { replay } from '../../src/journal/replay.js';
import { crashBackend, runCrashWorkload } from './crashWorkload.js';
import { scratchDir } from '../scratchDir.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'crashChild.js');
const KILLS = Number(process.env.CRASH_KILLS ?? 50);

/** Runs the child, kills it with SIGKILL `afterMs` after it is ready; returns the last applied count it reported. */
function killChild(path: string, afterMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | null = null;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (timer === null && out.includes('ready\n')) timer = setTimeout(() => child.kill('SIGKILL'), afterMs);
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (_code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`child ended without being killed: ${err || out.slice(-200)}`));
      const lines = out.split('\n').filter((l) => /^\d+$/.test(l));
      resolve(lines.length ? Number(lines.at(-1)) : 0);
    });
  });
}

function digest(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Deterministic PRNG for the kill points, so a failure names a reproducible delay. */
function delays(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 5 + (s % 250);
  });
}

test.serial(`SIGKILL at ${KILLS} random moments: every applied event is readable on reopen, whole and in order, and reading changes nothing`, async (t) => {
  // The expected records: the workload is deterministic, so run it once to a generous length.
  const expected = new ArraySink();
  runCrashWorkload(crashBackend(), expected, 600_000, () => {});
  const dir = scratchDir('pccrash-');
  for (const [i, ms] of delays(KILLS, 20261123).entries()) {
    const path = join(dir, `crash-${i}.journal`);
    const reported = await killChild(path, ms);
    t.true(existsSync(path + TAIL_SUFFIX), `kill ${i} (${ms} ms): the tail file survives the kill`);
    const before = [digest(path), digest(path + TAIL_SUFFIX)];
    const j = JournalReader.open(path);
    const prefix = j.readablePrefix();
    if (prefix.error) t.fail(`kill ${i} (${ms} ms): ${prefix.error.message}`);
    const count = j.eventCount();
    if (count < reported) t.fail(`kill ${i} (${ms} ms): the child had applied ${reported} events, the journal holds ${count}`);
    if (count > expected.records.length) t.fail(`kill ${i}: journal longer (${count}) than the expected run`);
    let seq = 0;
    for (const r of j.records()) {
      const e = expected.records[seq]!;
      if (r.seq !== seq || r.kind !== e.kind || r.t !== e.t || r.cause !== e.cause || r.block !== e.block || r.offset !== e.offset || r.a !== e.a || r.b !== e.b || Buffer.compare(r.payload ?? Buffer.alloc(0), e.payload ?? Buffer.alloc(0)) !== 0) {
        t.fail(`kill ${i} (${ms} ms): record ${seq} differs from what the engine produced`);
        break;
      }
      seq++;
    }
    t.is(seq, count);
    const r = replay(j);
    if (!r.ok) t.fail(`kill ${i}: replay diverged: ${r.divergence!.message}`);
    j.close();
    // The tail is evidence: reading (and replaying) never folds, rewrites or removes it.
    t.deepEqual([digest(path), digest(path + TAIL_SUFFIX)], before, `kill ${i}: the journal and its tail are unchanged by reading`);
    t.log(`kill ${i}: after ${ms} ms, ${reported} applied, ${count} journaled`);
  }
});
