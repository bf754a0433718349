/**
 * Hostile inputs through the command line, as an adversarial user would give them:
 * damaged journals (cut, flipped bytes, random meta, missing tables, garbage segments with
 * valid checksums, cut and damaged crash tails, unknown event kinds in tails, impossible
 * but well-formed events), random bytes, special files (a FIFO, /dev/zero, a directory),
 * damaged traces and bad options, over replay / inspect / report / import-qemu / simulate
 * (and migrate's option validation only: every migrate case has a bad --size, refused
 * before any child process starts).
 *
 * Every case runs the real CLI as a child process (two at a time) and must: exit with a
 * code of the table (0 done, 1 negative verdict, 2 usage error or unreadable input, 3 left
 * paused), print no stack trace ("    at " lines), end within 10 s (a hang guard, not a
 * speed claim), and leave every input file (journal, its -wal and its crash tail, trace,
 * threads file) byte for byte as it was, none deleted.
 *
 * The cases are generated from a seed, printed; HOSTILE_SEED=<n> repeats a run.
 */
import test from 'ava';
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { crc32, gunzipSync } from 'node:zlib';
import { pack } from 'msgpackr';
import { EventKind, type EventRecord } from '../../src/engine/events.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import { JournalWriter } from '../../src/journal/journalWriter.js';
import { TAIL_SUFFIX } from '../../src/journal/schema.js';
import { importQemuTrace } from '../../src/io/qemu/qemuImport.js';
import { fixture } from '../fixtures.js';
import { scratchDir } from '../scratchDir.js';
import { seededRandom } from '../../src/io/backends/accessPatterns.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const MAIN = resolve(HERE, '../../src/cli/main.js');
const SEED = process.env.HOSTILE_SEED !== undefined ? Number(process.env.HOSTILE_SEED) : Date.now() % 2 ** 31;
const TIMEOUT_MS = 10_000;
const CONCURRENCY = 2;
const TABLE = new Set([0, 1, 2, 3]);


interface Case {
  name: string;
  /** Command and arguments after `postcopy`. */
  args: string[];
  /** Files that must be unchanged and still there afterwards. */
  inputs: string[];
  cwd: string;
}

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  ms: number;
  hung: boolean;
}

function run(c: Case): Promise<Outcome> {
  return new Promise((resolveRun) => {
    const start = Date.now();
    const child = spawn(process.execPath, [MAIN, ...c.args], { cwd: c.cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let hung = false;
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 200_000) stderr += d.toString();
    });
    const timer = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code, signal, stderr, ms: Date.now() - start, hung });
    });
  });
}

function digest(path: string): string | null {
  try {
    const s = statSync(path);
    if (!s.isFile()) return `special:${s.mode}`;
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return null;
  }
}

/** The input files of a journal whose bytes must not change: the journal, its WAL, its tail (not -shm, SQLite's scratch index). */
function journalFiles(p: string): string[] {
  return [p, p + '-wal', p + TAIL_SUFFIX].filter((f) => existsSync(f));
}

/** Copies a journal's files (not -shm) to `dst`. */
function copyJournal(src: string, dst: string): void {
  for (const s of ['', '-wal', TAIL_SUFFIX]) if (existsSync(src + s)) copyFileSync(src + s, dst + s);
}

/** Every record of a journal (payloads copied). */
function readAll(path: string): { meta: JournalReader['meta']; records: EventRecord[] } {
  const r = JournalReader.open(path);
  try {
    return { meta: r.meta, records: [...r.records()].map((x) => ({ ...x, payload: x.payload ? x.payload.slice() : null })) };
  } finally {
    r.close();
  }
}

/** Writes records as a journal; `crashAfter` >= 0 leaves the events from there on in the crash tail (a child that is SIGKILLed). */
function writeJournal(path: string, meta: JournalReader['meta'], records: EventRecord[], crashAfter = -1): void {
  if (crashAfter < 0) {
    const { formatVersion: _v, ...m } = meta;
    const w = JournalWriter.create(path, m, { segmentEvents: 256, crashSafe: false });
    for (const r of records) w.append(r.kind, r.t, r.cause, r.block, r.offset, r.a, r.b, r.payload);
    w.close();
    return;
  }
  // A real crash: a child journals the records, flushing the first `crashAfter`, and is SIGKILLed.
  const src = join(dirname(path), 'records.json');
  writeFileSync(src, JSON.stringify({ meta, records: records.map((r) => ({ ...r, payload: r.payload ? Buffer.from(r.payload).toString('base64') : null })) }));
  const script = `
    import { readFileSync } from 'node:fs';
    import { JournalWriter } from ${JSON.stringify(resolve(HERE, '../../src/journal/journalWriter.js'))};
    const { meta, records } = JSON.parse(readFileSync(${JSON.stringify(src)}, 'utf8'));
    delete meta.formatVersion;
    const w = JournalWriter.create(${JSON.stringify(path)}, meta, { segmentEvents: 4096 });
    records.forEach((r, i) => {
      w.append(r.kind, r.t, r.cause, r.block, r.offset, r.a, r.b, r.payload === null ? null : Buffer.from(r.payload, 'base64'));
      if (i + 1 === ${crashAfter}) w.flush();
    });
    process.kill(process.pid, 'SIGKILL');`;
  try {
    execFileSync(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
  } catch {
    // killed, as meant
  }
  if (!existsSync(path + TAIL_SUFFIX)) throw new Error('the crash child left no tail');
}

test('hostile inputs: exit codes of the table only, no stack trace, no hang, no input changed or deleted', async (t) => {
  t.timeout(240_000);
  console.log(`hostile inputs: seed ${SEED} (HOSTILE_SEED=${SEED} repeats this run)`);
  t.log(`seed ${SEED}`);
  const rand = seededRandom(SEED);
  const int = (n: number): number => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const dir = scratchDir('hostile-');
  let k = 0;
  const caseDir = (): string => {
    const d = join(dir, `c${++k}`);
    mkdirSync(d);
    return d;
  };

  // --- Bases: an engine journal (simulate), the same crashed with a tail, an imported trace.
  const baseDir = caseDir();
  const sim = await run({ name: 'base', args: ['simulate', '--size', '4M', '--journal', join(baseDir, 'sim.db'), '--json'], inputs: [], cwd: baseDir });
  t.is(sim.code, 0, sim.stderr);
  const base = readAll(join(baseDir, 'sim.db'));
  const clean = join(baseDir, 'clean.db');
  writeJournal(clean, base.meta, base.records);
  const crashed = join(baseDir, 'crashed.db');
  const flushed = Math.floor(base.records.length / 2);
  writeJournal(crashed, base.meta, base.records, flushed);
  const traceLines = gunzipSync(readFileSync(fixture('fail', 'dst-trace.log.gz'))).toString('utf8').split('\n').slice(0, 600);
  const trace = join(baseDir, 'trace.log');
  writeFileSync(trace, traceLines.join('\n'));
  const imported = join(baseDir, 'imported.db');
  await importQemuTrace({ dstTrace: trace, out: imported });
  const fifo = join(baseDir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const readers = (p: string, d: string): string[][] => [['inspect', p], ['inspect', p, '--json'], ['replay', p], ['replay', p, '--json'], ['report', p, '-o', join(d, 'r.html')], ['salvage', p, '-o', join(d, 'new.db')]];

  const cases: Case[] = [];
  const journalCase = (name: string, make: (p: string, d: string) => void, from: string = pick([clean, clean, crashed, imported])): void => {
    const d = caseDir();
    const p = join(d, 'j.db');
    copyJournal(from, p);
    make(p, d);
    cases.push({ name, args: pick(readers(p, d)), inputs: journalFiles(p), cwd: d });
  };
  const withDb = (p: string, fn: (db: Database.Database) => void): void => {
    const db = new Database(p);
    try {
      fn(db);
    } catch (err) {
      // A mutation SQLite itself refuses (a NOT NULL column set to null...) leaves the copy as it was.
      if (!(err instanceof Database.SqliteError)) throw err;
    } finally {
      db.close();
    }
  };

  // Journals as they are (the commands' normal answers).
  for (const p of [clean, crashed, imported]) {
    for (const args of readers(p, baseDir)) {
      const d = caseDir();
      const q = join(d, 'j.db');
      copyJournal(p, q);
      cases.push({ name: `sound ${args[0]}`, args: args.map((a) => (a === p ? q : a === join(baseDir, 'r.html') ? join(d, 'r.html') : a === join(baseDir, 'new.db') ? join(d, 'new.db') : a)), inputs: journalFiles(q), cwd: d });
    }
  }
  // Cut and flipped journal files.
  for (let i = 0; i < 12; i++) {
    journalCase('journal cut', (p) => {
      const b = readFileSync(p);
      writeFileSync(p, b.subarray(0, int(b.length)));
    });
    journalCase('journal bytes flipped', (p) => {
      const b = readFileSync(p);
      for (let n = 1 + int(20); n > 0; n--) b[int(b.length)] ^= 1 + int(255);
      writeFileSync(p, b);
    });
  }
  // Random meta JSON, missing keys, values that are not JSON.
  const metaValues = ['null', '[]', '"text"', '{}', '0', '-1', '1e308', 'true', '[{"name":1}]', '[{"name":"pc.ram","length":-4096,"hostAddress":0}]', '[{"name":"pc.ram","length":1e300,"hostAddress":0}]', '[{"name":"pc.ram","length":4096,"hostAddress":"x"}]', '[{"name":"pc.ram","length":4096,"hostAddress":0,"hostPageSize":3}]', '[null]', '[1,2,"x"]', 'not json', '', '{"__proto__":{"x":1}}'];
  for (let i = 0; i < 16; i++) {
    const key = pick(['formatVersion', 'source', 'blocks', 'vcpuTids', 'capabilities', 'blocktimeMode', 'timeOriginNs', 'run', 'created']);
    const value = pick(metaValues);
    journalCase(`meta ${key}=${value}`, (p) => withDb(p, (db) => (int(5) === 0 ? db.prepare('DELETE FROM meta WHERE key = ?').run(key) : db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(key, value))));
  }
  journalCase('meta value a blob', (p) => withDb(p, (db) => db.prepare("UPDATE meta SET value = x'00ff' WHERE key = 'blocks'").run()));
  // Missing or reshaped tables.
  for (const table of ['events', 'meta', 'segment_kinds', 'segment_blocks', 'snapshots']) {
    journalCase(`table ${table} dropped`, (p) => withDb(p, (db) => db.exec(`DROP TABLE ${table}`)));
    journalCase(`table ${table} reshaped`, (p) => withDb(p, (db) => db.exec(`DROP TABLE ${table}; CREATE TABLE ${table} (x INTEGER)`)));
  }
  // Segments: garbage with a valid checksum, msgpack of the wrong shape, rows of the wrong types, gaps, overlaps.
  for (let i = 0; i < 12; i++) {
    const how = pick(['garbage', 'msgpack', 'types', 'gap', 'overlap', 'count'] as const);
    journalCase(`segment ${how}`, (p) =>
      withDb(p, (db) => {
        const rows = db.prepare('SELECT segment, first_seq, count FROM events ORDER BY first_seq').all() as Array<{ segment: number; first_seq: number; count: number }>;
        if (rows.length === 0) return;
        const r = pick(rows);
        if (how === 'garbage' || how === 'msgpack') {
          const data = how === 'garbage' ? bytes(1 + int(3000)) : pack(pick([{ v: 1, firstSeq: r.first_seq, count: r.count, kind: 'x' }, { v: 1, firstSeq: r.first_seq, count: r.count }, [1, 2, 3], { v: 2 }, 'str', null]));
          db.prepare('UPDATE events SET data = ?, crc = ? WHERE segment = ?').run(data, crc32(data), r.segment);
        } else if (how === 'types') db.prepare(`UPDATE events SET ${pick(['first_seq', 'count', 'crc', 'data'])} = ? WHERE segment = ?`).run(pick(['text', 1.5, -7, null]) as never, r.segment);
        else if (how === 'gap') db.prepare('DELETE FROM events WHERE segment = ?').run(r.segment);
        else if (how === 'overlap') db.prepare('UPDATE events SET first_seq = first_seq - 1 WHERE segment = ? AND first_seq > 0').run(r.segment);
        else db.prepare('UPDATE events SET count = ? WHERE segment = ?').run(pick([0, -1, 2 ** 40, r.count + 1]), r.segment);
      }), pick([clean, imported, crashed]));
  }
  journalCase('snapshot garbage', (p) => withDb(p, (db) => db.prepare('INSERT OR REPLACE INTO snapshots (seq, state) VALUES (?, ?)').run(5, bytes(64))), clean);
  // Crash tails: cut, flipped, random, headers that lie, unknown kinds, a FIFO or a directory in its place.
  const tailCase = (name: string, make: (tail: string, buf: Buffer) => Buffer | null): void =>
    journalCase(name, (p) => {
      const tp = p + TAIL_SUFFIX;
      const out = make(tp, readFileSync(tp));
      if (out !== null) writeFileSync(tp, out);
    }, crashed);
  const h32 = (buf: Buffer, at: number, v: number): Buffer => (buf.writeUInt32LE(v >>> 0, at), buf);
  for (let i = 0; i < 6; i++) tailCase('tail cut', (_tp, b) => b.subarray(0, pick([1 << 20, int(b.length), 63, 64, b.length - 1])));
  for (let i = 0; i < 8; i++) {
    tailCase('tail bytes flipped', (_tp, b) => {
      for (let n = 1 + int(30); n > 0; n--) b[int(i < 5 ? 64 : b.length)] ^= 1 + int(255);
      return b;
    });
  }
  tailCase('tail random bytes', (_tp, b) => bytes(b.length));
  tailCase('tail random short', () => bytes(1 + int(5000)));
  tailCase('tail empty', () => Buffer.alloc(0));
  tailCase('tail zeros', (_tp, b) => Buffer.alloc(b.length));
  tailCase('tail capacity 0xFFFFFFF0', (_tp, b) => h32(b, 8, 0xfffffff0));
  tailCase('tail payload capacity huge', (_tp, b) => h32(b, 12, 0xfffffff0));
  tailCase('tail capacity 0', (_tp, b) => h32(b, 8, 0));
  tailCase('tail count > capacity', (_tp, b) => h32(b, 24, 0xffffffff));
  tailCase('tail count > file', (_tp, b) => h32(b, 24, b.readUInt32LE(8)));
  tailCase('tail base NaN', (_tp, b) => (b.writeDoubleLE(NaN, 16), b));
  tailCase('tail base negative', (_tp, b) => (b.writeDoubleLE(-5, 16), b));
  tailCase('tail base after a gap', (_tp, b) => (b.writeDoubleLE(1e9, 16), b));
  tailCase('tail base 0 (overlaps SQLite)', (_tp, b) => (b.writeDoubleLE(0, 16), b));
  tailCase('tail wrong magic', (_tp, b) => h32(b, 0, 0x12345678));
  tailCase('tail wrong version', (_tp, b) => h32(b, 4, 7));
  for (let i = 0; i < 8; i++) {
    tailCase('tail unknown event kind', (_tp, b) => {
      const count = b.readUInt32LE(24);
      b[64 + int(Math.max(1, count))] = pick([0, 9, 31, 48, 63, 67, 200, 255]);
      return b;
    });
  }
  tailCase('tail payload bounds', (_tp, b) => {
    // payloadEnd is the 8th column; the header's capacity says where (see tailBuffer.ts).
    const cap = b.readUInt32LE(8);
    const align = (n: number): number => (n + 7) & ~7;
    let at = 64;
    for (const w of [1, 8, 8, 2, 8, 8, 8]) at = align(at + cap * w);
    b.writeUInt32LE(0xfffffff0, at + 4 * int(Math.max(1, b.readUInt32LE(24))));
    return b;
  });
  for (const [side, special] of [[TAIL_SUFFIX, 'fifo'], [TAIL_SUFFIX, 'dir'], ['-wal', 'fifo'], ['-shm', 'fifo'], ['-shm', 'dir']] as const) {
    const d = caseDir();
    const p = join(d, 'j.db');
    for (const s of ['', '-wal', TAIL_SUFFIX]) if (s !== side && existsSync(crashed + s)) copyFileSync(crashed + s, p + s);
    if (special === 'fifo') execFileSync('mkfifo', [p + side]);
    else mkdirSync(p + side);
    cases.push({ name: `${side} is a ${special}`, args: pick(readers(p, d)), inputs: journalFiles(p).filter((f) => f !== p + side), cwd: d });
  }
  // Impossible but well-formed events: offsets outside the blocks, times that are not finite, unknown commands, bad causes.
  const edits: Array<[string, (r: EventRecord) => void]> = [
    ['offset outside the block', (r) => ((r.block = 0), (r.offset = 2 ** 40))],
    ['negative offset', (r) => ((r.block = 0), (r.offset = -4096))],
    ['block beyond the blocks', (r) => (r.block = 7)],
    ['time NaN', (r) => (r.t = NaN)],
    ['time Infinity', (r) => (r.t = Infinity)],
    ['unknown command', (r) => ((r.kind = EventKind.IN_COMMAND), (r.a = 99))],
    ['cause in the future', (r) => (r.cause = r.seq + 1000)],
    ['a NaN', (r) => (r.a = NaN)],
    ['garbage payload', (r) => ((r.kind = pick([EventKind.FX_STATE, EventKind.FX_ERROR, EventKind.IN_CHANNEL_BROKEN])), (r.payload = bytes(1 + int(8))))],
  ];
  for (let i = 0; i < 12; i++) {
    const [what, edit] = edits[i % edits.length]!;
    const d = caseDir();
    const p = join(d, 'j.db');
    const records = base.records.map((r) => ({ ...r }));
    // A segment's first and last times are also SQL columns (NOT NULL): SQLite stores NaN as NULL and
    // refuses the row, so a NaN time goes inside a segment of 256, where only the segment's blob holds it.
    let at = int(records.length);
    const insideASegment = (i: number): boolean => i % 256 !== 0 && i % 256 !== 255 && i !== records.length - 1;
    if (what === 'time NaN') while (!insideASegment(at)) at = (at + 1) % records.length;
    const r = records[at]!;
    edit(r);
    writeJournal(p, base.meta, records);
    cases.push({ name: `impossible: ${what}`, args: pick(readers(p, d)), inputs: journalFiles(p), cwd: d });
  }
  // Not journals at all: random bytes, text, empty, special files, a directory, a missing path, a link to /dev/zero.
  for (let i = 0; i < 6; i++) {
    const d = caseDir();
    const p = join(d, 'j.db');
    writeFileSync(p, pick([bytes(int(20000)), Buffer.from('SQLite format 3\0' + 'x'.repeat(int(500))), Buffer.alloc(0), Buffer.from('hello\n')]));
    cases.push({ name: 'random bytes as a journal', args: pick(readers(p, d)), inputs: [p], cwd: d });
  }
  const zeroLink = join(caseDir(), 'zero.db');
  symlinkSync('/dev/zero', zeroLink);
  for (const p of [fifo, '/dev/zero', baseDir, join(baseDir, 'missing.db'), zeroLink]) {
    for (const args of [pick(readers(p, baseDir).slice(0, 2)), pick(readers(p, baseDir).slice(2, 4)), readers(p, baseDir)[4 + int(2)]!]) {
      const d = caseDir();
      cases.push({ name: `special ${p === fifo ? 'FIFO' : p === baseDir ? 'directory' : p} to ${args[0]}`, args: args.map((a) => (a === join(baseDir, 'r.html') ? join(d, 'r.html') : a === join(baseDir, 'new.db') ? join(d, 'new.db') : a)), inputs: [], cwd: d });
    }
  }
  // import-qemu: special files, random bytes, damaged traces, long lines, bad threads files.
  const importCase = (name: string, dst: string, extra: string[] = [], inputs: string[] = []): void => {
    const d = caseDir();
    cases.push({ name, args: ['import-qemu', dst, '-o', join(d, 'out.db'), ...extra, ...(int(2) ? ['--json'] : [])], inputs: [...inputs, ...(existsSync(dst) && statSync(dst).isFile() ? [dst] : [])], cwd: d });
  };
  for (const p of [fifo, '/dev/zero', baseDir, zeroLink, join(baseDir, 'missing.log')]) importCase(`import-qemu of ${p}`, p);
  importCase('import-qemu --src FIFO', trace, ['--src', fifo], [trace]);
  importCase('import-qemu --threads FIFO', trace, ['--threads', fifo], [trace]);
  importCase('import-qemu --threads directory', trace, ['--threads', baseDir], [trace]);
  importCase('import-qemu --src /dev/zero', trace, ['--src', '/dev/zero'], [trace]);
  for (let i = 0; i < 14; i++) {
    const d = caseDir();
    const p = join(d, pick(['t.log', 't.log.gz']));
    const how = pick(['random', 'cut', 'flipped', 'long line', 'garbage numbers', 'threads'] as const);
    const lines = traceLines.slice();
    let body: Buffer;
    if (how === 'random') body = bytes(int(50_000));
    else if (how === 'long line') {
      lines.splice(int(lines.length), 0, 'x'.repeat((1 << 20) + int(1 << 20)));
      body = Buffer.from(lines.join('\n'));
    } else if (how === 'garbage numbers') {
      for (let n = 0; n < 30; n++) {
        const j = int(lines.length);
        lines[j] = lines[j]!.replace(/\d+/g, () => pick(['NaN', '-1', '99999999999999999999999', '0x', '', '1e400']));
      }
      body = Buffer.from(lines.join('\n'));
    } else {
      body = Buffer.from(lines.join('\n'));
      if (how === 'cut') body = body.subarray(0, int(body.length));
      if (how === 'flipped') for (let n = 0; n < 50; n++) body[int(body.length)] ^= 1 + int(255);
    }
    writeFileSync(p, body);
    const extra: string[] = [];
    const inputs: string[] = [];
    if (how === 'threads') {
      const th = join(d, 'threads.json');
      writeFileSync(th, pick(['{', '[]', 'null', '{"dst":"x"}', '{"dst":{"1":5}}', bytes(100).toString('latin1')]));
      extra.push('--threads', th);
      inputs.push(th);
    }
    importCase(`import-qemu trace ${how}`, p, extra, inputs);
  }
  // Bad options.
  const optionCases: string[][] = [
    ['inspect', clean, '--slowest', '-1'],
    ['inspect', clean, '--slowest', 'abc'],
    ['inspect', clean, '--slowest', '1e400'],
    ['inspect'],
    ['inspect', clean, '--bogus'],
    ['replay', clean, '--to', 'x'],
    ['replay', clean, '--to', '-5'],
    ['replay', clean, '--to', '1.5'],
    ['replay', clean, '--to', '1e400'],
    ['replay', clean, '--to', '3'],
    ['replay'],
    ['report', clean, '-o', baseDir],
    ['report', clean, '-o', '/nonexistent-dir/r.html'],
    ['report'],
    ['import-qemu', trace],
    ['import-qemu', '-o', 'x.db'],
    ['nonsense-command'],
    ['salvage', clean],
    ['salvage', clean, '-o', clean],
    ['salvage', clean, '-o', clean + TAIL_SUFFIX],
    ['salvage', crashed, '-o', crashed],
    ['salvage', crashed, '-o', trace],
  ];
  for (const size of ['abc', '0', '-4M', '1.5k', '4097', '', '1e9', '9999999999T']) {
    optionCases.push(['simulate', '--size', size, '--journal', 'sim.db']);
    optionCases.push(['migrate', '--size', size, '--journal', 'mig.db', ...(int(2) ? ['--vcpus', pick(['0', 'x', '2'])] : [])]);
  }
  for (const [opt, vals] of [['--vcpus', ['0', 'x', '65']], ['--seed', ['x', '1e400']], ['--prefetch', ['-1', '99999']], ['--break-at', ['2', 'x', '1']], ['--workload', ['nope']]] as const) {
    for (const v of vals) optionCases.push(['simulate', '--size', '4M', opt, v, '--journal', 'sim.db']);
  }
  for (const args of optionCases) {
    const d = caseDir();
    const inputs = args.filter((a) => a === clean || a === crashed || a === trace).flatMap((a) => (a === trace ? [a] : journalFiles(a)));
    cases.push({ name: `options ${args.join(' ')}`, args, inputs, cwd: d });
  }
  // Valid simulations with random options (exit 0 or a verdict).
  for (let i = 0; i < 4; i++) {
    const args = ['simulate', '--size', pick(['2M', '4M']), '--vcpus', String(1 + int(3)), '--seed', String(int(1000)), '--workload', pick(['sequential-increment', 'random', 'hot-set']), '--journal', 'sim.db', '--json'];
    if (int(2)) args.push('--preempt');
    if (int(3) === 0) args.push('--break-at', String(rand().toFixed(2)));
    cases.push({ name: `simulate ${args.join(' ')}`, args, inputs: [], cwd: caseDir() });
  }
  // Salvage of damaged journals: -o a new file in the case folder.
  for (let i = 0; i < 10; i++) {
    const d = caseDir();
    const p = join(d, 'j.db');
    copyJournal(pick([crashed, clean]), p);
    if (existsSync(p + TAIL_SUFFIX) && int(2)) {
      const b = readFileSync(p + TAIL_SUFFIX);
      b[64 + int(20)] = 222;
      writeFileSync(p + TAIL_SUFFIX, int(2) ? b : b.subarray(0, int(b.length)));
    }
    cases.push({ name: 'salvage', args: ['salvage', p, '-o', join(d, 'new.db'), ...(int(2) ? ['--json'] : [])], inputs: journalFiles(p), cwd: d });
  }

  // --- Run them, two at a time.
  const before = cases.map((c) => c.inputs.map((f) => [f, digest(f)] as const));
  const outcomes: Outcome[] = new Array(cases.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < cases.length) {
        const i = next++;
        outcomes[i] = await run(cases[i]!);
      }
    }),
  );

  const codes = new Map<string, number>();
  const problems: string[] = [];
  let traces = 0;
  let hangs = 0;
  let modified = 0;
  cases.forEach((c, i) => {
    const o = outcomes[i]!;
    const cmd = c.args[0] ?? '(none)';
    const key = `${cmd} ${o.hung ? 'hung' : o.code === null ? o.signal : o.code}`;
    codes.set(key, (codes.get(key) ?? 0) + 1);
    // Commander's own usage errors are usage errors like any other: exit 2, never 1 (a verdict).
    if (/^error: |: error: /m.test(o.stderr) && o.code !== 2) problems.push(`#${i} ${c.name}: a usage error exited ${o.code}, not 2`);
    const label = `#${i} ${c.name} [postcopy ${c.args.join(' ').slice(0, 160)}]`;
    if (o.hung) {
      hangs++;
      problems.push(`${label}: still running after ${TIMEOUT_MS} ms (killed)`);
    } else if (o.code === null || !TABLE.has(o.code)) problems.push(`${label}: exit ${o.code ?? o.signal}, not in the table; stderr: ${o.stderr.slice(0, 400)}`);
    if (/^ {4}at /m.test(o.stderr)) {
      traces++;
      problems.push(`${label}: a stack trace on stderr: ${o.stderr.slice(0, 600)}`);
    }
    for (const [f, h] of before[i]!) {
      const now = digest(f);
      if (now !== h) {
        modified++;
        problems.push(`${label}: ${f} ${now === null ? 'was deleted' : 'was changed'}`);
      }
    }
  });
  const table = [...codes.entries()].sort().map(([k, n]) => `${k}: ${n}`).join(', ');
  t.log(`${cases.length} cases (seed ${SEED}); exit codes by command: ${table}; stack traces ${traces}, hangs ${hangs}, inputs modified or deleted ${modified}`);
  const slowest = outcomes.reduce((m, o) => Math.max(m, o.ms), 0);
  t.log(`slowest run ${slowest} ms`);
  t.true(cases.length >= 200, `${cases.length} cases`);
  t.deepEqual(problems, [], `seed ${SEED}: ${problems.length} problem(s)`);
});
