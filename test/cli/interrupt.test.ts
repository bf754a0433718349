import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { JournalReader } from '../../src/journal/journalReader.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { fixture } from '../fixtures.js';
import { scratchDir } from '../scratchDir.js';

/**
 * A real Ctrl-C on a real terminal: each command runs on a pseudo-terminal (test/cli/ttyRun.py,
 * Python's pty module) and gets SIGINT mid-run, once its progress bar shows a given point.
 */

const CLI = join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js');
const TTY_RUN = join(PACKAGE_ROOT, 'test', 'cli', 'ttyRun.py');
/** What the progress bar turned off, turned back on: the cursor shown, line wrap on. */
const RESTORED = '\x1b[?25h\x1b[?7h';

interface TtyRun {
  output: string;
  exitCode: number;
  signalledAt: number | null;
}

function ttyRun(pattern: string, args: string[], timeoutS = 120): Promise<TtyRun> {
  return new Promise((resolve, reject) => {
    execFile('python3', [TTY_RUN, pattern, String(timeoutS), process.execPath, CLI, ...args], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ttyRun.py failed: ${err.message} ${stderr}`));
      else resolve(JSON.parse(stdout) as TtyRun);
    });
  });
}

test.serial('Ctrl-C during import-qemu: exit 130, one line, the cursor restored, and the partial journal removed', async (t) => {
  const dir = scratchDir('pcint-');
  const out = join(dir, 'plain.db');
  const r = await ttyRun('pass 2/2 \\| [1-9]', ['import-qemu', fixture('plain', 'dst-trace.log.gz'), '-o', out]);
  t.not(r.signalledAt, null, 'the import reached pass 2 and was interrupted there');
  t.is(r.exitCode, 130, r.output.slice(-400));
  const after = r.output.slice(r.signalledAt!);
  t.regex(after, /postcopy import-qemu: interrupted \(SIGINT\): the partial journal .*plain\.db\.importing was removed/);
  t.true(after.includes(RESTORED), 'the cursor and line wrap are restored after the last bar');
  t.false(/\[[^\]]*\] \d+%/.test(after.slice(after.lastIndexOf(RESTORED))), 'no bar is drawn after the restore');
  t.deepEqual(readdirSync(dir).filter((f) => f.startsWith('plain.db')), [], 'no journal, WAL or shared-memory file is left');
});

test.serial('Ctrl-C during import-qemu --force over an older journal leaves that journal as it was', async (t) => {
  const dir = scratchDir('pcint-');
  const out = join(dir, 'plain.db');
  const first = await ttyRun('(?!)', ['import-qemu', fixture('preempt', 'dst-trace.log.gz'), '-o', out, '--quiet']);
  t.is(first.exitCode, 0);
  const before = readFileSync(out);
  // Interrupted while it writes (pass 2): the older journal is replaced only by a whole import.
  const r = await ttyRun('pass 2/2 \\| [1-9]', ['import-qemu', fixture('plain', 'dst-trace.log.gz'), '-o', out, '--force']);
  t.is(r.exitCode, 130);
  t.regex(r.output.slice(r.signalledAt!), /plain\.db\.importing was removed; .*plain\.db is as it was/);
  t.deepEqual(readdirSync(dir).sort(), ['plain.db'], 'no partial file is left');
  t.true(existsSync(out), 'the older journal is still there');
  t.true(readFileSync(out).equals(before), 'unchanged, byte for byte');
});

test.serial('Ctrl-C during migrate: exit 130, the cursor restored, both processes of the migration end, the journal stays readable', async (t) => {
  const dir = scratchDir('pcint-');
  const journal = join(dir, 'm.db');
  const r = await ttyRun('migrate (LISTENING|RUNNING) \\[\\S+\\] [1-9]', ['migrate', '--size', '64M', '--bandwidth', '32M', '--journal', journal]);
  t.not(r.signalledAt, null, 'the migration reached postcopy and was interrupted there');
  t.is(r.exitCode, 130, r.output.slice(-400));
  const after = r.output.slice(r.signalledAt!);
  t.regex(after, /postcopy migrate: interrupted \(SIGINT\)/);
  t.true(after.includes(RESTORED));
  const deadline = Date.now() + 15_000;
  const children = (): string[] =>
    readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(journal);
      } catch {
        return false;
      }
    });
  while (children().length > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  t.deepEqual(children(), [], 'no process of the migration is left');
  const j = JournalReader.open(journal);
  try {
    t.true(j.eventCount() > 0, 'what was journaled is there');
  } finally {
    j.close();
  }
});
