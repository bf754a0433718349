import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { formatBytes, refuseGuestTooLarge } from '../../src/cli/options.js';
import { chooseJournal, freshPath, sameFile } from '../../src/cli/outputs.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { scratchDir } from '../scratchDir.js';

/**
 * The `postcopy` command as a user runs it (a real process): one exit-code table, no
 * output that destroys an input or an earlier run's journal, sizes the machine cannot
 * hold refused up front, and no stack trace for a bug.
 */

const MAIN = join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js');

function postcopy(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { cwd: opts.cwd ?? scratchDir('pccli-'), env: { ...process.env, POSTCOPY_DEBUG: '', POSTCOPY_INJECT_INTERNAL_ERROR: '', ...opts.env }, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A small real journal (a simulated migration), in `dir`. */
function journalIn(dir: string, name = 'j.db'): string {
  const r = postcopy(['simulate', '--size', '4M', '--journal', name, '--json'], { cwd: dir });
  if (r.code !== 0) throw new Error(`simulate failed: ${r.stderr}`);
  return join(dir, name);
}

test('commander\'s own errors exit 2 (unknown option, missing argument, bad choice, unknown command); --help and --version exit 0', (t) => {
  for (const args of [['migrate', '--bogus'], ['replay'], ['migrate', '--workload', 'nope'], ['nope'], ['report']]) {
    const r = postcopy(args);
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, /^error: /m);
  }
  const help = postcopy(['migrate', '--help']);
  t.is(help.code, 0);
  t.regex(help.stdout, /Exit codes \(every command\):\n {2}0 {2}done[^\n]*\n {2}1 {2}negative verdict[^\n]*\n {2}2 {2}usage error[\s\S]* {2}3 {2}left paused[^\n]*\n {2}4 {2}internal error/);
  t.regex(postcopy(['--help']).stdout, /Exit codes/);
  t.is(postcopy(['--version']).code, 0);
});

test('an internal error is one line naming the command and the journal, exit 4, no stack (POSTCOPY_DEBUG=1 adds it)', (t) => {
  for (const mode of ['throw', 'async']) {
    const r = postcopy(['inspect', 'some.db'], { env: { POSTCOPY_INJECT_INTERNAL_ERROR: mode } });
    t.is(r.code, 4, mode);
    t.is(r.stderr, 'postcopy inspect: internal error: injected internal error (POSTCOPY_INJECT_INTERNAL_ERROR) (journal: some.db)\n', mode);
  }
  const debug = postcopy(['simulate'], { env: { POSTCOPY_INJECT_INTERNAL_ERROR: 'throw', POSTCOPY_DEBUG: '1' } });
  t.is(debug.code, 4);
  t.regex(debug.stderr, /^postcopy simulate: internal error: injected internal error/);
  t.regex(debug.stderr, /\n\s+at /, 'the stack, asked for');
});

test('report never writes over its journal: the same path, another spelling, a link either way (exit 2, the journal unchanged)', (t) => {
  const dir = scratchDir('pcout-');
  const journal = journalIn(dir);
  const before = readFileSync(journal);
  symlinkSync('j.db', join(dir, 'link.db'));
  for (const [input, output] of [['j.db', 'j.db'], ['j.db', `./../${dir.split('/').pop()}/j.db`], ['j.db', 'link.db'], ['link.db', 'j.db'], [journal, journal]]) {
    const r = postcopy(['report', input!, '-o', output!], { cwd: dir });
    t.is(r.code, 2, `${input} -o ${output}`);
    t.regex(r.stderr, /^postcopy report: -o .* is the journal this report reads .*: writing it would destroy the input/);
    t.is(r.stderr.trim().split('\n').length, 1, 'one line');
  }
  t.deepEqual(readFileSync(journal), before, 'the journal is untouched');
  t.is(postcopy(['report', 'j.db', '-o', 'r.html'], { cwd: dir }).code, 0, 'another output is fine');
});

test('import-qemu never writes over its trace, even with --force (exit 2, the trace unchanged)', (t) => {
  const dir = scratchDir('pcimp-');
  const trace = join(dir, 'tr.gz');
  writeFileSync(trace, 'not really a trace');
  writeFileSync(join(dir, 'src.log'), 'source');
  symlinkSync('tr.gz', join(dir, 'tr-link.gz'));
  for (const args of [['tr.gz', '-o', 'tr.gz', '--force'], ['tr.gz', '-o', 'tr-link.gz', '--force'], ['tr.gz', '--src', 'src.log', '-o', 'src.log', '--force']]) {
    const r = postcopy(['import-qemu', ...args], { cwd: dir });
    t.is(r.code, 2, args.join(' '));
    t.regex(r.stderr, /^postcopy import-qemu: -o .* is the (destination|--src) trace/);
  }
  t.is(readFileSync(trace, 'utf8'), 'not really a trace');
  t.is(readFileSync(join(dir, 'src.log'), 'utf8'), 'source');
  const json = postcopy(['import-qemu', 'tr.gz', '-o', 'tr.gz', '--json'], { cwd: dir });
  t.is(json.code, 2);
  t.like(JSON.parse(json.stdout), { ok: false, code: 'USAGE' });
});

test('migrate keeps an earlier run\'s journal: an existing --journal is refused without --force, a default run takes the next free name and says so', (t) => {
  const dir = scratchDir('pcjrn-');
  writeFileSync(join(dir, 'mine.db'), 'an earlier journal');
  writeFileSync(join(dir, 'postcopy-journal.db'), 'the default journal of an earlier run');
  const refused = postcopy(['migrate', '--size', '16M', '--journal', 'mine.db'], { cwd: dir });
  t.is(refused.code, 2);
  t.is(refused.stderr, 'postcopy migrate: --journal mine.db already exists: it may be an earlier run\'s journal; choose another path, or add --force to replace it\n');
  t.is(readFileSync(join(dir, 'mine.db'), 'utf8'), 'an earlier journal');
  const fresh = postcopy(['migrate', '--size', '16M'], { cwd: dir });
  t.is(fresh.code, 0, fresh.stderr);
  t.regex(fresh.stderr, /note: postcopy-journal\.db exists \(an earlier run's journal, kept\): this run's journal is .*postcopy-journal-2\.db/);
  t.regex(fresh.stdout, /journal: +.*postcopy-journal-2\.db \([\d,]+ events\)/);
  t.is(readFileSync(join(dir, 'postcopy-journal.db'), 'utf8'), 'the default journal of an earlier run');
  t.true(existsSync(join(dir, 'postcopy-journal-2.db')));
});

test('start and simulate keep an earlier journal too; --force replaces it', (t) => {
  const dir = scratchDir('pcjrn2-');
  writeFileSync(join(dir, 'x.db'), 'earlier');
  t.is(postcopy(['start', '--size', '16M', '--journal', 'x.db'], { cwd: dir }).code, 2);
  t.is(postcopy(['simulate', '--size', '4M', '--journal', 'x.db'], { cwd: dir }).code, 2);
  t.is(readFileSync(join(dir, 'x.db'), 'utf8'), 'earlier');
  journalIn(dir, 'postcopy-sim.db');
  const r = postcopy(['simulate', '--size', '4M'], { cwd: dir });
  t.is(r.code, 0);
  t.regex(r.stdout, /journal: +.*postcopy-sim-2\.db/);
  t.is(postcopy(['simulate', '--size', '4M', '--journal', 'x.db', '--force'], { cwd: dir }).code, 0);
  t.not(readFileSync(join(dir, 'x.db')).subarray(0, 6).toString(), 'earlie', 'replaced, as asked');
});

test('a --journal in a missing folder: one line, exit 2, no stack, nothing started', (t) => {
  for (const cmd of ['migrate', 'simulate']) {
    const r = postcopy([cmd, '--size', '16M', '--journal', '/nonexistent/dir/j.db']);
    t.is(r.code, 2, cmd);
    t.is(r.stderr, `postcopy ${cmd}: --journal /nonexistent/dir/j.db: the folder /nonexistent/dir does not exist\n`);
  }
});

test('--size 1T is refused up front with the numbers, for migrate and simulate (exit 2, nothing created)', (t) => {
  const dir = scratchDir('pcsize-');
  const physical = formatBytes(totalmem());
  const m = postcopy(['migrate', '--size', '1T'], { cwd: dir });
  t.is(m.code, 2);
  t.is(m.stderr, `postcopy migrate: --size 1T needs 2 TiB of memory (the source and the destination each hold the guest: 2 × 1 TiB), but this machine has ${physical} of physical memory\n`);
  const s = postcopy(['simulate', '--size', '1T'], { cwd: dir });
  t.is(s.code, 2);
  t.regex(s.stderr, new RegExp(`^postcopy simulate: --size 1T needs 4 TiB of memory \\(.*: 4 × 1 TiB\\), but this machine has ${physical.replace('.', '\\.')} of physical memory\\n$`));
  t.deepEqual(readdirSync(dir), [], 'no journal, nothing');
});

test('the size bound: copies × size against physical memory, then the largest Node buffer', (t) => {
  t.notThrows(() => refuseGuestTooLarge('1G', 2 ** 30, 2, 'both', 4 * 2 ** 30));
  t.throws(() => refuseGuestTooLarge('3G', 3 * 2 ** 30, 2, 'both', 4 * 2 ** 30), { message: '--size 3G needs 6 GiB of memory (both: 2 × 3 GiB), but this machine has 4 GiB of physical memory' });
  t.throws(() => refuseGuestTooLarge('8G', 8 * 2 ** 30, 2, 'both', 2 ** 40), { message: /larger than the largest buffer Node can allocate/ });
  t.is(formatBytes(25276035072), '23.5 GiB');
});

test('same file after links; fresh names; the journal choice', (t) => {
  const dir = scratchDir('pcsame-');
  const a = join(dir, 'a.db');
  writeFileSync(a, 'a');
  symlinkSync(a, join(dir, 'l.db'));
  t.true(sameFile(a, join(dir, 'l.db')));
  t.true(sameFile(join(dir, '.', 'a.db'), a));
  t.false(sameFile(a, join(dir, 'missing.db')));
  t.is(freshPath(join(dir, 'b.db')), join(dir, 'b.db'));
  writeFileSync(join(dir, 'a-2.db'), '');
  t.is(freshPath(a), join(dir, 'a-3.db'));
  t.throws(() => chooseJournal(a, 'x.db', false), { message: /already exists/ });
  t.is(chooseJournal(a, 'x.db', true).path, a);
  t.throws(() => chooseJournal(dir, 'x.db', true), { message: /is a folder/ });
});
