/**
 * Issue 20, point 3: the cause side by side. The `fail` capture imported with the source's
 * trace and QEMU's stderr: the pause carries the source's last line before it, QEMU's
 * error lines are in the analysis at their times, and inspect opens with a verdict and a
 * next step.
 */
import test from 'ava';
import { verdict } from '../../src/forensics/analysisTypes.js';
import { formatAnalysis } from '../../src/cli/inspectCommand.js';
import { parseStderr } from '../../src/io/qemu/qemuImportMapping.js';
import { fixture, importRun } from './helpers.js';

const withCause = () => importRun('fail', { srcTrace: fixture('fail', 'src-trace.log.gz'), stderr: fixture('fail', 'dst-stdout.txt') });

test("fail with --src and --stderr: QEMU's error lines at their times, the source's last line before the pause", async (t) => {
  const { analysis: a, summary } = await withCause();
  t.like(summary.stderr, { lines: 4, untimed: 0 });
  const pause = a.pauses[0]!;
  const footer = a.stderr.find((l) => /Read section footer failed: -5/.test(l.text));
  const io = a.stderr.find((l) => /Detected IO failure for postcopy/.test(l.text));
  t.truthy(footer);
  t.truthy(io);
  t.true(Math.abs(io!.tMs - pause.startMs) < 5, 'QEMU printed it as it paused');
  t.true(footer!.tMs <= io!.tMs);
  t.truthy(pause.sourceLast);
  t.true(pause.sourceLast!.tMs <= pause.startMs);
  t.deepEqual(a.sourceLast, pause.sourceLast, 'nothing from the source after it: the source stopped');
  for (const l of a.stderr) t.true(l.tMs >= 0 && l.tMs <= a.durationMs);
});

test('fail: inspect opens with a verdict, the cause on both sides and a next step', async (t) => {
  const { analysis: a } = await withCause();
  const v = verdict(a);
  t.regex(v.verdict, /^paused/);
  t.regex(v.next, /recover/);
  t.regex(v.next, /source is gone/);
  const lines = formatAnalysis(a).split('\n');
  t.regex(lines[2]!, /^verdict: paused/);
  t.true(lines.some((l) => /QEMU's stderr at .*Detected IO failure/.test(l)));
  t.true(lines.some((l) => /source: its trace's last line/.test(l)));
  t.true(lines.findIndex((l) => l.startsWith('next: ')) < lines.findIndex((l) => l.startsWith('Outstanding requests')));
});

test("QEMU's stderr lines: timestamps to the µs, the program name dropped, untimed lines kept", (t) => {
  const lines = parseStderr('2026-11-22T09:00:31.404701Z qemu-system-x86_64: Detected IO failure for postcopy. Migration paused.\n\nplain line\n');
  t.is(lines.length, 2);
  t.is(lines[0]!.timeUs, Date.parse('2026-11-22T09:00:31Z') * 1000 + 404701);
  t.is(lines[0]!.text, 'Detected IO failure for postcopy. Migration paused.');
  t.is(lines[1]!.line, 3);
  t.is(lines[1]!.text, 'plain line');
});
