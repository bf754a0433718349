/**
 * The tap's native relay (native/src/relay.cc) over real sockets on 127.0.0.1: what it
 * forwards both ways is what was sent, in writes of random sizes; it half-closes each way as
 * its peers do; a peer's reset is an ERROR record naming the side; the ring holds, per
 * connection and direction, exactly the bytes forwarded (then CLOSE with their count); a ring
 * too small for a read gets a GAP from the right byte while forwarding goes on; two
 * connections at once are recorded under their own ids.
 */
import test, { type ExecutionContext } from 'ava';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { socketFd } from '../../src/native/socketOptions.js';
import { createTapRelay, type NativeTapRelay, type RelayEvent } from '../../src/native/tapRelay.js';
import { createRing, RecordType, RingReader, textOf, type RecordTypeValue } from '../../src/io/qemu/tapRing.js';

interface Rec {
  type: RecordTypeValue;
  id: number;
  dir: number;
  t: number;
  value: number;
  payload: Buffer;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A seeded generator (xorshift32): the seed is printed, so a failing run can be repeated. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (rand() * 256) | 0;
  return b;
}

/** A relay over a ring of `ringBytes`, its events collected; its records read by `drain()`. */
function relayOn(t: ExecutionContext, ringBytes: number) {
  const ring = createRing(ringBytes);
  const events: RelayEvent[] = [];
  const relay = createTapRelay(ring, (batch) => events.push(...batch));
  t.teardown(() => relay.close());
  const reader = new RingReader(ring);
  const records: Rec[] = [];
  const drain = (): number => reader.drain((r) => records.push({ ...r, payload: Buffer.from(r.payload) }));
  return { relay, events, records, drain };
}

/** A server whose connections `onConnection` takes; closed at the end of the test. */
async function serve(t: ExecutionContext, onConnection: (s: Socket) => void, options: { pauseOnConnect?: boolean } = {}): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true, ...options }, onConnection);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  return { server, port: (server.address() as { port: number }).port };
}

/**
 * Source → relay → destination: the source connects to a paused listener (the tap's accept),
 * an upstream connection goes to `destPort`, and the relay takes both fds; this thread's
 * sockets are destroyed, as the tap does. Returns the source's socket.
 */
async function through(t: ExecutionContext, relay: NativeTapRelay, id: number, destPort: number): Promise<Socket> {
  let accepted!: (s: Socket) => void;
  const acceptedP = new Promise<Socket>((r) => (accepted = r));
  const listener = await serve(t, accepted, { pauseOnConnect: true });
  const source = connect({ host: '127.0.0.1', port: listener.port, allowHalfOpen: true });
  source.on('error', () => {});
  const client = await acceptedP;
  const upstream = connect({ host: '127.0.0.1', port: destPort });
  upstream.pause();
  await new Promise<void>((r, j) => {
    upstream.once('connect', r);
    upstream.once('error', j);
  });
  relay.post(RecordType.OPEN, id, 0, 0, `source\ndestination`);
  relay.attach(id, socketFd(client)!, socketFd(upstream)!);
  client.destroy();
  upstream.destroy();
  return source;
}

/** Writes `bytes` in pieces of random sizes (1 B .. 100 KiB), yielding now and then. */
async function writeInPieces(s: Socket, bytes: Buffer, rand: () => number): Promise<void> {
  let at = 0;
  while (at < bytes.length) {
    const n = Math.min(bytes.length - at, 1 + Math.floor(rand() ** 3 * 100 * 1024));
    if (!s.write(bytes.subarray(at, at + n))) await new Promise((r) => s.once('drain', r));
    at += n;
    if (rand() < 0.1) await new Promise((r) => setImmediate(r));
  }
}

/** Everything a socket reads until its end. */
function readAll(s: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

async function until(what: string, f: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const dataOf = (records: Rec[], id: number, dir: number): Buffer => Buffer.concat(records.filter((r) => r.type === RecordType.DATA && r.id === id && r.dir === dir).map((r) => r.payload));

test('bytes of random sizes are forwarded unchanged both ways, each side half-closes in turn, and the ring holds exactly what was forwarded', async (t) => {
  const seed = Date.now() >>> 0;
  t.log(`seed ${seed}`);
  const rand = random(seed);
  const { relay, events, records, drain } = relayOn(t, 8 * 1024 * 1024);
  for (const sourceEndsFirst of [true, false]) {
    const id = sourceEndsFirst ? 0 : 1;
    const up = randomBytes(rand, 1 + Math.floor(rand() * 3 * 1024 * 1024));
    const down = randomBytes(rand, 1 + Math.floor(rand() * 2 * 1024 * 1024));
    let destGot!: Promise<Buffer>;
    let destSocket!: (s: Socket) => void;
    const destSocketP = new Promise<Socket>((r) => (destSocket = r));
    const dest = await serve(t, (s) => {
      destGot = readAll(s);
      destSocket(s);
    });
    const source = await through(t, relay, id, dest.port);
    const sourceGot = readAll(source);
    const d = await destSocketP;
    if (sourceEndsFirst) {
      // The source sends everything and ends; the destination answers only after that end.
      await writeInPieces(source, up, rand);
      source.end();
      t.true((await destGot).equals(up), `seed ${seed}: the destination got the source's ${up.length} bytes unchanged`);
      await writeInPieces(d, down, rand);
      d.end();
      t.true((await sourceGot).equals(down), `seed ${seed}: the source got the destination's ${down.length} bytes after its own end`);
    } else {
      await writeInPieces(d, down, rand);
      d.end();
      t.true((await sourceGot).equals(down), `seed ${seed}: the source got the destination's bytes`);
      await writeInPieces(source, up, rand);
      source.end();
      t.true((await destGot).equals(up), `seed ${seed}: the destination got the source's bytes after its own end`);
    }
    await until(`connection ${id} closed`, () => events.some((e) => e.type === 'closed' && e.id === id));
    t.deepEqual(events.find((e) => e.type === 'closed' && e.id === id), { type: 'closed', id, toDestination: up.length, toSource: down.length });
    const ends = events.filter((e): e is Extract<RelayEvent, { type: 'end' }> => e.type === 'end' && e.id === id).map((e) => e.dir);
    t.deepEqual(ends, sourceEndsFirst ? [0, 1] : [1, 0], 'each direction\'s end, in the order the peers ended');
    await until('the ring to hold both CLOSE records', () => (drain(), records.filter((r) => r.type === RecordType.CLOSE && r.id === id).length === 2));
    t.true(dataOf(records, id, 0).equals(up), `seed ${seed}: the ring's data records towards the destination are the forwarded bytes`);
    t.true(dataOf(records, id, 1).equals(down), `seed ${seed}: and towards the source`);
    const own = records.filter((r) => r.id === id);
    t.is(own[0]!.type, RecordType.OPEN, 'OPEN comes first');
    t.deepEqual(
      own.filter((r) => r.type === RecordType.CLOSE).map((r) => [r.dir, r.value]),
      sourceEndsFirst ? [[0, up.length], [1, down.length]] : [[1, down.length], [0, up.length]],
      'CLOSE records with each direction\'s byte count',
    );
    for (const dir of [0, 1]) {
      const mine = own.filter((r) => r.dir === dir && r.type !== RecordType.OPEN);
      t.is(mine.at(-1)!.type, RecordType.CLOSE, `direction ${dir}: no data after its CLOSE`);
      const times = mine.map((r) => r.t);
      t.deepEqual(times, [...times].sort((a, b) => a - b), `direction ${dir}: times never go back`);
      t.true(times.at(-1)! <= relay.now());
    }
  }
  t.false(records.some((r) => r.type === RecordType.ERROR || r.type === RecordType.GAP));
  t.deepEqual(relay.forwarded(), [dataOf(records, 0, 0).length + dataOf(records, 1, 0).length, dataOf(records, 0, 1).length + dataOf(records, 1, 1).length]);
});

test('a destination that resets its connection: the relay journals an ERROR on the destination side and closes the source\'s connection', async (t) => {
  const { relay, events, records, drain } = relayOn(t, 1024 * 1024);
  let destSocket!: (s: Socket) => void;
  const destSocketP = new Promise<Socket>((r) => (destSocket = r));
  const dest = await serve(t, (s) => {
    s.on('data', () => {});
    s.on('error', () => {});
    destSocket(s);
  });
  const source = await through(t, relay, 7, dest.port);
  // (The source allows half-open connections: its end is the relay's word, not a close.)
  const sourceEnded = new Promise<void>((r) => source.once('end', () => r()));
  source.on('data', () => {});
  source.write(Buffer.alloc(10_000, 1));
  const d = await destSocketP;
  d.write('partial answer');
  // Both ways crossed before the reset: the relay is then reading the destination, not writing to it.
  await until('both ways to cross', () => relay.forwarded()[0] === 10_000 && relay.forwarded()[1] === 14);
  d.resetAndDestroy();
  await sourceEnded;
  await until('the connection closed', () => events.some((e) => e.type === 'closed' && e.id === 7));
  const error = events.find((e) => e.type === 'error');
  t.like(error, { type: 'error', id: 7, side: 1 });
  t.regex((error as { message: string }).message, /^destination side: read ECONNRESET$/);
  await until('the ERROR record', () => (drain(), records.some((r) => r.type === RecordType.ERROR)));
  const rec = records.find((r) => r.type === RecordType.ERROR)!;
  t.is(rec.id, 7);
  t.is(rec.dir, 1, 'the side that failed');
  t.is(textOf(rec.payload), 'destination side: read ECONNRESET');
  t.is(dataOf(records, 7, 1).toString(), 'partial answer');
  t.false(records.some((r) => r.type === RecordType.CLOSE), 'a reset is no orderly end');
});

test('a ring too small for a read: a GAP from the first byte it could not take, forwarding goes on to the end, and the CLOSE waits for room instead of being lost', async (t) => {
  const { relay, events, records, drain } = relayOn(t, 64 * 1024);
  let destGot!: Promise<Buffer>;
  const dest = await serve(t, (s) => {
    destGot = readAll(s);
    s.on('end', () => s.end());
  });
  const source = await through(t, relay, 0, dest.port);
  source.on('data', () => {});
  const small = Buffer.alloc(1000, 7);
  source.write(small);
  await until('the small write to cross', () => relay.forwarded()[0] === small.length);
  const big = randomBytes(random(99), 2 * 1024 * 1024);
  // Nothing drains the ring meanwhile: no 64 KiB read fits in it, and nothing after the gap is handed over.
  source.end(big);
  t.true((await destGot).equals(Buffer.concat([small, big])), 'every byte reached the destination unchanged');
  await until('the connection closed', () => events.some((e) => e.type === 'closed'));
  await until('the GAP and the CLOSE records', () => (drain(), records.filter((r) => r.type === RecordType.CLOSE).length === 2));
  const gap = records.find((r) => r.type === RecordType.GAP)!;
  t.truthy(gap, 'a GAP record');
  t.is(gap.dir, 0);
  const recorded = dataOf(records, 0, 0);
  t.is(gap.value, recorded.length, 'the gap starts at the first byte not handed over');
  t.true(recorded.equals(Buffer.concat([small, big]).subarray(0, recorded.length)), 'what was handed over is the stream\'s start');
  t.regex(textOf(gap.payload), /^the recorder fell \d+ bytes behind \(its ring holds 65536\): bytes from here on were forwarded but not decoded$/);
  t.deepEqual(records.filter((r) => r.type === RecordType.CLOSE).map((r) => [r.dir, r.value]), [[0, small.length + big.length], [1, 0]]);
  t.is(relay.pending(), 0);
});

test('two connections at once are forwarded and recorded under their own ids; stop() ends them and nothing is written after it', async (t) => {
  const { relay, events, records, drain } = relayOn(t, 16 * 1024 * 1024);
  const dest = await serve(t, (s) => {
    s.on('data', (c: Buffer) => s.write(Buffer.from(c.toString().toUpperCase())));
    s.on('error', () => {});
  });
  const a = await through(t, relay, 0, dest.port);
  const b = await through(t, relay, 1, dest.port);
  const back: Record<string, string> = { a: '', b: '' };
  a.on('data', (c: Buffer) => (back.a += c.toString()));
  b.on('data', (c: Buffer) => (back.b += c.toString()));
  a.write('main channel');
  b.write('unrelated client');
  await until('both echoes', () => back.a === 'MAIN CHANNEL' && back.b === 'UNRELATED CLIENT');
  const ended = Promise.all([a, b].map((s) => new Promise((r) => s.once('end', r))));
  relay.stop();
  relay.post(RecordType.FINISH, 0, 0, 0, null);
  await ended;
  drain();
  t.is(dataOf(records, 0, 0).toString(), 'main channel');
  t.is(dataOf(records, 0, 1).toString(), 'MAIN CHANNEL');
  t.is(dataOf(records, 1, 0).toString(), 'unrelated client');
  t.is(dataOf(records, 1, 1).toString(), 'UNRELATED CLIENT');
  t.is(records.at(-1)!.type, RecordType.FINISH, 'FINISH is the last record: stop() joined every thread');
  t.false(records.some((r) => r.type === RecordType.CLOSE || r.type === RecordType.ERROR), 'connections ended by stop() are not journaled as ended by a peer');
  t.false(events.some((e) => e.type === 'closed' || e.type === 'error'));
  t.throws(() => relay.attach(2, 0, 0), { message: /ECANCELED/ }, 'a stopped relay takes no connection');
});
