import test from 'ava';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventKind, isInput } from '../../src/engine/events.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import { replay, stateAt } from '../../src/journal/replay.js';
import { runSimulatedMigration } from '../../src/io/migration/simulatedMigration.js';
import { FIXTURES, fixtureDir } from './fixtureList.js';
import { copyOf, readAll, tmpPath, writeAll } from './journalEdit.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

for (const f of FIXTURES) {
  test(`recorded fixture ${f.file} replays with zero divergence`, (t) => {
    const j = JournalReader.open(copyOf(join(fixtureDir(), f.file)));
    const r = replay(j);
    t.true(r.ok, r.divergence?.message);
    t.is(r.events, j.eventCount());
    t.is(r.engine.stateOf(1), 'completed');
    t.true(r.engine.allReceived());
  });
}

/** The richest fixture: a break and a recovery, requests, receive bitmaps. */
const RICH = join(fixtureDir(), 'preempt-random-break.journal');

test('tampered: an effect changed is caught at its sequence number with the differing field', (t) => {
  const { meta, records } = readAll(RICH);
  const i = records.findIndex((r) => r.kind === EventKind.FX_REQUEST);
  records[i] = { ...records[i]!, offset: records[i]!.offset + 4096 };
  const r = replay(JournalReader.open(writeAll(meta, records)));
  t.false(r.ok);
  t.is(r.divergence!.seq, i);
  t.deepEqual(r.divergence!.fields, ['offset']);
  t.is(r.divergence!.expected!.offset, records[i]!.offset);
  t.is(r.divergence!.actual!.offset, records[i]!.offset - 4096);
  t.is(r.divergence!.input!.seq, records[i]!.cause);
  t.is(r.divergence!.machines.postcopy, 'RUNNING');
  t.regex(r.divergence!.message, new RegExp(`divergence at sequence number ${i}: the journal has FX_REQUEST, the engine produced FX_REQUEST \\(fields differ: offset\\)`));
});

test('tampered: an input dropped is caught where its effects no longer have a cause', (t) => {
  const { meta, records } = readAll(RICH);
  const i = records.findIndex((r, k) => r.kind === EventKind.IN_FAULT && records[k + 1]?.kind === EventKind.FX_FAULT_SEEN);
  records.splice(i, 1);
  const r = replay(JournalReader.open(writeAll(meta, records)));
  t.false(r.ok);
  t.is(r.divergence!.seq, i);
  t.is(r.divergence!.expected!.kind, EventKind.FX_FAULT_SEEN);
  t.is(r.divergence!.actual, null, 'the engine produced nothing there');
});

test('tampered: two inputs swapped are caught at the first effect that differs', (t) => {
  const { meta, records } = readAll(RICH);
  // two consecutive postcopy pages, each followed by its placement
  const i = records.findIndex(
    (r, k) => r.kind === EventKind.IN_PAGE && records[k + 1]?.kind === EventKind.FX_COPY && records[k + 2]?.kind === EventKind.IN_PAGE && records[k + 3]?.kind === EventKind.FX_COPY,
  );
  t.true(i > 0);
  const a = records[i]!;
  const b = records[i + 2]!;
  records[i] = { ...b, t: a.t };
  records[i + 2] = { ...a, t: b.t };
  const r = replay(JournalReader.open(writeAll(meta, records)));
  t.false(r.ok);
  t.is(r.divergence!.seq, i + 1);
  t.deepEqual(r.divergence!.fields, ['offset']);
});

test('tampered: a flipped payload byte is caught at that record with the payload named', (t) => {
  const { meta, records } = readAll(RICH);
  const i = records.findIndex((r) => r.kind === EventKind.FX_REQUEST && r.payload !== null);
  records[i]!.payload![5]! ^= 0x01;
  const r = replay(JournalReader.open(writeAll(meta, records)));
  t.false(r.ok);
  t.is(r.divergence!.seq, i);
  t.deepEqual(r.divergence!.fields, ['payload']);
});

test('a journal cut at every record boundary of a small run replays its prefix cleanly', (t) => {
  const { meta, records } = readAll(join(fixtureDir(), 'plain-seq.journal'));
  let checked = 0;
  for (let k = 0; k <= records.length; k += 1) {
    const r = replay(JournalReader.open(writeAll(meta, records.slice(0, k), `cut-${k}.journal`)));
    if (!r.ok) t.fail(`cut at ${k}: ${r.divergence!.message}`);
    if (r.events !== k) t.fail(`cut at ${k}: replayed ${r.events} events`);
    checked++;
  }
  t.is(checked, records.length + 1);
});

test('stateAt(seq) loads at most one snapshot and replays fewer than N events, and equals a full replay', (t) => {
  const path = tmpPath('snap.journal');
  const N = 200;
  const sim = runSimulatedMigration({ sizeBytes: 2 << 20, vcpus: 2, workload: 'sequential-increment', seed: 5, journalPath: path, verifyReplay: false, snapshotEvery: N });
  t.true(sim.verified);
  const j = JournalReader.open(path);
  const inputs = [...j.records()].filter((r) => isInput(r.kind)).map((r) => r.seq);
  t.true(j.eventCount() > 4 * N, 'long enough for several snapshots');
  for (const at of [inputs[1]!, inputs[Math.floor(inputs.length / 3)]!, inputs[Math.floor(inputs.length / 2)]!, inputs.at(-1)!]) {
    const s = stateAt(j, at);
    t.true(s.replayed <= N + 60, `replayed ${s.replayed} events for seq ${at}`);
    const full = replay(j, { to: at - 1 });
    t.deepEqual(s.engine.snapshot(), full.engine.snapshot(), `state at ${at}`);
  }
});

test('postcopy replay: exit 0 on a match, 1 on a divergence with the diff, 2 on an unreadable journal', (t) => {
  const ok = spawnSync('node', [CLI, 'replay', copyOf(RICH)], { encoding: 'utf8' });
  t.is(ok.status, 0, ok.stderr);
  t.regex(ok.stdout, /replayed with zero divergence/);
  const { meta, records } = readAll(RICH);
  const i = records.findIndex((r) => r.kind === EventKind.FX_REQUEST);
  records[i] = { ...records[i]!, offset: records[i]!.offset + 4096 };
  const bad = spawnSync('node', [CLI, 'replay', writeAll(meta, records)], { encoding: 'utf8' });
  t.is(bad.status, 1);
  t.regex(bad.stdout, new RegExp(`divergence at sequence number ${i}`));
  t.regex(bad.stdout, /expected: .*FX_REQUEST/);
  const json = spawnSync('node', [CLI, 'replay', '--json', writeAll(meta, records)], { encoding: 'utf8' });
  t.is(json.status, 1);
  const parsed = JSON.parse(json.stdout) as { ok: boolean; divergence: { seq: number; fields: string[] } };
  t.false(parsed.ok);
  t.is(parsed.divergence.seq, i);
  t.deepEqual(parsed.divergence.fields, ['offset']);
  const junk = tmpPath('junk.journal');
  writeFileSync(junk, 'not a journal');
  const unreadable = spawnSync('node', [CLI, 'replay', junk], { encoding: 'utf8' });
  t.is(unreadable.status, 2);
  t.regex(unreadable.stderr, /not a readable journal/);
});
