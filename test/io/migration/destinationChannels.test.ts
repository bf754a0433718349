import test from 'ava';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { MigCommand, RpMessage, TARGET_PAGE_SIZE } from '../../../src/engine/constants.js';
import { EventKind } from '../../../src/engine/events.js';
import { decodeReceiveBitmap, decodeRecvBitmapMessage } from '../../../src/engine/receiveBitmap.js';
import { encodeAdvise, encodeCommandFrame, hostPageSizeSummary } from '../../../src/engine/wire.js';
import { pageDigest, seededImage } from '../../../src/io/backends/guestImage.js';
import { runMigrationDestination, type DestinationMessage } from '../../../src/io/migration/migrationDestination.js';
import { openChannel } from '../../../src/io/migration/migrationSource.js';
import { FrameKind, FrameReader, frame, pageFrameHeader } from '../../../src/io/migration/streamFrames.js';
import { JournalReader } from '../../../src/journal/journalReader.js';
import { replay } from '../../../src/journal/replay.js';
import { scratchDir } from '../../scratchDir.js';

/**
 * The destination process's channel handling against a scripted source over real sockets
 * on 127.0.0.1: the orders of arrival that two sockets allow and a loaded machine
 * produces, forced here on purpose.
 */

const PAGES = 64;

/** A scripted source connection: frames out, return-path frames collected. */
class Peer {
  readonly frames: Array<[number, Uint8Array]> = [];
  closed = false;
  private waiters: Array<() => void> = [];

  private constructor(readonly sock: Socket) {
    const reader = new FrameReader((kind, payload) => {
      this.frames.push([kind, payload.slice()]);
      this.notify();
    });
    sock.on('data', (c: Buffer) => reader.push(c));
    sock.on('close', () => {
      this.closed = true;
      this.notify();
    });
    sock.on('error', () => {});
  }

  static async open(port: number, channel: number, reconnect: boolean): Promise<Peer> {
    return new Peer(await openChannel(port, channel, reconnect));
  }

  command(cmd: number, payload: Uint8Array = new Uint8Array(0)): void {
    this.sock.write(frame(FrameKind.COMMAND, encodeCommandFrame(cmd, payload)));
  }

  page(image: Uint8Array, page: number): void {
    this.sock.write(pageFrameHeader(0, page * TARGET_PAGE_SIZE, false));
    this.sock.write(image.subarray(page * TARGET_PAGE_SIZE, (page + 1) * TARGET_PAGE_SIZE));
  }

  eos(): void {
    this.sock.write(frame(FrameKind.EOS, new Uint8Array(0)));
  }

  /** Return-path messages of one type received so far. */
  messages(type: number): Uint8Array[] {
    return this.frames.filter(([k, p]) => k === FrameKind.RETURN_PATH && ((p[0]! << 8) | p[1]!) === type).map(([, p]) => p.subarray(2));
  }

  /** Resolves once `ok()` holds (checked at every frame and at close); rejects after `ms`. */
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

test('recovery against a source whose old connections were never seen to close, a RESUME before the preempt channel, and a main EOS before the preempt pages: completes, nothing lost or refused', async (t) => {
  const journal = join(scratchDir('pcchan-'), 'dst.journal');
  const image = seededImage(PAGES * TARGET_PAGE_SIZE, 11);
  const messages: DestinationMessage[] = [];
  const { port, done } = startDestination(journal, messages, new Promise<void>(() => {}));
  const p = await port;

  const main = await Peer.open(p, 0, false);
  const preempt = await Peer.open(p, 1, false);
  main.command(MigCommand.OPEN_RETURN_PATH);
  main.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary([4096]), targetPageSize: TARGET_PAGE_SIZE }));
  main.command(MigCommand.POSTCOPY_LISTEN);
  main.command(MigCommand.POSTCOPY_RUN);
  for (let pg = 0; pg < 16; pg++) main.page(image, pg);
  // Consumed: the destination's progress reports count them (an ACK comes only every 128 pages).
  for (let waited = 0; !messages.some((m) => m.type === 'progress' && m.received >= 16); waited += 10) {
    if (waited > 5000) throw new Error('timed out waiting for the destination to place 16 pages');
    await sleep(10);
  }

  // A new main connection while the old ones are still open on both ends: the recovery
  // must not wait for (or be undone by) their close.
  const main2 = await Peer.open(p, 0, true);
  await main2.until('the receive bitmap', () => main2.messages(RpMessage.RECV_BITMAP).length === 1);
  await main.until('the old main connection closed by the destination', () => main.closed);
  await preempt.until('the old preempt connection closed by the destination', () => preempt.closed);
  const sent = decodeRecvBitmapMessage(main2.messages(RpMessage.RECV_BITMAP)[0]!);
  t.deepEqual(decodeReceiveBitmap(sent.blob, PAGES).runs(), [[0, 16]], 'the bitmap says exactly the 16 pages placed');

  // RESUME before the preempt channel is back: the destination waits for it.
  main2.command(MigCommand.POSTCOPY_RESUME);
  await sleep(150);
  t.is(main2.messages(RpMessage.RESUME_ACK).length, 0, 'no RESUME_ACK while the preempt channel is missing');
  const preempt2 = await Peer.open(p, 1, true);
  await main2.until('RESUME_ACK', () => main2.messages(RpMessage.RESUME_ACK).length === 1);

  // The main stream ends first; the preempt channel's pages come after it.
  for (let pg = 16; pg < 40; pg++) main2.page(image, pg);
  preempt2.page(image, 40); // so the preempt thread is surely loading
  main2.eos();
  await sleep(150);
  for (let pg = 41; pg < PAGES; pg++) preempt2.page(image, pg);
  preempt2.eos();

  t.is(await done, 0);
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

test('a connection whose HELLO names no channel is dropped and touches nothing of the migration', async (t) => {
  const journal = join(scratchDir('pcchan-'), 'dst.journal');
  let giveUp: () => void;
  const { port, done } = startDestination(journal, [], new Promise<void>((r) => (giveUp = r)));
  const p = await port;
  const main = await Peer.open(p, 0, false);
  main.command(MigCommand.OPEN_RETURN_PATH);
  main.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary([4096]), targetPageSize: TARGET_PAGE_SIZE }));
  main.command(MigCommand.POSTCOPY_LISTEN);
  const stray = await Peer.open(p, 7, false);
  await stray.until('the stray connection closed by the destination', () => stray.closed);
  t.false(main.closed, 'the main connection is untouched');
  giveUp!();
  t.is(await done, 3);
  main.sock.destroy();
  const j = JournalReader.open(journal);
  try {
    const inputs = [...j.records()].filter((e) => e.kind === EventKind.IN_STREAM_ERROR || e.kind === EventKind.IN_CHANNEL_BROKEN || e.kind === EventKind.IN_CHANNEL_CONNECTED);
    t.deepEqual(inputs, [], 'no channel input was journaled for it');
  } finally {
    j.close();
  }
});
