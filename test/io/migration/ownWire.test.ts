import test from 'ava';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { TARGET_PAGE_SIZE } from '../../../src/engine/constants.js';
import {
  MainStreamDecoder,
  PreemptChannelDecoder,
  ReturnPathDecoder,
  type MainItem,
  type PreemptItem,
  type ReturnPathItem,
} from '../../../src/engine/qemuWire/index.js';
import { runMigrationDestination, type DestinationMessage } from '../../../src/io/migration/migrationDestination.js';
import { runMigrationSource, type SourceMessage } from '../../../src/io/migration/migrationSource.js';
import { OWN_MACHINE_TYPE } from '../../../src/io/migration/qemuWireOutput.js';
import { scratchDir } from '../../scratchDir.js';

/**
 * What our own `migrate` puts on the wire, captured byte for byte by a relay between its
 * source and destination processes' code (as the QEMU captures were made), and read back
 * with the qemuWire decoders that `postcopy receive` uses on QEMU's streams: the same
 * header, sections and commands, in QEMU's order (reference qemu-wire.md).
 */

const PAGES = 1024;

/** One relayed connection: the bytes each way, in order. */
interface Capture {
  toDestination: Buffer[];
  toSource: Buffer[];
}

/** A TCP relay to `port` that records every connection (upstream connections made in the order they came). */
async function relay(port: number): Promise<{ server: Server; port: number; captures: Capture[] }> {
  const captures: Capture[] = [];
  let upstreamOrder: Promise<void> = Promise.resolve();
  const server = createServer((down: Socket) => {
    const c: Capture = { toDestination: [], toSource: [] };
    captures.push(c);
    down.pause();
    down.on('error', () => {});
    upstreamOrder = upstreamOrder.then(
      () =>
        new Promise<void>((connected) => {
          const up = connect({ host: '127.0.0.1', port }, () => {
            connected();
            down.resume();
          });
          up.on('error', () => down.destroy());
          down.on('data', (b: Buffer) => {
            c.toDestination.push(Buffer.from(b));
            up.write(b);
          });
          up.on('data', (b: Buffer) => {
            c.toSource.push(Buffer.from(b));
            down.write(b);
          });
          down.on('close', () => up.destroy());
          up.on('close', () => down.destroy());
        }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, port: (server.address() as { port: number }).port, captures };
}

async function migrateThroughRelay(preempt: boolean, breakAt?: number): Promise<{ captures: Capture[]; src: SourceMessage[]; dst: DestinationMessage[]; code: number }> {
  const dst: DestinationMessage[] = [];
  const src: SourceMessage[] = [];
  let listening!: (port: number) => void;
  const destinationPort = new Promise<number>((r) => (listening = r));
  const done = runMigrationDestination(
    {
      sizeBytes: PAGES * TARGET_PAGE_SIZE, hostPageSize: 4096, vcpus: 1, workload: 'sequential-increment', seed: 5, preempt,
      journalPath: join(scratchDir('pcwire-'), 'dst.journal'), backend: 'mock', faultReader: 'loop', vcpuNice: 0,
    },
    (m) => {
      dst.push(m);
      if (m.type === 'listening') listening(m.port);
    },
    new Promise<void>(() => {}),
  );
  const r = await relay(await destinationPort);
  try {
    await runMigrationSource(
      { port: r.port, sizeBytes: PAGES * TARGET_PAGE_SIZE, hostPageSize: 4096, seed: 5, preempt, bandwidth: 16 << 20, dirtyRate: 4000, prefetchPages: 0, ...(breakAt !== undefined ? { breakAt } : {}) },
      (m) => src.push(m),
    );
    return { captures: r.captures, src, dst, code: await done };
  } finally {
    r.server.close();
  }
}

function decodeAll<T>(decoder: { push(b: Uint8Array): T[] }, chunks: Buffer[]): T[] {
  const out: T[] = [];
  for (const c of chunks) out.push(...decoder.push(c));
  return out;
}

/** Items as tokens: a run of RAM records is one 'pages', PINGs carry their value. */
function tokens(items: readonly MainItem[]): string[] {
  const out: string[] = [];
  for (const i of items) {
    const token = i.kind === 'page' || i.kind === 'zero-page' ? 'pages' : i.kind === 'ping' ? `ping ${i.value}` : i.kind;
    if (token === 'pages' && out[out.length - 1] === 'pages') continue;
    out.push(token);
  }
  return out;
}

function pagesOf(items: ReadonlyArray<MainItem | PreemptItem>, into: Set<number>): void {
  for (const i of items) if (i.kind === 'page' || i.kind === 'zero-page') into.add(i.pageOffset / TARGET_PAGE_SIZE);
}

test('our source speaks QEMU\'s wire: the qemuWire decoders read its main stream, preempt channel and return path, in QEMU\'s order', async (t) => {
  const { captures, src, dst, code } = await migrateThroughRelay(true);
  t.is(code, 0);
  t.is(captures.length, 2, 'two connections: main, then preempt');

  const main = new MainStreamDecoder();
  const items = decodeAll(main, captures[0]!.toDestination);
  main.end();
  const seq = tokens(items);
  t.deepEqual(seq.slice(0, 9), ['header', 'configuration', 'open-return-path', 'ping 1', 'advise', 'section-start', 'mem-size', 'eos', 'section-footer']);
  t.is(items.find((i) => i.kind === 'configuration')?.kind === 'configuration' && (items.find((i) => i.kind === 'configuration') as { machineType: string }).machineType, OWN_MACHINE_TYPE);
  const memSize = items.find((i) => i.kind === 'mem-size');
  t.deepEqual(memSize?.kind === 'mem-size' && memSize.blocks, [{ name: 'pc.ram', usedLength: PAGES * TARGET_PAGE_SIZE }]);
  const firstDiscard = seq.indexOf('ram-discard');
  t.true(firstDiscard > 9, 'the switch sends discards (the guest dirtied pages during precopy)');
  t.true(seq.slice(9, firstDiscard).every((x) => ['section-part', 'pages', 'eos', 'section-footer'].includes(x)), `precopy is RAM section parts only: ${seq.slice(9, firstDiscard).join(' ')}`);
  let at = firstDiscard;
  while (seq[at] === 'ram-discard') at++;
  t.deepEqual(seq.slice(at, at + 7), ['ping 2', 'packaged', 'listen', 'device-state', 'ping 3', 'run', 'ping 4'], 'the switch as QEMU sends it');
  const postcopy = seq.slice(at + 7);
  t.deepEqual(postcopy.slice(-4), ['section-end', 'eos', 'section-footer', 'eof']);
  t.true(postcopy.slice(0, -4).every((x) => ['section-part', 'pages', 'eos', 'section-footer'].includes(x) || x.startsWith('ping ')), 'postcopy: RAM section parts, PINGs between them');

  const preempt = new PreemptChannelDecoder({ blocks: [{ name: 'pc.ram', usedLength: PAGES * TARGET_PAGE_SIZE }] });
  const urgent = decodeAll(preempt, captures[1]!.toDestination);
  preempt.end();
  t.is(urgent[urgent.length - 1]?.kind, 'eos', 'the preempt channel ends with one EOS');

  const sent = new Set<number>();
  pagesOf(items, sent);
  pagesOf(urgent, sent);
  t.is(sent.size, PAGES, 'every page crossed the wire');

  const rp = new ReturnPathDecoder();
  const answers: ReturnPathItem[] = decodeAll(rp, captures[0]!.toSource);
  const pings = items.filter((i) => i.kind === 'ping').map((i) => (i as { value: number }).value);
  const pongs = answers.filter((i) => i.kind === 'pong').map((i) => (i as { value: number }).value);
  t.deepEqual([...pongs].sort((a, b) => a - b), [...pings].sort((a, b) => a - b), 'every PING answered by a PONG of its value');
  const requests = answers.filter((i) => i.kind === 'page-request').length;
  const done = src.find((m) => m.type === 'done');
  t.is(done?.type === 'done' && done.counters.requests, requests, 'requests on the wire = requests the source counted');
  t.deepEqual(answers[answers.length - 1], { kind: 'shut', offset: answers[answers.length - 1]!.offset, status: 0 }, 'SHUT 0 last');
  t.deepEqual(captures[1]!.toSource, [], 'nothing comes back on the preempt channel');
  t.truthy(dst.find((m) => m.type === 'done'));
  t.log(`${seq.length} tokens, ${pings.length} PINGs, ${requests} requests, ${urgent.length - 1} preempt pages`);
});

test('a break and recovery on our wire: the resumed main stream starts with RECV_BITMAP and RESUME, as QEMU\'s does, and decodes from the first one\'s state', async (t) => {
  const { captures, code } = await migrateThroughRelay(true, 0.4);
  t.is(code, 0);
  t.is(captures.length, 4, 'main, preempt, then the recovery\'s main and preempt');
  const first = new MainStreamDecoder();
  try {
    decodeAll(first, captures[0]!.toDestination);
  } catch (err) {
    t.fail(`the first main stream is not QEMU's: ${(err as Error).message}`);
  }
  const resumed = new MainStreamDecoder({ resume: first.state() });
  const items = decodeAll(resumed, captures[2]!.toDestination);
  resumed.end();
  const seq = tokens(items);
  t.deepEqual(seq.slice(0, 2), ['recv-bitmap-request', 'postcopy-resume'], `no header; ${seq.slice(0, 4).join(' ')}`);
  t.deepEqual(seq.slice(-4), ['section-end', 'eos', 'section-footer', 'eof']);
  const answers = decodeAll(new ReturnPathDecoder(), captures[2]!.toSource);
  t.deepEqual(answers.filter((a) => a.kind === 'recv-bitmap' || a.kind === 'resume-ack').map((a) => a.kind), ['recv-bitmap', 'resume-ack']);
  const preempt = new PreemptChannelDecoder({ blocks: [{ name: 'pc.ram', usedLength: PAGES * TARGET_PAGE_SIZE }] });
  t.notThrows(() => {
    decodeAll(preempt, captures[3]!.toDestination);
    preempt.end();
  }, 'the recovery\'s preempt channel decodes as QEMU\'s, to its end');
});
