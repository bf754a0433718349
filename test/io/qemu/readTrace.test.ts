/** Streaming reader: plain and gzip files, problems, refusals, progress; the real captures. */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { NotATraceError } from '../../../src/errors.js';
import { MAX_LINE_CHARS, MAX_UNKNOWN_NAMES, OTHER_UNKNOWN, readTrace, type TraceProgress } from '../../../src/io/qemu/qemuTrace.js';
import type { TraceEvent } from '../../../src/engine/qemuTraceEvents.js';
import { loadThreadsJson, parseThreadsJson, vcpuCountOf, vcpuIndexByTid, vcpuIndexOfName } from '../../../src/io/qemu/qemuThreads.js';
import { fixture } from '../../fixtures.js';
import { scratchDir } from '../../scratchDir.js';

const dir = scratchDir('qemu-trace-test-');
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function tempFile(content: string | Buffer, ext = '.log'): string {
  const path = join(dir, `t${++fileCount}${ext}`);
  writeFileSync(path, content);
  return path;
}

const SAMPLE = [
  '15773@1795337947.661428:loadvm_process_command com=POSTCOPY_ADVISE len=16',
  '15773@1795337947.661432:loadvm_postcopy_handle_advise ',
  '15864@1795337949.624891:postcopy_ram_fault_thread_request Request for HVA=0x7ffa19734000 rb=pc.ram offset=0xd934000 pid=15784',
  '',
  '15865@1795337949.547786:postcopy_place_page host=oops',
  '15865@1795337949.547790:vhost_user_thing a=1',
  '15865@1795337949.547791:vhost_user_thing a=2',
  '15865@1795337949.547786:postcopy_place_page host=0x7ffa0bf64000',
].join('\n');

async function collect(path: string, opts = {}): Promise<{ events: TraceEvent[]; summary: Awaited<ReturnType<typeof readTrace>> }> {
  const events: TraceEvent[] = [];
  const summary = await readTrace(path, (e) => events.push(e), opts);
  return { events, summary };
}

test('plain and gzip files give the same events in file order, with line numbers', async (t) => {
  const plain = await collect(tempFile(SAMPLE + '\n'));
  const gz = await collect(tempFile(gzipSync(SAMPLE + '\n'), '.log.gz'));
  t.deepEqual(
    plain.events.map((e) => [e.line, e.kind]),
    [
      [1, 'loadvm_process_command'],
      [2, 'loadvm_postcopy_handle_advise'],
      [3, 'postcopy_ram_fault_thread_request'],
      [8, 'postcopy_place_page'],
    ],
  );
  t.deepEqual(gz.events, plain.events);
  t.false(plain.summary.compressed);
  t.true(gz.summary.compressed);
  t.is(plain.summary.lines, 8);
  t.true(plain.summary.timed);
});

test('unknown events are counted by name; malformed lines are reported with their line number and the import goes on', async (t) => {
  const problems: number[] = [];
  const { events, summary } = await collect(tempFile(SAMPLE), { onProblem: (p: { line: number }) => problems.push(p.line) });
  t.deepEqual(summary.unknown, { vhost_user_thing: 2 });
  t.is(summary.malformedCount, 1);
  t.like(summary.malformed[0], { line: 5, problem: 'malformed', name: 'postcopy_place_page' });
  t.deepEqual(problems, [5, 6, 7]);
  t.is(events.at(-1)!.line, 8); // the last line has no newline and still counts
});

test('the only filter delivers the listed events and counts the others as skipped', async (t) => {
  const { events, summary } = await collect(tempFile(SAMPLE), { only: ['postcopy_place_page'] });
  t.deepEqual(
    events.map((e) => e.kind),
    ['postcopy_place_page'],
  );
  t.is(summary.skipped, 3);
});

test('a file that is not a trace is refused with NotATraceError naming it', async (t) => {
  const readme = fixture('README.md');
  const err = await t.throwsAsync(collect(readme), { instanceOf: NotATraceError });
  t.true(err!.message.includes(readme));
  t.is(err!.file, readme);
  await t.throwsAsync(collect(tempFile('')), { instanceOf: NotATraceError, message: /no lines/ });
  await t.throwsAsync(collect(tempFile(randomBytes(300_000))), { instanceOf: NotATraceError });
  await t.throwsAsync(collect(tempFile(gzipSync('hello\nworld\n'), '.gz')), { instanceOf: NotATraceError });
  const corrupt = Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(1000)]);
  await t.throwsAsync(collect(tempFile(corrupt, '.gz')), { instanceOf: NotATraceError, message: /gzip/ });
});

test('the refusal looks only at the first non-empty lines: a trace after 50 lines of noise is refused', async (t) => {
  const noise = Array.from({ length: 60 }, (_, i) => `noise line ${i}`).join('\n');
  await t.throwsAsync(collect(tempFile(noise + '\n' + SAMPLE)), { instanceOf: NotATraceError, message: /first 50/ });
  const some = Array.from({ length: 10 }, (_, i) => `noise line ${i}`).join('\n');
  const { summary } = await collect(tempFile(some + '\n' + SAMPLE));
  t.is(summary.events, 4);
  t.is(summary.malformedCount, 11); // ten noise lines and the malformed placement
});

test('a line longer than the cap is reported and dropped; the lines after it parse', async (t) => {
  const long = 'x'.repeat(MAX_LINE_CHARS + 10);
  const { events, summary } = await collect(tempFile(SAMPLE + '\n' + long + '\n' + SAMPLE));
  t.is(events.length, 8);
  t.is(summary.malformedCount, 3);
  t.is(summary.lines, 17);
  t.like(summary.malformed[1], { line: 9, problem: 'not-trace' });
  t.regex(summary.malformed[1]!.text, /longer than/);
});

test('unknown event names are counted one by one up to a bound, then together', async (t) => {
  const lines = Array.from({ length: MAX_UNKNOWN_NAMES + 5 }, (_, i) => `1@1795337949.000001:unknown_event_${i} x`);
  lines.unshift('1@1795337949.000001:__proto__ x', '1@1795337949.000001:toString x');
  const { summary } = await collect(tempFile(SAMPLE + '\n' + lines.join('\n')));
  t.is(Object.keys(summary.unknown).length, MAX_UNKNOWN_NAMES + 1);
  // vhost_user_thing, __proto__ and toString took three places first.
  t.is(summary.unknown[OTHER_UNKNOWN], MAX_UNKNOWN_NAMES + 5 - (MAX_UNKNOWN_NAMES - 3));
  t.is(summary.unknown['vhost_user_thing'], 2);
  t.true(Object.hasOwn(summary.unknown, '__proto__'));
  t.is(summary.unknown['toString'], 1);
});

test('a truncated gzip keeps what was read and says so', async (t) => {
  const text = readFileSync(fixture('fail', 'dst-trace.log.gz'));
  const cut = tempFile(text.subarray(0, text.length - 5000), '.log.gz');
  const { events, summary } = await collect(cut);
  t.true(summary.truncated !== null);
  t.true(events.length > 1000);
});

test('progress: bytes read grow to the file size', async (t) => {
  const path = fixture('fail', 'dst-trace.log.gz');
  const seen: TraceProgress[] = [];
  const { summary } = await collect(path, { onProgress: (p: TraceProgress) => seen.push(p) });
  t.true(seen.length > 0);
  for (let i = 1; i < seen.length; i++) t.true(seen[i]!.bytesRead >= seen[i - 1]!.bytesRead);
  t.is(seen.at(-1)!.bytesRead, summary.totalBytes);
  t.is(seen.at(-1)!.totalBytes, summary.totalBytes);
});

test('every line of every capture parses: no unknown event, no malformed line', async (t) => {
  for (const run of ['plain', 'preempt', 'fail']) {
    for (const side of ['dst', 'src']) {
      const { summary } = await collect(fixture(run, `${side}-trace.log.gz`), { only: [] });
      t.is(summary.malformedCount, 0, `${run}/${side}`);
      t.deepEqual(summary.unknown, {}, `${run}/${side}`);
      t.is(summary.skipped, summary.lines, `${run}/${side}`);
    }
  }
});

test('plain capture: event counts match the README tables', async (t) => {
  const counts: Record<string, number> = {};
  const summary = await readTrace(fixture('plain', 'dst-trace.log.gz'), (e) => {
    counts[e.kind] = (counts[e.kind] ?? 0) + 1;
  });
  t.is(summary.events, summary.lines);
  t.is(counts['postcopy_ram_fault_thread_request'], 2616);
  t.is(counts['postcopy_page_req_add'], 1344);
  t.is(counts['ram_load_postcopy_loop'], 61200);
});

test('threads.json: vCPU names map fault pids to vCPU indexes, as the begin lines confirm', async (t) => {
  const threads = await loadThreadsJson(fixture('plain', 'threads.json'));
  const byTid = vcpuIndexByTid(threads.dst);
  t.is(byTid.get(15782), 0);
  t.is(byTid.get(15784), 1);
  t.is(vcpuCountOf(threads.dst), 2);
  t.deepEqual(threads.dst.get(15864), ['fault-default']);
  // Each fault request is followed, in the fault thread, by the begin of the same fault.
  let pending = -1;
  let checked = 0;
  await readTrace(
    fixture('plain', 'dst-trace.log.gz'),
    (e) => {
      if (e.kind === 'postcopy_ram_fault_thread_request') pending = byTid.get(e.pid) ?? -2;
      else if (e.kind === 'mark_postcopy_blocktime_begin') {
        t.is(e.cpu, pending);
        checked++;
      }
    },
    { only: ['postcopy_ram_fault_thread_request', 'mark_postcopy_blocktime_begin'] },
  );
  t.is(checked, 2616);
});

test('vCPU thread names and bad threads.json files', (t) => {
  t.is(vcpuIndexOfName('CPU 12/TCG'), 12);
  t.is(vcpuIndexOfName('CPU 0/KVM'), 0);
  t.is(vcpuIndexOfName('CPU x/KVM'), -1);
  t.is(vcpuIndexOfName('fault-default'), -1);
  t.throws(() => parseThreadsJson('{', 'x.json'), { instanceOf: NotATraceError, message: /x\.json/ });
  t.throws(() => parseThreadsJson('{"dst": {"abc": {}}}', 'y.json'), { instanceOf: NotATraceError, message: /abc/ });
  const renamed = parseThreadsJson('{"src": {"16725": {"comm": "return path", "names": ["qemu-system-x86", "return path"]}}}', 'z');
  t.deepEqual(renamed.src.get(16725), ['return path', 'qemu-system-x86']);
  t.is(renamed.dst.size, 0);
});
