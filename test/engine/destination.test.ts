import test from 'ava';
import { unpack } from 'msgpackr';
import { MigCommand, RpMessage } from '../../src/engine/constants.js';
import { EventKind, FaultDisposition, MachineId, RequestFlag } from '../../src/engine/events.js';
import { decodeReceiveBitmap, decodeRecvBitmapMessage } from '../../src/engine/receiveBitmap.js';
import { decodeReqPages, decodeReqPagesId, encodeRecvBitmapRequest } from '../../src/engine/wire.js';
import { HostSupportError, PageError, ResizeDuringPostcopyError, WrongStateError, FaultOutsideRamError, DecodeError, BadRangeError } from '../../src/errors.js';
import { advise, discard, listen, pageData, rig, run, transitions, kinds, type Rig } from './harness.js';

const BASE = 0x7f0000000000;

test('a scripted postcopy migration: advise, discard, listen, run, faults, requests, placements, break, recovery, end — memory verified', (t) => {
  const r = rig({ blocks: [{ name: 'pc.ram', length: 16 * 4096 }] });
  const { engine, backend } = r;
  advise(r, 1);
  // precopy delivered pages 0..7
  for (let p = 0; p < 8; p++) engine.page(0, 0, p * 4096, false, pageData(p * 4096), 0, 2);
  discard(r, 'pc.ram', [[4 * 4096, 2 * 4096]], 3); // pages 4 and 5 were dirtied on the source
  listen(r, 4);
  run(r, 5);
  t.is(engine.postcopyState, 4);
  t.is(engine.stateOf(MachineId.MIGRATION), 'postcopy-active');
  // a vCPU faults on page 4 (discarded) and page 10 (never sent)
  engine.fault(BASE + 4 * 4096 + 0x80, 73001, 10);
  engine.fault(BASE + 10 * 4096 + 0x10, 73002, 11);
  t.deepEqual(r.sent.map(([type]) => type), [RpMessage.REQ_PAGES_ID, RpMessage.REQ_PAGES]);
  t.deepEqual(decodeReqPagesId(r.sent[0]![1]), { blockName: 'pc.ram', start: 4 * 4096, length: 4096 });
  t.deepEqual(decodeReqPages(r.sent[1]![1]), { blockName: null, start: 10 * 4096, length: 4096 });
  t.is(engine.requested.size, 2);
  // page 4 arrives; page 10's request is then lost with the connection
  engine.page(0, 0, 4 * 4096, false, pageData(4 * 4096), 0, 20);
  t.is(engine.requested.size, 1);
  r.link.up = false;
  engine.channelBroken(0, 'connection reset', 30);
  t.is(engine.stateOf(MachineId.MIGRATION), 'postcopy-paused');
  t.is(engine.stateOf(MachineId.FAULT_THREAD), 'paused.returnPathLost');
  engine.fault(BASE + 12 * 4096, 73001, 31); // held while paused
  t.is(engine.requested.size, 2);
  r.link.up = true;
  r.sent.length = 0;
  engine.channelConnected(0, 40);
  t.is(engine.stateOf(MachineId.MIGRATION), 'postcopy-recover');
  t.is(r.sent.length, 1);
  t.is(r.sent[0]![0], RpMessage.RECV_BITMAP);
  const msg = decodeRecvBitmapMessage(r.sent[0]![1]);
  t.is(msg.blockName, 'pc.ram');
  const received = decodeReceiveBitmap(msg.blob, 16);
  t.deepEqual(received.runs(), [[0, 5], [6, 2]], 'pages 0-4 and 6-7 received; 5 was discarded and not resent yet');
  r.sent.length = 0;
  engine.command(MigCommand.POSTCOPY_RESUME, new Uint8Array(0), 41);
  t.is(engine.stateOf(MachineId.MIGRATION), 'postcopy-active');
  t.deepEqual(r.sent.map(([type]) => type), [RpMessage.RESUME_ACK, RpMessage.REQ_PAGES_ID, RpMessage.REQ_PAGES], 'ack, then every outstanding request re-sent, naming the block again first');
  t.deepEqual(r.sent.slice(1).map(([, p]) => (p.length === 12 ? decodeReqPages(p) : decodeReqPagesId(p)).start), [10 * 4096, 12 * 4096]);
  // the rest of the pages arrive, some as zero pages
  for (const p of [5, 8, 9, 10, 11, 12, 13, 14, 15]) engine.page(0, 0, p * 4096, p % 2 === 1, pageData(p * 4096), 0, 50 + p);
  t.true(engine.allReceived());
  t.is(engine.requested.size, 0);
  engine.endOfStream(0, 100);
  t.is(engine.postcopyState, 5);
  t.is(engine.stateOf(MachineId.MIGRATION), 'completed');
  t.is(engine.stateOf(MachineId.FAULT_THREAD), 'exited');
  t.false(backend.isRegistered(0));
  for (let p = 0; p < 16; p++) {
    const want = p >= 8 && p % 2 === 1 ? new Uint8Array(4096) : pageData(p * 4096);
    if (p === 5) want.set(new Uint8Array(4096)); // page 5 came as a zero page
    t.deepEqual(backend.read(0, p * 4096, 4096), want, `page ${p}`);
  }
  const fx = r.sink.records.filter((x) => x.kind === EventKind.FX_BLOCKTIME);
  t.is(fx.length, 1);
  t.true(transitions(r.sink).includes('migration:postcopy-paused->postcopy-recover'));
});

test('every effect is journaled with the input that caused it', (t) => {
  const r = rig();
  advise(r);
  listen(r);
  r.engine.fault(BASE + 0x3000, 73001, 9);
  const input = r.sink.records.find((x) => x.kind === EventKind.IN_FAULT)!;
  const effects = r.sink.records.filter((x) => x.cause === input.seq);
  t.deepEqual(kinds(effects), ['FX_FAULT_SEEN', 'FX_REQUEST']);
  t.is(effects[0]!.b, FaultDisposition.REQUESTED);
  t.is(effects[0]!.a, 0, 'the faulting thread is vCPU 0');
  t.is(effects[1]!.b & RequestFlag.WITH_ID, RequestFlag.WITH_ID);
  t.deepEqual([...effects[1]!.payload!], [...r.sent[0]![1]], 'the journal keeps the exact REQ_PAGES_ID bytes');
  for (const rec of r.sink.records) if (rec.kind >= 32) t.true(rec.cause >= 0 && r.sink.records[rec.cause]!.kind < 32, `effect ${rec.seq} has an input as its cause`);
});

test('a fault on a requested page re-sends the request without changing the requested set; a received page is not requested', (t) => {
  const r = rig();
  advise(r);
  listen(r);
  r.engine.fault(BASE + 0x5000, 73001, 10);
  r.engine.fault(BASE + 0x5008, 73002, 11);
  t.is(r.engine.requested.size, 1);
  t.is(r.sent.length, 2, 'QEMU sends the request again');
  const seen = r.sink.records.filter((x) => x.kind === EventKind.FX_FAULT_SEEN).map((x) => x.b);
  t.deepEqual(seen, [FaultDisposition.REQUESTED, FaultDisposition.RESENT]);
  r.engine.page(0, 0, 0x5000, false, pageData(0x5000), 0, 12);
  r.engine.fault(BASE + 0x5000, 73001, 13);
  t.is(r.sent.length, 2);
  t.is(r.engine.requested.size, 0);
  t.is(r.sink.records.filter((x) => x.kind === EventKind.FX_FAULT_SEEN).at(-1)!.b, FaultDisposition.ALREADY_RECEIVED);
});

test('a fault in a permanently discarded range is answered with a zero page, never a request', (t) => {
  const r = rig({ blocks: [{ name: 'pc.ram', length: 64 * 4096, discarded: [[8 * 4096, 4 * 4096]] }] });
  advise(r);
  listen(r);
  r.engine.fault(BASE + 9 * 4096 + 1, 73001, 10);
  t.is(r.sent.length, 0);
  t.true(r.engine.blocks[0]!.isReceived(9 * 4096));
  t.deepEqual(r.backend.read(0, 9 * 4096, 4096), new Uint8Array(4096));
});

test('REQ_PAGES_ID names the block only when it differs from the last one named', (t) => {
  const r = rig({ blocks: [{ name: 'pc.ram', length: 16 * 4096 }, { name: 'vga.vram', length: 16 * 4096 }] });
  advise(r);
  listen(r);
  const vga = r.engine.hostAddressOf(1);
  r.engine.fault(BASE + 0x1000, 73001, 10);
  r.engine.fault(BASE + 0x2000, 73001, 11);
  r.engine.fault(vga + 0x1000, 73001, 12);
  r.engine.fault(BASE + 0x3000, 73001, 13);
  t.deepEqual(r.sent.map(([type]) => type), [RpMessage.REQ_PAGES_ID, RpMessage.REQ_PAGES, RpMessage.REQ_PAGES_ID, RpMessage.REQ_PAGES_ID]);
  t.is(decodeReqPagesId(r.sent[2]![1]).blockName, 'vga.vram');
});

test('huge-page blocks: target pages assemble in the channel temp page and the host page is placed once', (t) => {
  const HP = 2 * 2 ** 20;
  const r = rig({ blocks: [{ name: 'pc.ram', length: 2 * HP, hostPageSize: HP }] });
  advise(r);
  listen(r);
  r.engine.fault(BASE + HP + 0x1234, 73001, 10);
  t.deepEqual(decodeReqPagesId(r.sent[0]![1]), { blockName: 'pc.ram', start: HP, length: HP }, 'a huge-page block asks for the whole host page');
  for (let i = 0; i < 512; i++) {
    r.engine.page(0, 0, HP + i * 4096, i < 256, pageData(HP + i * 4096), 0, 20);
    if (i < 511) t.false(r.engine.blocks[0]!.isReceived(HP), 'not received before the last target page');
  }
  const places = r.sink.records.filter((x) => x.kind === EventKind.FX_COPY || x.kind === EventKind.FX_ZERO);
  t.is(places.length, 1);
  t.is(places[0]!.a, HP);
  t.deepEqual(r.backend.read(0, HP, 4096), new Uint8Array(4096), 'the zero parts are zeros');
  t.deepEqual(r.backend.read(0, HP + 300 * 4096, 4096), pageData(HP + 300 * 4096));
  // an all-zero huge page is zero-placed
  for (let i = 0; i < 512; i++) r.engine.page(1, 0, i * 4096, true, pageData(0), 0, 30);
  t.is(r.sink.records.filter((x) => x.kind === EventKind.FX_ZERO).length, 1);
});

test('page errors name the block, offset and channel and change nothing', (t) => {
  const HP = 2 * 2 ** 20;
  const r = rig({ blocks: [{ name: 'pc.ram', length: 2 * HP, hostPageSize: HP }] });
  advise(r);
  listen(r);
  t.throws(() => r.engine.page(0, 0, 2 * HP, false, pageData(0), 0, 5), {
    instanceOf: PageError,
    message: "Illegal RAM offset 0x400000 (block 'pc.ram', offset 0x400000, channel 0)",
  });
  t.throws(() => r.engine.page(0, 0, 0, true, pageData(0), 0, 5, 7), {
    instanceOf: PageError,
    message: "Found a zero page with value 7 (block 'pc.ram', offset 0x0, channel 0)",
  });
  r.engine.page(1, 0, 0, false, pageData(0), 0, 6);
  t.throws(() => r.engine.page(1, 0, HP, false, pageData(0), 0, 7), {
    instanceOf: PageError,
    message: "Non-same host page detected (assembling 0x0 of 'pc.ram') (block 'pc.ram', offset 0x200000, channel 1)",
  });
  t.throws(() => r.engine.page(1, 0, 2 * 4096, false, pageData(0), 0, 7), { instanceOf: PageError, message: /target page out of order/ });
  r.engine.page(0, 0, HP, false, pageData(0), 0, 8); // channel 0 assembles its own host page independently
  const errors = r.sink.records.filter((x) => x.kind === EventKind.FX_ERROR).map((x) => (unpack(x.payload!) as { code: string }).code);
  t.deepEqual(errors, ['ILLEGAL_OFFSET', 'NONZERO_ZERO_PAGE', 'NON_SAME_HOST_PAGE', 'OUT_OF_ORDER']);
  t.is(r.engine.stats.hostPagesPlaced, 0);
});

test('commands in the wrong state are refused with the command and state named, changing nothing', (t) => {
  const r = rig();
  t.throws(() => listen(r), { instanceOf: WrongStateError, message: 'LISTEN in wrong postcopy state (NONE)' });
  t.throws(() => run(r), { instanceOf: WrongStateError, message: 'RUN in wrong postcopy state (NONE)' });
  advise(r);
  t.throws(() => advise(r), { instanceOf: WrongStateError, message: 'ADVISE in wrong postcopy state (ADVISE)' });
  t.throws(() => run(r), { instanceOf: WrongStateError, message: 'RUN in wrong postcopy state (ADVISE)' });
  listen(r);
  t.throws(() => discard(r, 'pc.ram', [[0, 4096]]), { instanceOf: WrongStateError, message: 'RAM_DISCARD in wrong postcopy state (LISTENING)' });
  t.throws(() => r.engine.command(MigCommand.POSTCOPY_RESUME, new Uint8Array(0), 9), { instanceOf: WrongStateError, message: 'POSTCOPY_RESUME in wrong migration state (postcopy-active)' });
  t.throws(() => r.engine.command(MigCommand.RECV_BITMAP, encodeRecvBitmapRequest('pc.ram'), 9), { instanceOf: WrongStateError, message: 'RECV_BITMAP in wrong migration state (postcopy-active)' });
  t.is(r.engine.postcopyState, 3);
  const refused = r.sink.records.filter((x) => x.kind === EventKind.FX_ERROR).length;
  t.is(refused, 7);
});

test('a fault before LISTEN or outside every block is refused; outside RAM ends the fault thread', (t) => {
  const r = rig();
  advise(r);
  t.throws(() => r.engine.fault(BASE, 73001, 5), { instanceOf: WrongStateError, message: 'FAULT in wrong faultThread state (notStarted)' });
  listen(r);
  t.throws(() => r.engine.fault(BASE + 64 * 4096, 73001, 6), { instanceOf: FaultOutsideRamError, message: 'fault at 0x7f0000040000 is outside every RAM block' });
  t.is(r.engine.stateOf(MachineId.FAULT_THREAD), 'exited');
});

test('ADVISE without host support returns to NONE and fails the migration with the probe\'s reason', (t) => {
  const r = rig({}, { supported: 'userfaultfd refused by the kernel (EPERM)' });
  t.throws(() => advise(r), { instanceOf: HostSupportError, message: /postcopy is not supported on this host: .*EPERM/ });
  t.is(r.engine.postcopyState, 0);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'failed');
  const probe = r.sink.records.find((x) => x.kind === EventKind.FX_PROBE)!;
  t.is(probe.a, 0);
});

test('ADVISE with mismatched page sizes is refused', (t) => {
  const r = rig();
  t.throws(() => r.engine.command(MigCommand.POSTCOPY_ADVISE, new Uint8Array(16), 1), { message: /Postcopy needs matching RAM page sizes|ADVISE/ });
  t.is(r.engine.postcopyState, 0);
});

test('bad discard commands: unknown block, out of bounds, unaligned, zero length, undecodable', (t) => {
  const r = rig();
  advise(r);
  t.throws(() => discard(r, 'nope', [[0, 4096]]), { message: "RAM_DISCARD: unknown RAM block 'nope'" });
  t.throws(() => discard(r, 'pc.ram', [[63 * 4096, 2 * 4096]]), { instanceOf: BadRangeError, message: /past the block's end/ });
  t.throws(() => discard(r, 'pc.ram', [[100, 4096]]), { instanceOf: BadRangeError, message: /not aligned to the target page size 4096/ });
  t.throws(() => r.engine.command(MigCommand.POSTCOPY_RAM_DISCARD, Uint8Array.of(0, 6, 112, 99), 3), { instanceOf: DecodeError });
  t.is(r.engine.postcopyState, 1, 'still ADVISE: nothing changed');
});

test('RAM block resize: ignored in NONE/RUNNING, tail discarded in ADVISE, fatal in DISCARD/LISTENING', (t) => {
  const r = rig({ blocks: [{ name: 'pc.ram', length: 16 * 4096, maxLength: 32 * 4096 }] });
  r.engine.resize(0, 20 * 4096, 1);
  t.is(r.engine.blocks[0]!.usedLength, 20 * 4096, 'in NONE the block simply has its new length');
  t.is(r.engine.sink === r.sink && r.sink.records.filter((x) => x.kind === EventKind.FX_DISCARD).length, 0, 'nothing discarded in NONE');
  advise(r);
  r.engine.resize(0, 24 * 4096, 2);
  t.is(r.engine.blocks[0]!.postcopyLength, 24 * 4096);
  const d = r.sink.records.filter((x) => x.kind === EventKind.FX_DISCARD).at(-1)!;
  t.deepEqual([d.offset, d.a], [20 * 4096, 4 * 4096], 'the new tail is discarded');
  discard(r, 'pc.ram', [[0, 4096]]);
  t.throws(() => r.engine.resize(0, 28 * 4096, 3), { instanceOf: ResizeDuringPostcopyError, message: "RAM block 'pc.ram' resized during postcopy state: 2" });
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'failed');
  const r2 = rig({ blocks: [{ name: 'pc.ram', length: 16 * 4096, maxLength: 32 * 4096 }] });
  advise(r2);
  listen(r2);
  run(r2);
  r2.engine.resize(0, 32 * 4096, 5);
  t.is(r2.engine.blocks[0]!.postcopyLength, 16 * 4096, 'ignored by postcopy in RUNNING');
  t.is(r2.engine.stateOf(MachineId.MIGRATION), 'postcopy-active');
});

test('regression: the preempt thread does not exit while requested pages are outstanding', (t) => {
  const r = rig({ preempt: true });
  advise(r);
  listen(r);
  r.engine.channelConnected(1, 4);
  t.is(r.engine.stateOf(MachineId.PREEMPT_THREAD), 'CREATED.loading');
  r.engine.fault(BASE + 0x2000, 73001, 5);
  r.engine.endOfStream(1, 6);
  t.is(r.engine.stateOf(MachineId.PREEMPT_THREAD), 'CREATED.draining', 'an outstanding request keeps it alive');
  r.engine.page(1, 0, 0x2000, false, pageData(0x2000), 0, 7);
  t.is(r.engine.stateOf(MachineId.PREEMPT_THREAD), 'QUIT', 'it quits once the count is 0');
  t.is(r.engine.stats.placedByChannel[1], 1);
});

/** Preempt, RUNNING with the preempt channel connected, and page 0x2000 requested (t = 6). */
function preemptRunningWithOneRequest(): Rig {
  const r = rig({ preempt: true });
  advise(r);
  listen(r);
  r.engine.channelConnected(1, 4);
  run(r, 5);
  r.engine.fault(BASE + 0x2000, 73001, 6);
  return r;
}

test('regression: postcopy does not end while the preempt channel still delivers pages read after the main EOS', (t) => {
  // Two sockets have no order between them: a loaded destination read the main channel's
  // EOS before the preempt channel's last pages, refused those at END, and a vCPU read zeros.
  const r = preemptRunningWithOneRequest();
  r.engine.endOfStream(0, 7);
  t.is(r.engine.postcopyState, 4, 'still RUNNING: the preempt channel has not ended');
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'postcopy-active');
  t.true(r.backend.isRegistered(0), 'nothing unregistered yet');
  r.engine.page(1, 0, 0x2000, false, pageData(0x2000), 0, 8);
  r.engine.page(1, 0, 0x3000, false, pageData(0x3000), 0, 9); // prefetched: never requested
  t.is(r.engine.stats.placedByChannel[1], 2, 'both pages placed, none refused');
  t.is(r.engine.stats.errors, 0);
  r.engine.endOfStream(1, 10);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'completed', 'the preempt EOS ends postcopy');
  t.is(r.engine.postcopyState, 5);
  t.is(r.engine.stateOf(MachineId.PREEMPT_THREAD), 'NONE.idle');
  t.deepEqual([...r.backend.read(0, 0x3000, 4096)], [...pageData(0x3000)]);
});

test('regression: a main EOS while the preempt thread drains waits for the last requested page', (t) => {
  const r = preemptRunningWithOneRequest();
  r.engine.endOfStream(1, 7);
  t.is(r.engine.stateOf(MachineId.PREEMPT_THREAD), 'CREATED.draining');
  r.engine.endOfStream(0, 8);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'postcopy-active', 'postcopy waits for the outstanding page');
  const snap = r.engine.snapshot();
  t.true(snap.mainStreamEnded, 'the wait is part of the snapshot (replay may restart from one)');
  r.engine.page(1, 0, 0x2000, false, pageData(0x2000), 0, 9);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'completed', 'the last outstanding page lets it end');
  t.is(r.engine.requested.size, 0);
  const other = rig({ preempt: true }); // the same backend state, then the engine's state from the snapshot
  advise(other);
  listen(other);
  other.engine.restore(snap);
  other.engine.page(1, 0, 0x2000, false, pageData(0x2000), 0, 9);
  t.is(other.engine.stateOf(MachineId.MIGRATION), 'completed', 'an engine restored from the snapshot ends the same way');
});

test("preemptEnd 'main-eos' (QEMU's cleanup): the main EOS ends postcopy once no request is outstanding, though the preempt channel never ended", (t) => {
  // QEMU 10.0 never sends EOS on the preempt channel; its own destination quits that thread at cleanup.
  const r = rig({ preempt: true, preemptEnd: 'main-eos' });
  advise(r);
  listen(r);
  r.engine.channelConnected(1, 4);
  run(r, 5);
  r.engine.fault(BASE + 0x2000, 73001, 6);
  r.engine.endOfStream(0, 7);
  t.is(r.engine.stateOf(MachineId.PREEMPT_THREAD), 'CREATED.draining', 'told to QUIT, it drains the outstanding request');
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'postcopy-active', 'postcopy waits for the requested page');
  r.engine.page(1, 0, 0x2000, false, pageData(0x2000), 0, 8);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'completed', 'the last requested page ends it: no preempt EOS needed');
  t.is(r.engine.postcopyState, 5);
  r.engine.endOfStream(1, 9); // a 7.2 source does end the channel: harmless after END
  t.is(r.engine.stats.errors, 0);

  const idle = rig({ preempt: true, preemptEnd: 'main-eos' });
  advise(idle);
  listen(idle);
  idle.engine.channelConnected(1, 4);
  run(idle, 5);
  idle.engine.endOfStream(0, 6);
  t.is(idle.engine.stateOf(MachineId.MIGRATION), 'completed', 'with nothing outstanding the main EOS ends postcopy at once');

  const ours = preemptRunningWithOneRequest(); // the default, 'channel-eos', still waits for the channel's EOS
  ours.engine.page(1, 0, 0x2000, false, pageData(0x2000), 0, 7);
  ours.engine.endOfStream(0, 8);
  t.is(ours.engine.stateOf(MachineId.MIGRATION), 'postcopy-active', "'channel-eos' waits for the preempt channel's own EOS");
});

test('a break while the preempt thread drains: the thread quits, yet the new preempt connection of the recovery is read to its end', (t) => {
  const r = preemptRunningWithOneRequest();
  r.engine.endOfStream(1, 7);
  t.is(r.engine.stateOf(MachineId.PREEMPT_THREAD), 'CREATED.draining');
  r.engine.channelBroken(0, 'cut', 8);
  t.is(r.engine.stateOf(MachineId.PREEMPT_THREAD), 'QUIT', 'stopping was asked for: the error ends the thread');
  r.engine.channelConnected(0, 9);
  r.engine.channelConnected(1, 10);
  r.engine.command(MigCommand.POSTCOPY_RESUME, new Uint8Array(0), 11);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'postcopy-active');
  r.engine.endOfStream(0, 12);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'postcopy-active', 'the new preempt connection has not ended');
  r.engine.page(1, 0, 0x2000, false, pageData(0x2000), 0, 13); // the re-requested page
  r.engine.page(1, 0, 0x5000, false, pageData(0x5000), 0, 14); // sent after it, never requested
  r.engine.endOfStream(1, 15);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'completed');
  t.is(r.engine.stats.placedByChannel[1], 2);
  t.is(r.engine.stats.errors, 0, 'the new connection\'s EOS is not refused although the thread had quit');
});

test('regression: a break during recover goes back to paused, and recovery still completes', (t) => {
  const r = rig();
  advise(r);
  listen(r);
  r.engine.channelBroken(0, 'EIO', 5);
  r.engine.channelConnected(0, 6);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'postcopy-recover');
  r.engine.channelBroken(0, 'broken again', 7);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'postcopy-paused');
  r.engine.channelConnected(0, 8);
  r.engine.command(MigCommand.POSTCOPY_RESUME, new Uint8Array(0), 9);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'postcopy-active');
  t.is(r.engine.stateOf(MachineId.FAULT_THREAD), 'running');
});

test('regression: a stream error that is not EIO pauses postcopy instead of failing it', (t) => {
  const r = rig();
  advise(r);
  listen(r);
  run(r);
  r.engine.streamError(0, 'EPROTO: bad section footer', 5);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'postcopy-paused');
  t.is(r.engine.postcopyState, 4);
  const r2 = rig();
  advise(r2);
  r2.engine.streamError(0, 'EPROTO during precopy', 5);
  t.is(r2.engine.stateOf(MachineId.MIGRATION), 'failed', 'before postcopy the source still has the guest: fail');
});

test('regression: the receive bitmap of a one-page block is not empty', (t) => {
  const r = rig({ blocks: [{ name: 'tiny', length: 4096 }] });
  advise(r);
  r.engine.page(0, 0, 0, false, pageData(0), 0, 2);
  listen(r);
  r.engine.channelBroken(0, 'cut', 3);
  r.engine.channelConnected(0, 4);
  const blob = decodeRecvBitmapMessage(r.sent.find(([type]) => type === RpMessage.RECV_BITMAP)![1]).blob;
  t.is(blob.length, 8 + 8 + 8);
  t.deepEqual(decodeReceiveBitmap(blob, 1).runs(), [[0, 1]]);
});

test('regression: a zero-length discard range is refused', (t) => {
  const r = rig();
  advise(r);
  t.throws(() => r.engine.command(MigCommand.POSTCOPY_RAM_DISCARD, Uint8Array.from([0, 6, ...Buffer.from('pc.ram'), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 2), { message: /length|0/ });
  t.is(r.engine.postcopyState, 1);
});

test('the engine is deterministic: the same inputs give the same records, byte for byte', (t) => {
  const once = () => {
    const r = rig({ preempt: true });
    advise(r);
    discard(r, 'pc.ram', [[0, 8 * 4096]]);
    listen(r);
    r.engine.channelConnected(1, 3);
    run(r);
    for (let i = 0; i < 40; i++) r.engine.fault(BASE + ((i * 7) % 64) * 4096 + i, 73001 + (i % 3), 10 + i);
    for (let i = 0; i < 64; i++) r.engine.page(i % 2, 0, i * 4096, i % 5 === 0, pageData(i * 4096), 0, 100 + i);
    r.engine.endOfStream(1, 200);
    r.engine.endOfStream(0, 201);
    return r.sink.records.map((x) => ({ ...x, payload: x.payload ? Buffer.from(x.payload).toString('hex') : null }));
  };
  const a = once();
  t.deepEqual(once(), a);
  t.true(a.length > 200);
});
