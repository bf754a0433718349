import test from 'ava';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { Bitmap } from '../../../src/engine/bitmap.js';
import { TARGET_PAGE_SIZE } from '../../../src/engine/constants.js';
import { EventKind } from '../../../src/engine/events.js';
import {
  configuration,
  endOfSection,
  endOfStream,
  memSize,
  openReturnPath,
  packaged,
  ping,
  postcopyAdvise,
  postcopyResume,
  RamRecordEncoder,
  recvBitmapRequest,
  ReturnPathDecoder,
  sectionEnd,
  sectionFooter,
  sectionPart,
  sectionStart,
  streamHeader,
  type ReturnPathItem,
} from '../../../src/engine/qemuWire/index.js';
import { hostPageSizeSummary } from '../../../src/engine/wire.js';
import { pageDigest, seededImage } from '../../../src/io/backends/guestImage.js';
import { runMigrationDestination, type DestinationMessage } from '../../../src/io/migration/migrationDestination.js';
import { connectChannel } from '../../../src/io/migration/migrationSource.js';
import { JournalReader } from '../../../src/journal/journalReader.js';
import { replay } from '../../../src/journal/replay.js';
import { scratchDir } from '../../scratchDir.js';

/**
 * The destination process's channel handling against a scripted source speaking QEMU's
 * wire over real sockets on 127.0.0.1: the orders of arrival that two sockets allow and a
 * loaded machine produces, forced here on purpose. QEMU names no channel: the first
 * connection is the main stream, the next the preempt channel, a recovery's main stream
 * starts with RECV_BITMAP (0x08).
 */

const PAGES = 64;
const BLOCK = 'pc.ram';
const RAM = 2;

/** A scripted source connection: QEMU's wire out, the return path's messages collected. */
class Peer {
  readonly items: ReturnPathItem[] = [];
  closed = false;
  private readonly records = new RamRecordEncoder();
  private waiters: Array<() => void> = [];

  private constructor(readonly sock: Socket) {
    const decoder = new ReturnPathDecoder();
    sock.on('data', (c: Buffer) => {
      for (const item of decoder.push(c)) this.items.push(item.kind === 'recv-bitmap' ? { ...item, bitmap: item.bitmap.slice() } : item);
      this.notify();
    });
    sock.on('close', () => {
      this.closed = true;
      this.notify();
    });
    sock.on('error', () => {});
  }

  static async open(port: number): Promise<Peer> {
    return new Peer(await connectChannel(port));
  }

  write(...pieces: Uint8Array[]): void {
    for (const p of pieces) this.sock.write(p);
  }

  /** What a first main connection starts with, up to the RAM section's MEM_SIZE. */
  opening(): void {
    this.write(
      streamHeader(),
      configuration('scripted'),
      openReturnPath(),
      ping(1),
      postcopyAdvise({ hostPageSizeSummary: hostPageSizeSummary([4096]), targetPageSize: TARGET_PAGE_SIZE }),
      sectionStart(RAM, 'ram', 0, 4),
      memSize([{ name: BLOCK, usedLength: PAGES * TARGET_PAGE_SIZE }]),
      endOfSection(),
      sectionFooter(RAM),
    );
  }

  /** PACKAGED(LISTEN, no device state, PING 3, RUN). */
  listenAndRun(): void {
    this.write(...packaged(new Uint8Array(0), 3));
  }

  page(image: Uint8Array, page: number): void {
    this.write(this.records.page(BLOCK, page * TARGET_PAGE_SIZE), image.subarray(page * TARGET_PAGE_SIZE, (page + 1) * TARGET_PAGE_SIZE));
  }

  /** Return-path messages of one kind received so far. */
  messages<K extends ReturnPathItem['kind']>(kind: K): Array<Extract<ReturnPathItem, { kind: K }>> {
    return this.items.filter((i): i is Extract<ReturnPathItem, { kind: K }> => i.kind === kind);
  }

  /** Resolves once `ok()` holds (checked at every message and at close); rejects after `ms`. */
  until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
      const check = (): void => {
        if (!ok()) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      this.waiters.push(check);
      check();
    });
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The destination of a 64-page preempt migration over the mock backend, in this process; resolves its port. */
function startDestination(journal: string, messages: DestinationMessage[], giveUp: Promise<void>): { port: Promise<number>; done: Promise<number> } {
  let listening: (port: number) => void;
  const port = new Promise<number>((r) => (listening = r));
  const done = runMigrationDestination(
    { sizeBytes: PAGES * TARGET_PAGE_SIZE, hostPageSize: 4096, vcpus: 1, workload: 'sequential-increment', seed: 11, preempt: true, journalPath: journal, backend: 'mock', faultReader: 'loop', vcpuNice: 0 },
    (m) => {
      messages.push(m);
      if (m.type === 'listening') listening(m.port);
    },
    giveUp,
  );
  return { port, done };
}

test('recovery against a source whose old connections were never seen to close, a RESUME before the preempt channel, and a main EOF before the preempt pages: completes, nothing lost or refused', async (t) => {
  const journal = join(scratchDir('pcchan-'), 'dst.journal');
  const image = seededImage(PAGES * TARGET_PAGE_SIZE, 11);
  const messages: DestinationMessage[] = [];
  const { port, done } = startDestination(journal, messages, new Promise<void>(() => {}));
  const p = await port;

  const main = await Peer.open(p);
  const preempt = await Peer.open(p);
  main.opening();
  main.listenAndRun();
  main.write(sectionPart(RAM));
  for (let pg = 0; pg < 16; pg++) main.page(image, pg);
  await main.until('PONG 1 and PONG 3', () => main.messages('pong').length === 2);
  t.deepEqual(main.messages('pong').map((m) => m.value).sort(), [1, 3], 'every PING answered with its value');
  for (let waited = 0; !messages.some((m) => m.type === 'progress' && m.received >= 16); waited += 10) {
    if (waited > 5000) throw new Error('timed out waiting for the destination to place 16 pages');
    await sleep(10);
  }

  // A new main connection while the old ones are still open on both ends: its first byte
  // (RECV_BITMAP) says it is a recovery's main stream; the recovery must not wait for (or be
  // undone by) the old ones' close.
  const main2 = await Peer.open(p);
  main2.write(recvBitmapRequest(BLOCK));
  await main2.until('the receive bitmap', () => main2.messages('recv-bitmap').length === 1);
  await main.until('the old main connection closed by the destination', () => main.closed);
  await preempt.until('the old preempt connection closed by the destination', () => preempt.closed);
  const sent = main2.messages('recv-bitmap')[0]!;
  t.is(sent.blockName, BLOCK);
  t.deepEqual(Bitmap.fromLE64Bytes(PAGES, sent.bitmap).runs(), [[0, 16]], 'the bitmap says exactly the 16 pages placed');

  // RESUME before the preempt channel is back: the destination waits for it.
  main2.write(postcopyResume());
  await sleep(150);
  t.is(main2.messages('resume-ack').length, 0, 'no RESUME_ACK while the preempt channel is missing');
  const preempt2 = await Peer.open(p);
  await main2.until('RESUME_ACK', () => main2.messages('resume-ack').length === 1);

  // The main stream ends first; the preempt channel's pages come after it.
  main2.write(sectionPart(RAM));
  for (let pg = 16; pg < 40; pg++) main2.page(image, pg);
  preempt2.page(image, 40); // so the preempt channel is surely loading
  main2.write(endOfSection(), sectionFooter(RAM), sectionEnd(RAM), endOfSection(), sectionFooter(RAM), endOfStream());
  await sleep(150);
  for (let pg = 41; pg < PAGES; pg++) preempt2.page(image, pg);
  preempt2.write(endOfSection());

  t.is(await done, 0);
  await main2.until('SHUT', () => main2.messages('shut').length === 1);
  t.is(main2.messages('shut')[0]!.status, 0, 'SHUT 0: the destination is done');
  const digest = messages.find((m) => m.type === 'digest')!;
  t.truthy(digest);
  t.is(digest.type === 'digest' && digest.hashes, pageDigest(image, PAGES).hashes, 'every page arrived: bytes 1..4095 equal the image');
  const summary = messages.find((m) => m.type === 'done')!;
  t.is(summary.type === 'done' && summary.status, 'completed');
  t.is(summary.type === 'done' && summary.summary.stats.errors, 0, 'no input was refused');

  const j = JournalReader.open(journal);
  try {
    const kinds = [...j.records()].map((e) => e.kind);
    t.is(kinds.filter((k) => k === EventKind.FX_RECV_BITMAP).length, 1);
    const r = replay(j);
    t.true(r.ok, r.divergence?.message);
  } finally {
    j.close();
  }
  for (const peer of [main2, preempt2]) peer.sock.destroy();
});

test('a third connection that is no channel of the migration (an HTTP request) is dropped and touches nothing of it', async (t) => {
  const journal = join(scratchDir('pcchan-'), 'dst.journal');
  let giveUp: () => void;
  const { port, done } = startDestination(journal, [], new Promise<void>((r) => (giveUp = r)));
  const p = await port;
  const main = await Peer.open(p);
  const preempt = await Peer.open(p);
  main.opening();
  main.listenAndRun();
  await main.until('PONG 3', () => main.messages('pong').some((m) => m.value === 3));
  const stray = await Peer.open(p);
  stray.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await stray.until('the stray connection closed by the destination', () => stray.closed);
  t.false(main.closed, 'the main connection is untouched');
  t.false(preempt.closed, 'the preempt connection is untouched');
  giveUp!();
  t.is(await done, 3);
  main.sock.destroy();
  preempt.sock.destroy();
  const j = JournalReader.open(journal);
  try {
    const inputs = [...j.records()].filter((e) => e.kind === EventKind.IN_STREAM_ERROR || e.kind === EventKind.IN_CHANNEL_BROKEN);
    t.deepEqual(inputs, [], 'no channel input was journaled for it');
    const connected = [...j.records()].filter((e) => e.kind === EventKind.IN_CHANNEL_CONNECTED);
    t.is(connected.length, 1, 'one channel connected: the preempt channel, not the stray');
  } finally {
    j.close();
  }
});
