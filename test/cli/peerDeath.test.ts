import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runMigration, type MigrateCommandOptions, type MigrateResult } from '../../src/cli/migrateCommand.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import type { SourceMessage } from '../../src/io/migration/migrationSource.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { scratchDir } from '../scratchDir.js';
import { seededRandom } from '../../src/io/backends/accessPatterns.js';

/**
 * A process of `migrate` that dies never hangs the run: real child processes, real
 * sockets on 127.0.0.1, real userfaultfd (where the host allows), SIGKILL from outside
 * (not the --kill-source-at path). The time bound is only a hang guard with a wide
 * margin; the measured latencies are logged.
 */

/** No exit this long after a kill is a hang (the promise is 5 s; this guard is generous). */
const HANG_GUARD_MS = 15_000;

function options(extra: Partial<MigrateCommandOptions> = {}): MigrateCommandOptions & { journal: string } {
  return {
    size: '32M', vcpus: '2', workload: 'sequential-increment', bandwidth: '0', dirtyRate: '20000',
    journal: join(scratchDir('pcdeath-'), 'dst.journal'), backend: 'auto', faultReader: 'loop', seed: '7', quiet: true, ...extra,
  };
}


/** Runs a migration, SIGKILLs one child when `arm` says so, and times the run's end from the kill. */
async function runAndKill(o: MigrateCommandOptions, who: 'source' | 'destination', arm: (child: ChildProcess, kill: () => void) => void): Promise<{ r: MigrateResult; killed: boolean; exitAfterKillMs: number }> {
  let killedAt = 0;
  let killed = false;
  let guard: NodeJS.Timeout | undefined;
  const run = runMigration(o, {
    onSpawn: (role, child) => {
      if (role !== who) return;
      arm(child, () => {
        if (killedAt !== 0 || child.exitCode !== null || child.signalCode !== null) return;
        killedAt = Date.now();
        killed = child.kill('SIGKILL');
      });
    },
  });
  const hang = new Promise<never>((_, reject) => {
    const poll = setInterval(() => {
      if (killedAt !== 0 && Date.now() - killedAt > HANG_GUARD_MS) reject(new Error(`migrate did not exit within ${HANG_GUARD_MS} ms of the ${who}'s death`));
    }, 100);
    guard = poll;
  });
  try {
    const r = await Promise.race([run, hang]);
    return { r, killed, exitAfterKillMs: killedAt ? Date.now() - killedAt : -1 };
  } finally {
    clearInterval(guard);
  }
}

function journalReadable(path: string): { events: number; error: string | null } {
  const j = JournalReader.open(path);
  try {
    const p = j.readablePrefix();
    return { events: p.events, error: p.error?.message ?? null };
  } finally {
    j.close();
  }
}

test.serial('the destination SIGKILLed at 10 random moments: migrate exits each time, names the destination, and its journal reads up to its last event', async (t) => {
  const seed = Number(process.env.KILL_SEED ?? Date.now() % 1_000_000);
  console.log(`[peer death] destination kill moments: seed ${seed} (KILL_SEED=${seed} repeats them)`);
  t.log(`seed ${seed}`);
  const random = seededRandom(seed);
  const latencies: number[] = [];
  const phases: string[] = [];
  // A capped wire stretches precopy and postcopy. A wall-clock moment means a different
  // phase on a loaded machine, so the moments are drawn in the migration's own progress:
  // one in five early (a delay after the destination starts: setup), the others once the
  // destination has received a random share of the pages (precopy, around the switch and
  // LISTEN, postcopy), plus up to 100 ms.
  const extra = { bandwidth: '32M' };
  for (let i = 0; i < 10; i++) {
    const early = random() < 0.2;
    const delay = Math.round(30 + random() * (early ? 800 : 100));
    // The last pages are received around the switch and in postcopy (discard clears the dirty ones): half the draws go there.
    const share = early ? 0 : random() < 0.5 ? random() * 0.85 : 0.85 + random() * 0.149;
    const moment = early ? `${delay} ms after the start` : `${(share * 100).toFixed(1)}% of the pages received + ${delay} ms`;
    const o = options(extra);
    const { r, killed, exitAfterKillMs } = await runAndKill(o, 'destination', (child, kill) => {
      if (early) return void setTimeout(kill, delay);
      let armed = false;
      child.on('message', (m: { type: string; received?: number; total?: number }) => {
        if (!armed && m.type === 'progress' && m.received! >= share * m.total!) {
          armed = true;
          setTimeout(kill, delay);
        }
      });
    });
    if (!killed) {
      t.is(r.exitCode, 0, `run ${i}: finished before the kill at ${moment}: ${r.message}`);
      t.log(`run ${i}: kill at ${moment} came after the end (exit 0)`);
      continue;
    }
    latencies.push(exitAfterKillMs);
    phases.push(r.death?.phase ?? '?');
    t.is(r.exitCode, 1, `run ${i} (kill at ${moment}): ${r.message}`);
    t.is(r.death?.who, 'destination', r.message);
    t.regex(r.message, /^the destination \(pid \d+\) died \(SIGKILL\) during [^,]+, \d+ ms after the start/);
    t.false(r.message.includes('\n'), 'one line');
    if (existsSync(o.journal)) {
      t.regex(r.message, /journal holds what it committed plus its crash tail/);
      const j = journalReadable(o.journal);
      t.is(j.error, null, `run ${i}: the journal of a killed destination reads without error`);
      t.log(`run ${i}: kill at ${moment}, ${r.death!.phase}: exit ${r.exitCode} ${exitAfterKillMs} ms after the kill; journal ${j.events} events`);
    } else {
      t.regex(r.message, /before it created its journal/);
      t.log(`run ${i}: kill at ${moment}, ${r.death!.phase}: exit ${r.exitCode} ${exitAfterKillMs} ms after the kill; no journal yet`);
    }
  }
  latencies.sort((a, b) => a - b);
  console.log(`[peer death] ${latencies.length} of 10 kills landed before the end; migrate exit after the destination's SIGKILL (ms): ${latencies.join(', ')} (seed ${seed}); phases: ${phases.join('; ')}`);
});

/** Kills the source once `when` says so (from its messages); never the migrate's own --kill-source-at. */
const sourceCases: Array<{ name: string; extra: Partial<MigrateCommandOptions>; when: (m: SourceMessage | null) => boolean; code: number; pattern: RegExp }> = [
  {
    name: 'before it connects (setup)',
    extra: {},
    when: (m) => m === null,
    code: 1,
    pattern: /^the source \(pid \d+\) died \(SIGKILL\) during setup[^,]*, \d+ ms after the start: the migration failed/,
  },
  {
    name: 'during precopy',
    extra: { bandwidth: '16M' }, // precopy of 32 MiB takes about 2 s
    when: (m) => m?.type === 'phase' && m.phase === 'precopy',
    code: 1,
    pattern: /^the source \(pid \d+\) died \(SIGKILL\) during precopy, \d+ ms after the start: the migration failed/,
  },
  {
    name: 'during postcopy, the destination listening',
    extra: { size: '64M' },
    when: (m) => m?.type === 'progress' && m.destinationListening && m.sentFraction >= 0.2,
    code: 3,
    pattern: /^the source \(pid \d+\) died \(SIGKILL\) during postcopy[^,]*, \d+ ms after the start: the destination stays postcopy-paused with \d+ outstanding page requests/,
  },
];

for (const c of sourceCases) {
  test.serial(`the source SIGKILLed ${c.name}: exit ${c.code}, one line naming the source, the destination's journal complete`, async (t) => {
    const o = options(c.extra);
    const { r, killed, exitAfterKillMs } = await runAndKill(o, 'source', (child, kill) => {
      if (c.when(null)) return kill();
      child.on('message', (m: SourceMessage) => c.when(m) && setTimeout(kill, m.type === 'phase' ? 300 : 0));
    });
    t.true(killed, 'the kill happened');
    t.is(r.exitCode, c.code, r.message);
    t.is(r.death?.who, 'source');
    t.regex(r.message, c.pattern);
    t.false(r.message.includes('\n'), 'one line');
    const j = journalReadable(o.journal);
    t.is(j.error, null);
    if (c.code === 3) t.true(j.events > 0);
    t.log(`exit ${r.exitCode} ${exitAfterKillMs} ms after the kill: ${r.message}`);
    console.log(`[peer death] source killed ${c.name}: migrate exit ${exitAfterKillMs} ms after the kill`);
  });
}

test.serial('the migrate process SIGKILLed: its children stop by themselves (IPC gone), the journal closed cleanly', async (t) => {
  const dir = scratchDir('pcparent-');
  const journal = join(dir, 'p.db');
  const parent = spawn(process.execPath, [join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js'), 'migrate', '--size', '64M', '--bandwidth', '32M', '--journal', journal], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  parent.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  // Until the migration moves (progress lines name a PostcopyState past NONE), then a little more.
  const deadline = Date.now() + 60_000;
  while (!/phase=(ADVISE|LISTENING|RUNNING)/.test(stderr) && Date.now() < deadline) await sleep(50);
  await sleep(300);
  const kids = readFileSync(`/proc/${parent.pid}/task/${parent.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  t.true(kids.length >= 1, 'the destination (and the source) run');
  parent.kill('SIGKILL');
  const killedAt = Date.now();
  const running = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  };
  while (kids.some(running)) {
    if (Date.now() - killedAt > HANG_GUARD_MS) {
      for (const k of kids) if (running(k)) process.kill(k, 'SIGKILL');
      t.fail(`children still running ${HANG_GUARD_MS} ms after the migrate process died`);
      return;
    }
    await sleep(50);
  }
  const ms = Date.now() - killedAt;
  console.log(`[peer death] migrate process killed: its ${kids.length} children ended ${ms} ms later`);
  const j = journalReadable(journal);
  t.is(j.error, null);
  t.true(j.events > 0);
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
