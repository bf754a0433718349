/**
 * `postcopy salvage` through the command line: what it keeps and drops, its refusals
 * (-o naming the input or one of its files, an existing file without --force), its exit
 * codes, and an input left byte for byte as it was.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventKind } from '../../src/engine/events.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import { JournalWriter } from '../../src/journal/journalWriter.js';
import { TAIL_SUFFIX } from '../../src/journal/schema.js';
import { scratchDir } from '../scratchDir.js';

const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const dir = scratchDir('pcsalvage-');
let n = 0;
const tmp = (name: string): string => join(dir, `${++n}-${name}`);

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A journal as a killed writer leaves it: 120 events, those past the last whole segment in the crash tail, the tail's event 110 of an unknown kind. */
function damaged(segmentEvents = 50): string {
  const live = tmp('live.db');
  const w = JournalWriter.create(live, {
    engineVersion: 'test', source: 'engine', created: new Date(0).toISOString(), timeOriginNs: 0,
    blocks: [{ name: 'pc.ram', length: 1 << 20, hostPageSize: 4096, hostAddress: 0 }], vcpuTids: [1], capabilities: [], blocktimeMode: 'both',
  }, { segmentEvents });
  for (let i = 0; i < 120; i++) {
    w.append(EventKind.IN_FAULT, i, -1, -1, 4096 * (i % 200), 1, 0, null);
  }
  const path = tmp('damaged.db');
  for (const s of ['', '-wal', TAIL_SUFFIX]) if (existsSync(live + s)) copyFileSync(live + s, path + s);
  w.close();
  const tail = readFileSync(path + TAIL_SUFFIX);
  tail[64 + 10] = 201;
  writeFileSync(path + TAIL_SUFFIX, tail);
  return path;
}

const digest = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

test('salvage keeps the readable events, names the dropped ones, exits 0; inspect and report of the input exit 2 and change nothing', (t) => {
  const path = damaged();
  const before = [digest(path), digest(path + TAIL_SUFFIX)];
  const inspect = cli('inspect', path);
  t.is(inspect.status, 2);
  t.regex(inspect.stderr, /event 110 has unknown kind 201 at sequence number 110 \(110 event\(s\) before it are readable/);
  const html = tmp('r.html');
  const report = cli('report', path, '-o', html);
  t.is(report.status, 2, 'report writes the readable part, and says the input could not be read whole');
  t.true(existsSync(html));
  t.regex(report.stderr, /the report covers the readable part \(110 event\(s\) before it are readable/);
  const out = tmp('new.db');
  const r = cli('salvage', path, '-o', out);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /kept 110 event\(s\) of .* \(10 from its crash tail\)/);
  t.regex(r.stdout, /dropped 10 event\(s\):\n {4}#110\.\.#119: the crash tail is damaged: event 110 has unknown kind 201/);
  t.deepEqual([digest(path), digest(path + TAIL_SUFFIX)], before);
  const j = JournalReader.open(out);
  t.deepEqual(j.readablePrefix(), { events: 110, error: null });
  j.close();
  t.is(cli('inspect', out).status, 0);
});

test('salvage refuses -o naming the input or one of its files, and an existing file without --force (exit 2)', (t) => {
  const path = damaged();
  for (const o of [path, path + TAIL_SUFFIX, join(dirname(path), '.', `${n}-damaged.db`)]) {
    const r = cli('salvage', path, '-o', o);
    t.is(r.status, 2, o);
    t.regex(r.stderr, /is the input journal/);
  }
  const existing = tmp('existing.db');
  writeFileSync(existing, 'keep me');
  const r = cli('salvage', path, '-o', existing);
  t.is(r.status, 2);
  t.regex(r.stderr, /already exists .*--force/);
  t.is(readFileSync(existing, 'utf8'), 'keep me');
  t.is(cli('salvage', path, '-o', existing, '--force').status, 0);
  t.true(existsSync(path + TAIL_SUFFIX));
});

test('salvage: nothing readable exits 1 and writes nothing; not a journal exits 2', (t) => {
  const path = damaged(4096); // all 120 events in the tail
  writeFileSync(path + TAIL_SUFFIX, readFileSync(path + TAIL_SUFFIX).subarray(0, 1000));
  const out = tmp('none.db');
  const none = cli('salvage', path, '-o', out);
  t.is(none.status, 1, none.stderr);
  t.regex(none.stdout, /no event is readable; no journal was written/);
  t.false(existsSync(out));
  const notJournal = tmp('text.db');
  writeFileSync(notJournal, 'hello');
  const r = cli('salvage', notJournal, '-o', out, '--json');
  t.is(r.status, 2);
  t.false((JSON.parse(r.stdout) as { ok: boolean }).ok);
  t.false(existsSync(out));
});
