/**
 * `postcopy tap` without QEMU: the relay over real sockets on 127.0.0.1 (bytes forwarded
 * unchanged both ways, a stream that is not QEMU's and an unrelated second client each
 * journaled as their own connection), and the recorder fed the byte-exact 7.2 captures in
 * the order and at the times the capturing relay read them (request counts, pages per
 * channel, the break and the resume, inspect's figures on the result).
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { pack, unpack } from 'msgpackr';
import { EventKind, TapRole, type EventRecord } from '../../../src/engine/events.js';
import { analyzeJournal } from '../../../src/forensics/analysis.js';
import { startTap } from '../../../src/io/qemu/tap.js';
import { TapRecorder } from '../../../src/io/qemu/tapRecorder.js';
import { JournalReader } from '../../../src/journal/journalReader.js';
import { JournalWriter } from '../../../src/journal/journalWriter.js';
import { replayTap } from '../../../src/journal/tapReplay.js';
import { formatAnalysis } from '../../../src/cli/inspectCommand.js';
import { renderReport } from '../../../src/report/renderReport.js';
import { fixture } from '../../fixtures.js';
import { scratchDir } from '../../scratchDir.js';

const dir = scratchDir('tap-test-');

/** A destination that keeps what it reads and answers each connection with `reply` once `expect` bytes came. */
async function sink(reply: (conn: number) => Buffer, expect: (conn: number) => number) {
  const received: Buffer[][] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    const conn = received.length;
    const chunks: Buffer[] = [];
    received.push(chunks);
    let got = 0;
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got === expect(conn)) s.end(reply(conn));
    });
    s.on('end', () => s.end());
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { port, received, close: () => server.close() };
}

/** Sends `bytes` in uneven pieces, half-closes, and reads everything back until EOF. */
function client(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s: Socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const back: Buffer[] = [];
    s.on('data', (c: Buffer) => back.push(c));
    s.on('end', () => resolve(Buffer.concat(back)));
    s.on('error', reject);
    s.on('connect', async () => {
      let at = 0;
      let piece = 1;
      while (at < bytes.length) {
        const n = Math.min(bytes.length - at, piece);
        s.write(bytes.subarray(at, at + n));
        at += n;
        piece = (piece * 7 + 13) % 70_000 + 1;
        if (at % 5 === 0) await new Promise((r) => setImmediate(r));
      }
      s.end();
    });
  });
}

function records(path: string): { meta: JournalReader['meta']; events: EventRecord[] } {
  const r = JournalReader.open(path);
  try {
    return { meta: r.meta, events: [...r.records()] };
  } finally {
    r.close();
  }
}

test('bytes that are not QEMU\'s pass through unchanged both ways and are journaled as undecodable; an unrelated second client is forwarded and journaled as its own connection', async (t) => {
  const fromSource = [randomBytes(3 * 1024 * 1024), Buffer.from('GET / HTTP/1.1\r\nHost: tap\r\n\r\n')];
  const fromDestination = [randomBytes(512 * 1024), Buffer.from('HTTP/1.1 404 Not Found\r\n\r\n')];
  const dest = await sink((c) => fromDestination[c]!, (c) => fromSource[c]!.length);
  t.teardown(dest.close);
  const journal = join(dir, 'not-qemu.db');
  const tap = await startTap({ listen: { host: '127.0.0.1', port: 0 }, to: { host: '127.0.0.1', port: dest.port }, journalPath: journal });
  const first = client(tap.listening.port, fromSource[0]!);
  // The second client connects once the first one is under way (accept order = connection id).
  await new Promise((r) => setTimeout(r, 50));
  const second = client(tap.listening.port, fromSource[1]!);
  const [back0, back1] = await Promise.all([first, second]);
  t.true(back0.equals(fromDestination[0]!), 'the destination\'s bytes reach the first client unchanged');
  t.true(back1.equals(fromDestination[1]!), 'and the second\'s');
  t.true(Buffer.concat(dest.received[0]!).equals(fromSource[0]!), 'the first client\'s bytes reach the destination unchanged');
  t.true(Buffer.concat(dest.received[1]!).equals(fromSource[1]!), 'and the second\'s');
  const result = await tap.stop();
  t.deepEqual(result.forwarded, { toDestination: fromSource[0]!.length + fromSource[1]!.length, toSource: fromDestination[0]!.length + fromDestination[1]!.length });

  const { meta, events } = records(journal);
  t.is(meta.source, 'tap');
  const of = (kind: number) => events.filter((e) => e.kind === kind);
  t.deepEqual(of(EventKind.TAP_CONN_OPEN).map((e) => e.a), [0, 1], 'two connections, in accept order');
  t.deepEqual(of(EventKind.TAP_CONN_ROLE).map((e) => [e.a, e.b]), [[0, TapRole.OTHER], [1, TapRole.OTHER]]);
  const undecoded = of(EventKind.TAP_UNDECODED).filter((e) => e.b === 0);
  t.deepEqual(undecoded.map((e) => [e.a, e.offset]), [[0, 0], [1, 0]], 'each connection is undecodable from its first byte');
  t.regex(String(unpack(undecoded[1]!.payload!)), /not a QEMU migration stream: it starts with 474554202f/);
  const closes = of(EventKind.TAP_CONN_CLOSE).map((e) => [e.a, e.b, e.offset]).sort();
  t.deepEqual(closes, [[0, 0, fromSource[0]!.length], [0, 1, fromDestination[0]!.length], [1, 0, fromSource[1]!.length], [1, 1, fromDestination[1]!.length]].sort(), 'each direction\'s end with its byte count');
  t.is(of(EventKind.IN_PAGE).length + of(EventKind.FX_REQUEST).length, 0);

  const r = JournalReader.open(journal);
  const a = analyzeJournal(r);
  r.close();
  t.is(a.tap?.connections.length, 2);
  t.deepEqual(a.tap?.connections.map((c) => [c.role, c.bytesToDestination, c.bytesToSource, c.undecoded[0]?.fromByte]), [
    ['not QEMU', fromSource[0]!.length, fromDestination[0]!.length, 0],
    ['not QEMU', fromSource[1]!.length, fromDestination[1]!.length, 0],
  ]);
});

// ---------------------------------------------------------------------------
// The captures, through the recorder

interface CaptureRead {
  conn: number;
  dir: 0 | 1;
  t: number;
  bytes: Uint8Array;
}

/** A capture's reads in the order the capturing relay made them (a length of 0: that direction closed). */
function captureReads(folder: string, file: string): CaptureRead[] {
  const raw = gunzipSync(readFileSync(fixture('wire', folder, file)));
  const out: CaptureRead[] = [];
  let at = 8;
  while (at + 14 <= raw.length) {
    const len = raw.readUInt32LE(at + 10);
    out.push({ conn: raw[at]!, dir: raw[at + 1]! as 0 | 1, t: Number(raw.readBigUInt64LE(at + 2)), bytes: raw.subarray(at + 14, at + 14 + len) });
    at += 14 + len;
  }
  return out;
}

/** Feeds capture files (each file's connections numbered after the previous file's) to a recorder writing `journal`. */
function record(journal: string, files: Array<[string, string]>) {
  const writer = JournalWriter.create(journal, TapRecorder.initialMeta({ kind: 'tap' }, 0), { overwrite: true });
  const recorder = new TapRecorder(writer, { kind: 'tap' });
  let t0: number | null = null;
  let base = 0;
  for (const [folder, file] of files) {
    const reads = captureReads(folder, file);
    const seen = new Set<number>();
    const bytes = new Map<string, number>();
    for (const r of reads) {
      t0 ??= r.t;
      const id = base + r.conn;
      const t = r.t - t0;
      if (!seen.has(id)) {
        seen.add(id);
        recorder.opened(id, t, 'source', 'destination');
      }
      const key = `${id}/${r.dir}`;
      if (r.bytes.length === 0) recorder.closed(id, r.dir, bytes.get(key) ?? 0, t);
      else {
        bytes.set(key, (bytes.get(key) ?? 0) + r.bytes.length);
        recorder.data(id, r.dir, r.bytes, t);
      }
    }
    base += seen.size;
  }
  const summary = recorder.finish();
  writer.close();
  const reader = JournalReader.open(journal);
  try {
    return { summary, analysis: analyzeJournal(reader) };
  } finally {
    reader.close();
  }
}

function sourceRequests(folder: string): number {
  return JSON.parse(readFileSync(fixture('wire', folder, 'query-migrate-src.json'), 'utf8')).ram['postcopy-requests'];
}

test('the plain 7.2 capture through the recorder: every request the source counted, the pages of the fixture README, the states, and a completed migration', (t) => {
  const journal = join(dir, 'plain.db');
  const { summary, analysis: a } = record(journal, [['plain', 'wire-main.gz']]);
  t.is(summary.requests, sourceRequests('plain'));
  t.is(summary.requests, 4418);
  t.is(summary.pages.main, 60_782 + 4_174);
  t.is(summary.pages.preempt, 0);
  t.is(a.status, 'completed');
  t.is(a.postcopyState, 'END');
  t.deepEqual(a.timeline.filter((e) => e.machine === 'postcopy').map((e) => e.to), ['ADVISE', 'DISCARD', 'LISTENING', 'RUNNING', 'END']);
  t.deepEqual(a.timeline.filter((e) => e.machine === 'migration').map((e) => e.to), ['active', 'postcopy-active', 'completed']);
  const tap = a.tap!;
  t.is(tap.requests.count, 4418);
  t.is(tap.requests.served + tap.requests.alreadyInFlight + tap.requests.unanswered, tap.requests.count, 'every request is served, in flight, or unanswered');
  t.is(tap.requests.unanswered, 0, 'a completed migration leaves no request unanswered');
  t.is(a.requests.answeredBy.main.count, tap.requests.served);
  t.deepEqual(a.requests.answered, a.requests.answeredBy.main, 'one channel answered: every channel together is that channel');
  // qemu-wire.md, from an independent decoder of the same capture: served requests p50 18.4 ms, p99 30.1 ms.
  t.true(Math.abs(a.requests.answeredBy.main.p50Ms - 18.4) < 0.5, `served p50 ${a.requests.answeredBy.main.p50Ms} ms (the reference: 18.4 ms)`);
  t.true(Math.abs(a.requests.answeredBy.main.p99Ms - 30.1) < 0.5, `served p99 ${a.requests.answeredBy.main.p99Ms} ms (the reference: 30.1 ms)`);
  t.is(tap.pings, 4);
  t.is(tap.pongs, 4);
  t.deepEqual(tap.shut?.status, 0);
  t.is(a.pages.byChannel['0'], 60_782 + 4_174);
  t.is(a.journal.blocks.length, 6);
  t.is(a.anomalies.count, 0);
  t.log(`served ${tap.requests.served} (p50 ${a.requests.answeredBy.main.p50Ms.toFixed(2)} ms, p99 ${a.requests.answeredBy.main.p99Ms.toFixed(2)} ms), in flight ${tap.requests.alreadyInFlight}`);
  const replayed = replayTap(JournalReader.open(journal));
  t.true(replayed.ok, replayed.message);
});

test('a main stream not decoded to its end (the recorder fell behind): the destination\'s SHUT says the migration completed', (t) => {
  const journal = join(dir, 'gap-shut.db');
  const writer = JournalWriter.create(journal, TapRecorder.initialMeta({ kind: 'tap' }, 0), { overwrite: true });
  const recorder = new TapRecorder(writer, { kind: 'tap' });
  const reads = captureReads('plain', 'wire-main.gz');
  const t0 = reads[0]!.t;
  // The gap: from the middle of the source's stream on (postcopy is running by then), nothing more is decoded that way.
  const total = reads.filter((r) => r.conn === 0 && r.dir === 0).reduce((n, r) => n + r.bytes.length, 0);
  let toDestination = 0;
  let gapped = false;
  recorder.opened(0, 0, 'source', 'destination');
  for (const r of reads) {
    if (r.conn !== 0) continue;
    const t = r.t - t0;
    if (r.bytes.length === 0) {
      recorder.closed(0, r.dir, r.dir === 0 ? toDestination : 0, t);
      continue;
    }
    if (r.dir === 0) {
      if (!gapped && toDestination > total * 0.9) {
        gapped = true;
        recorder.gap(0, 0, toDestination, 'the recorder fell behind (test)', t);
      }
      toDestination += r.bytes.length;
    }
    recorder.data(0, r.dir, r.bytes, t);
  }
  t.true(gapped);
  recorder.finish();
  writer.close();
  const reader = JournalReader.open(journal);
  try {
    const a = analyzeJournal(reader);
    t.is(a.tap!.shut?.status, 0);
    t.is(a.postcopyState, 'RUNNING', 'the stream\'s EOF was never decoded');
    t.deepEqual(a.timeline.filter((e) => e.machine === 'migration').map((e) => e.to), ['active', 'postcopy-active', 'completed'], 'completed by SHUT, not paused by the close of an undecoded stream');
  } finally {
    reader.close();
  }
});

test('the preempt capture: pages per channel, requests, and the preempt channel known by its first record', (t) => {
  const { summary, analysis: a } = record(join(dir, 'preempt.db'), [['preempt', 'wire-main.gz']]);
  t.is(summary.requests, sourceRequests('preempt'));
  t.is(summary.pages.preempt, 49);
  t.deepEqual(summary.connections.map((c) => c.role), ['main', 'preempt']);
  t.is(a.status, 'completed');
  t.true(a.journal.capabilities.includes('preempt'));
  t.true(a.requests.answeredBy.preempt.count > 0, 'some requests were served on the preempt channel');
  const by = a.requests.answeredBy;
  t.is(a.requests.answered.count, by.main.count + by.preempt.count + by.unknown.count, 'every channel together counts each answer once');
  t.is(a.requests.answered.count, a.tap!.requests.served);
  t.true(a.requests.answered.p50Ms >= Math.min(by.main.p50Ms, by.preempt.p50Ms) && a.requests.answered.p50Ms <= Math.max(by.main.p50Ms, by.preempt.p50Ms), 'the p50 of the union lies between the channels\' p50s');
  t.is(a.requests.answered.maxMs, Math.max(by.main.maxMs, by.preempt.maxMs));
  t.is(a.tap!.requests.unanswered, 0);
});

test('the recovery capture: the break pauses, the resumed main connection recovers, RESUME_ACK resumes; the source\'s count is the tap\'s less at most the requests in flight at the break', (t) => {
  const journal = join(dir, 'recover.db');
  const { summary, analysis: a } = record(journal, [['recover-preempt', 'wire-main.gz'], ['recover-preempt', 'wire-resume.gz']]);
  const source = sourceRequests('recover-preempt');
  t.deepEqual(summary.connections.map((c) => c.role), ['main', 'preempt', 'resumed main', 'preempt']);
  t.deepEqual(a.timeline.filter((e) => e.machine === 'migration').map((e) => e.to), ['active', 'postcopy-active', 'postcopy-paused', 'postcopy-recover', 'postcopy-active', 'completed']);
  t.is(a.pauses.length, 1);
  const brk = a.tap!.breaks[0]!;
  t.true(source <= summary.requests && summary.requests - source <= brk.requestsInFlight, `source ${source}, tap ${summary.requests}, in flight at the break ${brk.requestsInFlight}`);
  t.is(a.tap!.recvBitmaps.length, 6, 'a receive bitmap per block');
  t.not(brk.pagesLost, null, 'the bitmaps tell which pages crossed the relay before the break and never arrived');
  t.is(a.tap!.resumeAcks, 1);
  t.is(a.status, 'completed');
  const html = renderReport(a);
  t.regex(html, /data-panel="tap-connections"/);
  t.regex(html, /4\D?318 page requests crossed the relay/);
  t.regex(html, /id="table-tap-breaks"/);
  const text = formatAnalysis(a);
  t.regex(text, /Connections through the tap: 4/);
  t.regex(text, /Break 1 at [\d.]+ ms \(#\d+\): IN_CHANNEL_BROKEN/);
  t.regex(text, new RegExp(`requests in flight at the break .*: ${brk.requestsInFlight}`));
  t.log(`break at ${brk.tMs.toFixed(1)} ms: ${brk.requestsInFlight} request(s) in flight, ${brk.pagesLost} page(s) lost; reason ${brk.reason}`);
  const replayed = replayTap(JournalReader.open(journal));
  t.true(replayed.ok, replayed.message);
});

test('a recorder that falls behind costs the migration nothing: the bytes are forwarded unchanged, and the journal says from which byte they were not decoded', async (t) => {
  // The start of the plain capture's main stream, in its reads; a ring of 64 KiB cannot hold a
  // 64 KiB read, so the recorder is "behind" at the first full read.
  const reads = captureReads('plain', 'wire-main.gz').filter((r) => r.conn === 0 && r.dir === 0 && r.bytes.length > 0).slice(0, 200).map((r) => r.bytes);
  const stream = Buffer.concat(reads);
  const dest = await sink(() => Buffer.alloc(0), () => stream.length);
  t.teardown(dest.close);
  const journal = join(dir, 'behind.db');
  const tap = await startTap({ listen: { host: '127.0.0.1', port: 0 }, to: { host: '127.0.0.1', port: dest.port }, journalPath: journal, maxBacklogBytes: 64 * 1024 });
  // The first 4 KiB alone (they fit the ring: decoded), then the rest at once.
  const s = connect({ host: '127.0.0.1', port: tap.listening.port, allowHalfOpen: true });
  const closed = new Promise((r) => s.on('end', r));
  s.on('data', () => {});
  await new Promise((r) => s.once('connect', r));
  s.write(stream.subarray(0, 4096));
  await new Promise((r) => setTimeout(r, 200));
  s.end(stream.subarray(4096));
  await closed;
  t.true(Buffer.concat(dest.received[0]!).equals(stream), 'every byte reached the destination unchanged');
  await tap.stop();
  const { events } = records(journal);
  const gap = events.find((e) => e.kind === EventKind.TAP_UNDECODED);
  t.truthy(gap, 'the journal says where decoding stopped');
  t.is(gap!.b, 0, 'in the source → destination direction');
  t.regex(String(unpack(gap!.payload!)), /the recorder fell \d+ bytes behind/);
  t.true(gap!.offset >= 4096 && gap!.offset < stream.length, `from byte ${gap!.offset}`);
  t.deepEqual(events.filter((e) => e.kind === EventKind.TAP_CONN_ROLE).map((e) => e.b), [TapRole.MAIN], 'what came before the gap was decoded: a main connection');
  t.is(events.find((e) => e.kind === EventKind.TAP_CONN_CLOSE && e.b === 0)?.offset, stream.length, 'the byte count covers every forwarded byte');
});

test('postcopy tap refuses bad options, an existing journal and a taken address with exit 2 and one line naming the option', async (t) => {
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  t.teardown(() => taken.close());
  const cli = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url));
  const run = (args: string[]) => spawnSync(process.execPath, [cli, 'tap', ...args], { encoding: 'utf8', timeout: 30_000 });
  const bad = run(['--listen', 'nowhere', '--to', '127.0.0.1:1', '--journal', join(dir, 'x.db')]);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /postcopy tap: --listen must be HOST:PORT/);
  const existing = join(dir, 'existing.db');
  writeFileSync(existing, '');
  const exists = run(['--listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--journal', existing]);
  t.is(exists.status, 2);
  t.regex(exists.stderr, /exists: choose another --journal or pass --force/);
  const nowhere = run(['--listen', '127.0.0.1:0', '--to', '127.0.0.1:1', '--journal', join(dir, 'no', 'such', 'x.db')]);
  t.is(nowhere.status, 2);
  t.regex(nowhere.stderr, /--journal .*: the folder .* does not exist/);
  t.is(nowhere.stderr.trim().split('\n').length, 1, 'one line');
  const busy = run(['--listen', `127.0.0.1:${(taken.address() as { port: number }).port}`, '--to', '127.0.0.1:1', '--journal', join(dir, 'busy.db')]);
  t.is(busy.status, 2, 'the listening address is taken: refused, and the recorder thread does not keep the process alive');
  t.regex(busy.stderr, /postcopy tap: --listen 127\.0\.0\.1:\d+: listen EADDRINUSE/);
  const missing = run(['--listen', '127.0.0.1:0']);
  t.is(missing.status, 2, 'without --to');
});

test('a tap journal whose meta claims a block of 2^50 bytes is analysed without allocating for the claim', (t) => {
  const journal = join(dir, 'huge.db');
  const meta = { ...TapRecorder.initialMeta({ kind: 'tap' }, 0), blocks: [{ name: 'pc.ram', length: 2 ** 50, hostPageSize: 4096, hostAddress: 0x7f00_0000_0000 }] };
  const w = JournalWriter.create(journal, meta, { overwrite: true });
  const state = (machine: number, from: string, to: string) => w.append(EventKind.FX_STATE, 1, -1, -1, 0, machine, 0, pack({ from, to, event: 'x' }));
  state(0, 'NONE', 'LISTENING');
  w.append(EventKind.IN_PAGE, 2, -1, 0, 2 ** 49, 0, 0, null);
  w.append(EventKind.FX_REQUEST, 3, -1, 0, 2 ** 49, 4096, 0, null);
  w.append(EventKind.FX_REQUEST, 4, -1, 0, 2 ** 48, 4096, 0, null);
  w.close();
  const r = JournalReader.open(journal);
  const a = analyzeJournal(r);
  r.close();
  t.is(a.tap!.requests.count, 2);
  t.is(a.tap!.requests.alreadyInFlight, 1, 'the page at 2^49 had crossed before its request');
  t.deepEqual(a.requests.outstanding.map((o) => o.offset), [2 ** 48]);
});

test('a tap journal exports to Parquet and answers in fleet like any other journal (source tap)', (t) => {
  const journal = join(dir, 'fleet-plain.db');
  record(journal, [['plain', 'wire-main.gz']]);
  const cli = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url));
  const out = join(dir, 'parquet');
  const exported = spawnSync(process.execPath, [cli, 'export', journal, '--parquet', out, '--quiet'], { encoding: 'utf8' });
  t.is(exported.status, 0, exported.stderr);
  const q = spawnSync(process.execPath, [cli, 'fleet', out, '--json', '--sql', 'select source, status, requests from migrations'], { encoding: 'utf8' });
  t.is(q.status, 0, q.stderr);
  const row = (JSON.parse(q.stdout) as { rows: Array<Record<string, unknown>> }).rows[0]!;
  t.like(row, { source: 'tap', status: 'completed' });
  t.is(Number(row.requests), 4418, 'the requests the relay saw');
});
