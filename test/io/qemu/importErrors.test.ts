/**
 * Import errors, through the command line: a file that is not a trace is refused (exit 2,
 * NotATraceError's message); malformed lines are counted with their line numbers and
 * unknown events by name, and the import goes on; an existing journal is not replaced
 * unless asked.
 */
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { NotATraceError } from '../../../src/errors.js';
import { importQemuTrace } from '../../../src/io/qemu/qemuImport.js';
import { analyze, cli, fixture, tmpPath } from '../../forensics/helpers.js';

/** The `fail` capture's lines, with `extra` lines inserted after line `at`. */
function failTraceWith(at: number, extra: string[]): string {
  const lines = gunzipSync(readFileSync(fixture('fail', 'dst-trace.log.gz'))).toString('utf8').split('\n');
  lines.splice(at, 0, ...extra);
  const path = tmpPath('edited.log');
  writeFileSync(path, lines.join('\n'));
  return path;
}

test('a file that is not a QEMU trace: exit 2 with the NotATraceError message, no journal', async (t) => {
  const readme = fixture('README.md');
  const out = tmpPath('readme.db');
  const r = cli('import-qemu', readme, '-o', out);
  t.is(r.status, 2);
  let expected = '';
  await importQemuTrace({ dstTrace: readme, out }).catch((err: unknown) => {
    t.true(err instanceof NotATraceError);
    expected = (err as Error).message;
  });
  t.true(expected.length > 0);
  t.true(r.stderr.includes(expected), r.stderr);
  t.is(cli('inspect', out).status, 2); // nothing was written
});

test('a missing trace or threads file: exit 2 naming it', (t) => {
  const missing = cli('import-qemu', '/nonexistent/trace.log', '-o', tmpPath('x.db'));
  t.is(missing.status, 2);
  t.regex(missing.stderr, /nonexistent\/trace\.log/);
  const threads = cli('import-qemu', fixture('fail', 'dst-trace.log.gz'), '--threads', '/nonexistent/threads.json', '-o', tmpPath('y.db'));
  t.is(threads.status, 2);
  t.regex(threads.stderr, /threads\.json/);
});

test('malformed lines are reported with their line numbers (first 10 + count), unknown events by name (top 10 + count); the import goes on', (t) => {
  const unknown = Array.from({ length: 12 }, (_, i) => Array.from({ length: 12 - i }, () => `16736@1795338029.000001:vfio_thing_${String(i).padStart(2, '0')} x=1`)).flat();
  const malformed = Array.from({ length: 12 }, (_, i) => `16736@1795338029.000002:postcopy_place_page host=bogus${i}`);
  const path = failTraceWith(100, [...unknown, ...malformed]);
  const out = tmpPath('edited.db');
  const r = cli('import-qemu', path, '-o', out);
  t.is(r.status, 0, r.stderr);
  const firstMalformed = 101 + unknown.length;
  t.regex(r.stdout, new RegExp(`12 malformed line\\(s\\)`));
  for (let i = 0; i < 10; i++) t.true(r.stdout.includes(`line ${firstMalformed + i}: postcopy_place_page: `), `line ${firstMalformed + i}`);
  t.false(r.stdout.includes(`line ${firstMalformed + 10}:`));
  t.regex(r.stdout, /\.\.\. and 2 more/);
  t.regex(r.stdout, /78 line\(s\) of 12 unknown event\(s\)/);
  t.regex(r.stdout, /\s12\s+vfio_thing_00/);
  t.false(r.stdout.includes('vfio_thing_10'), 'only the top 10 are listed');
  // The rest of the trace was imported as if nothing happened.
  const a = analyze(out);
  t.is(a.status, 'postcopy-paused');
  t.is(a.blocktime.qemu.totalMs, 626);
  t.is(a.requests.outstanding.length, 2);
});

test('--json prints the import summary with every count', (t) => {
  const path = failTraceWith(50, ['16736@1795338029.000001:vfio_thing x=1', '16736@1795338029.000002:postcopy_place_page host=?']);
  const r = cli('import-qemu', path, '-o', tmpPath('json.db'), '--json');
  t.is(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { dst: { unknown: Record<string, number>; malformedCount: number; malformed: Array<{ line: number }> }; eventsWritten: number };
  t.deepEqual(s.dst.unknown, { vfio_thing: 1 });
  t.is(s.dst.malformedCount, 1);
  t.is(s.dst.malformed[0]!.line, 52);
  t.true(s.eventsWritten > 10_000);
});

test('an existing journal is kept unless --force', (t) => {
  const out = tmpPath('twice.db');
  const trace = fixture('fail', 'dst-trace.log.gz');
  t.is(cli('import-qemu', trace, '-o', out).status, 0);
  const again = cli('import-qemu', trace, '-o', out);
  t.is(again.status, 2);
  t.regex(again.stderr, /already exists/);
  t.is(cli('import-qemu', trace, '-o', out, '--force').status, 0);
});

test('inspect of a file that is not a journal: exit 2 with the JournalError', (t) => {
  const r = cli('inspect', fixture('README.md'));
  t.is(r.status, 2);
  t.regex(r.stderr, /README\.md/);
  t.is(r.stdout, '');
});
