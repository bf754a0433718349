import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { reportCommand } from '../../src/cli/reportCommand.js';
import { EventKind } from '../../src/engine/events.js';
import { JournalError } from '../../src/errors.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import { JournalWriter } from '../../src/journal/journalWriter.js';
import { sampleAnalysis } from './sampleAnalysis.js';
import { scratchDir } from '../scratchDir.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function tmp(name: string): string {
  return join(scratchDir('postcopy-report-'), name);
}

/** A small, valid journal: what the command opens before it analyses. */
function journal(): string {
  const path = tmp('run.db');
  const w = JournalWriter.create(path, {
    engineVersion: 'test', source: 'engine', created: '2026-11-23T00:00:00Z', timeOriginNs: 0,
    blocks: [{ name: 'pc.ram', length: 1 << 20, hostPageSize: 4096, hostAddress: 0x7f0000000000 }],
    vcpuTids: [100, 101], capabilities: [], blocktimeMode: 'both',
  });
  for (let i = 0; i < 10; i++) w.append(EventKind.IN_PAGE, i * 1000, -1, 0, i * 4096, 0, 0, null);
  w.close();
  return path;
}

test('a readable journal: its analysis is written as one HTML file with every plot, exit 0', (t) => {
  const path = journal();
  const output = tmp('report.html');
  const seen: string[] = [];
  const code = reportCommand(path, { output, title: 'Run 7' }, {
    analyze: (reader: JournalReader) => {
      seen.push(reader.path);
      return sampleAnalysis();
    },
  });
  t.is(code, 0);
  t.deepEqual(seen, [path], 'the analysis reads the journal given, once');
  const html = readFileSync(output, 'utf8');
  t.regex(html, /^<!doctype html>/);
  t.regex(html, /<h1>Run 7<\/h1>/);
  for (const id of ['plot-timeline', 'plot-received', 'plot-gantt', 'plot-latency-histogram', 'plot-latency-cdf']) t.true(html.includes(`<svg id="${id}"`), id);
});

test('a file that is not a journal: exit 2, nothing written', (t) => {
  const path = tmp('notes.db');
  writeFileSync(path, 'this is not a journal\n'.repeat(100));
  const output = tmp('report.html');
  t.is(reportCommand(path, { output }, { analyze: () => t.fail('not analysed') as never }), 2);
  t.false(existsSync(output));
});

test('a missing journal: exit 2', (t) => {
  t.is(reportCommand(tmp('missing.db'), { output: tmp('report.html') }), 2);
});

test('a journal that fails while being analysed: exit 2, nothing written', (t) => {
  const output = tmp('report.html');
  const code = reportCommand(journal(), { output }, {
    analyze: (reader) => {
      throw new JournalError(reader.path, 5, 'segment checksum mismatch');
    },
  });
  t.is(code, 2);
  t.false(existsSync(output));
});

test('an output that cannot be written: exit 2', (t) => {
  t.is(reportCommand(journal(), { output: join(tmp('x'), 'no-such-dir', 'report.html') }, { analyze: () => sampleAnalysis() }), 2);
});

test('the CLI has a report command with -o, and exits 2 on an unreadable journal', (t) => {
  const help = spawnSync(process.execPath, [MAIN, 'report', '--help'], { encoding: 'utf8' });
  t.is(help.status, 0);
  t.regex(help.stdout, /-o, --output <file>/);
  t.regex(help.stdout, /--title <text>/);
  const bad = tmp('bad.db');
  writeFileSync(bad, 'garbage');
  const output = tmp('report.html');
  const run = spawnSync(process.execPath, [MAIN, 'report', bad, '-o', output], { encoding: 'utf8' });
  t.is(run.status, 2);
  t.true(run.stderr.includes(bad), run.stderr);
  t.false(existsSync(output));
});
