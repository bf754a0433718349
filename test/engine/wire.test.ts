import test from 'ava';
import { MigCommand, RpMessage } from '../../src/engine/constants.js';
import {
  adviseCommand,
  decodeAdvise,
  decodeCommandFrame,
  decodePageRequest,
  decodeRamDiscard,
  decodeRecvBitmapRequest,
  decodeReqPages,
  decodeReqPagesId,
  decodeResumeAck,
  decodeReturnPathFrame,
  encodeAdvise,
  encodeCommandFrame,
  encodeRamDiscard,
  encodeRecvBitmapRequest,
  encodeReqPages,
  encodeReqPagesId,
  encodeResumeAck,
  encodeReturnPathFrame,
  hostPageSizeSummary,
  ramDiscardCommand,
  requestPageMessage,
  ReturnPathRequester,
} from '../../src/engine/wire.js';
import { DecodeError, EncodeError } from '../../src/errors.js';
import { asciiHex, hex, toHex } from './hex.js';

const PC_RAM = asciiHex('pc.ram'); // 70 63 2e 72 61 6d

// ---------------------------------------------------------------------------
// Byte layouts against hand-written bytes (and the lengths QEMU 7.2 traced)

test('REQ_PAGES for start 0x3aa4000 len 0x1000 is the reference layout', (t) => {
  const bytes = encodeReqPages(0x3aa4000, 0x1000);
  t.is(toHex(bytes), '00 00 00 00 03 aa 40 00 00 00 10 00');
  t.deepEqual(decodeReqPages(bytes), { blockName: null, start: 0x3aa4000, length: 0x1000 });
});

test('REQ_PAGES_ID names the block after start and length; 19 bytes for pc.ram as QEMU traced', (t) => {
  const bytes = encodeReqPagesId('pc.ram', 0xd6dc000, 0x1000);
  t.is(toHex(bytes), `00 00 00 00 0d 6d c0 00 00 00 10 00 06 ${PC_RAM}`);
  t.is(bytes.length, 19); // fixture: "migrate_send_rp_message 3: len 19"
  t.deepEqual(decodeReqPagesId(bytes), { blockName: 'pc.ram', start: 0xd6dc000, length: 0x1000 });
});

test('be64 values above 32 bits are written as two big-endian halves', (t) => {
  t.is(toHex(encodeReqPages(0x1_2345_6789_a000, 0x20_0000)), '00 01 23 45 67 89 a0 00 00 20 00 00');
  t.is(toHex(encodeReqPages(Number.MAX_SAFE_INTEGER, 0xffff_ffff)), '00 1f ff ff ff ff ff ff ff ff ff ff');
  t.deepEqual(decodeReqPages(hex('00 1f ff ff ff ff ff ff ff ff ff ff')), {
    blockName: null,
    start: Number.MAX_SAFE_INTEGER,
    length: 0xffff_ffff,
  });
});

test('RAM_DISCARD: version 0, name length, name, 0, be64 start and length; 25 bytes as QEMU traced', (t) => {
  // Fixture: "postcopy_discard_send_range pc.ram:100/ef00" (pages) and "com=POSTCOPY_RAM_DISCARD len=25".
  const discard = { blockName: 'pc.ram', ranges: [[0x100000, 0xef00000]] as Array<[number, number]> };
  const bytes = encodeRamDiscard(discard);
  t.is(toHex(bytes), `00 06 ${PC_RAM} 00 00 00 00 00 00 10 00 00 00 00 00 00 0e f0 00 00`);
  t.is(bytes.length, 25);
  t.deepEqual(decodeRamDiscard(bytes), discard);
});

test('RAM_DISCARD with several ranges keeps their order', (t) => {
  const discard = { blockName: 'a', ranges: [[0x2000, 0x1000], [0, 0x1000], [0x1_0000_0000, 0x3000]] as Array<[number, number]> };
  const bytes = encodeRamDiscard(discard);
  t.is(
    toHex(bytes),
    '00 01 61 00 ' +
      '00 00 00 00 00 00 20 00 00 00 00 00 00 00 10 00 ' +
      '00 00 00 00 00 00 00 00 00 00 00 00 00 00 10 00 ' +
      '00 00 00 01 00 00 00 00 00 00 00 00 00 00 30 00',
  );
  t.deepEqual(decodeRamDiscard(bytes), discard);
});

test('the command frame is 0x08, be16 command, be16 length, payload', (t) => {
  const frame = ramDiscardCommand({ blockName: 'pc.ram', ranges: [[0x100000, 0xef00000]] });
  t.is(toHex(frame.subarray(0, 5)), '08 00 06 00 19');
  t.is(frame.length, 5 + 25);
  const decoded = decodeCommandFrame(frame);
  t.is(decoded.kind, MigCommand.POSTCOPY_RAM_DISCARD);
  t.deepEqual(decodeRamDiscard(decoded.payload), { blockName: 'pc.ram', ranges: [[0x100000, 0xef00000]] });
});

test('LISTEN, RUN and RESUME frames carry no payload', (t) => {
  t.is(toHex(encodeCommandFrame(MigCommand.POSTCOPY_LISTEN)), '08 00 04 00 00');
  t.is(toHex(encodeCommandFrame(MigCommand.POSTCOPY_RUN)), '08 00 05 00 00');
  t.is(toHex(encodeCommandFrame(MigCommand.POSTCOPY_RESUME)), '08 00 09 00 00');
  const run = decodeCommandFrame(hex('08 00 05 00 00'));
  t.is(run.kind, MigCommand.POSTCOPY_RUN);
  t.is(run.payload.length, 0);
});

test('ADVISE is be64 host page size summary then be64 target page size, framed as command 3', (t) => {
  const advise = { hostPageSizeSummary: 0x1000 | 0x20_0000, targetPageSize: 0x1000 };
  t.is(toHex(encodeAdvise(advise)), '00 00 00 00 00 20 10 00 00 00 00 00 00 00 10 00');
  t.is(toHex(adviseCommand(advise)), '08 00 03 00 10 00 00 00 00 00 20 10 00 00 00 00 00 00 00 10 00');
  t.deepEqual(decodeAdvise(encodeAdvise(advise)), advise);
});

test('the host page size summary is the OR of the distinct page sizes, past 2^31 too', (t) => {
  t.is(hostPageSizeSummary([4096, 4096, 0x20_0000]), 0x20_1000);
  t.is(hostPageSizeSummary([0x4000_0000, 0x1_0000_0000, 4096]), 0x1_4000_1000);
  t.is(hostPageSizeSummary([]), 0);
});

test('RECV_BITMAP request is the name length then the name', (t) => {
  const bytes = encodeRecvBitmapRequest('pc.ram');
  t.is(toHex(bytes), `06 ${PC_RAM}`);
  t.is(decodeRecvBitmapRequest(bytes), 'pc.ram');
  t.is(toHex(encodeCommandFrame(MigCommand.RECV_BITMAP, bytes)), `08 00 0a 00 07 06 ${PC_RAM}`);
});

test('the return-path frame is be16 type, be16 length, payload', (t) => {
  const frame = encodeReturnPathFrame(RpMessage.REQ_PAGES, encodeReqPages(0x3aa4000, 0x1000));
  t.is(toHex(frame), '00 04 00 0c 00 00 00 00 03 aa 40 00 00 00 10 00');
  const decoded = decodeReturnPathFrame(frame);
  t.is(decoded.kind, RpMessage.REQ_PAGES);
  t.deepEqual(decodePageRequest(decoded.kind, decoded.payload), { blockName: null, start: 0x3aa4000, length: 0x1000 });
});

test('RESUME_ACK is be32 1', (t) => {
  t.is(toHex(encodeResumeAck()), '00 00 00 01');
  t.is(toHex(encodeReturnPathFrame(RpMessage.RESUME_ACK, encodeResumeAck())), '00 06 00 04 00 00 00 01');
  t.is(decodeResumeAck(hex('00 00 00 01')), 1);
});

test('block names are UTF-8 and may be 255 bytes long', (t) => {
  for (const long of ['x'.repeat(255), 'é'.repeat(127) + 'x']) {
    const bytes = encodeRecvBitmapRequest(long);
    t.is(bytes[0], 255);
    t.is(decodeRecvBitmapRequest(bytes), long);
  }
  const unicode = '/rom@etc/é€😀';
  const bytes = encodeRecvBitmapRequest(unicode);
  t.is(bytes[0], new TextEncoder().encode(unicode).length);
  t.is(decodeRecvBitmapRequest(bytes), unicode);
});

// ---------------------------------------------------------------------------
// REQ_PAGES vs REQ_PAGES_ID (reference section 3)

test('requestPageMessage names the block only when it differs from the last one named', (t) => {
  const first = requestPageMessage(null, 'pc.ram', 0x3aa4000, 0x1000);
  t.is(first.type, RpMessage.REQ_PAGES_ID);
  t.deepEqual(first.payload, encodeReqPagesId('pc.ram', 0x3aa4000, 0x1000));
  const same = requestPageMessage('pc.ram', 'pc.ram', 0xd6dc000, 0x1000);
  t.is(same.type, RpMessage.REQ_PAGES);
  t.deepEqual(same.payload, encodeReqPages(0xd6dc000, 0x1000));
  t.is(requestPageMessage('pc.ram', 'pc.bios', 0, 0x1000).type, RpMessage.REQ_PAGES_ID);
});

test('ReturnPathRequester remembers the last block named and forgets it on recovery', (t) => {
  const rq = new ReturnPathRequester();
  t.is(rq.lastBlockName, null);
  const types = [
    rq.request('pc.ram', 0x1000, 0x1000).type,
    rq.request('pc.ram', 0x2000, 0x1000).type,
    rq.request('pc.bios', 0, 0x1000).type,
    rq.request('pc.ram', 0x3000, 0x1000).type,
  ];
  t.deepEqual(types, [RpMessage.REQ_PAGES_ID, RpMessage.REQ_PAGES, RpMessage.REQ_PAGES_ID, RpMessage.REQ_PAGES_ID]);
  t.is(rq.lastBlockName, 'pc.ram');
  rq.forget();
  t.is(rq.lastBlockName, null);
  t.is(rq.request('pc.ram', 0x4000, 0x1000).type, RpMessage.REQ_PAGES_ID);
});

test('ReturnPathRequester does not remember a block whose request failed to encode', (t) => {
  const rq = new ReturnPathRequester();
  rq.request('pc.ram', 0, 0x1000);
  t.throws(() => rq.request('pc.bios', 0, 0), { instanceOf: EncodeError });
  t.is(rq.lastBlockName, 'pc.ram');
});

// ---------------------------------------------------------------------------
// Encoder error messages (exact)

const MAX = Number.MAX_SAFE_INTEGER;

test('encoders name every invalid number exactly', (t) => {
  const cases: Array<[() => unknown, string]> = [
    [() => encodeReqPages(-1, 0x1000), 'REQ_PAGES: start -1 is not an integer in [0, 9007199254740991]'],
    [() => encodeReqPages(2 ** 53, 0x1000), 'REQ_PAGES: start 9007199254740992 is not an integer in [0, 9007199254740991]'],
    [() => encodeReqPages(0, 0), 'REQ_PAGES: length 0 is not an integer in [1, 4294967295]'],
    [() => encodeReqPages(0, 2 ** 32), 'REQ_PAGES: length 4294967296 is not an integer in [1, 4294967295]'],
    [() => encodeReqPagesId('pc.ram', 0.5, 0x1000), 'REQ_PAGES_ID: start 0.5 is not an integer in [0, 9007199254740991]'],
    [() => encodeAdvise({ hostPageSizeSummary: NaN, targetPageSize: 4096 }), `POSTCOPY_ADVISE: host page size summary NaN is not an integer in [0, ${MAX}]`],
    [() => encodeAdvise({ hostPageSizeSummary: 4096, targetPageSize: -4096 }), `POSTCOPY_ADVISE: target page size -4096 is not an integer in [0, ${MAX}]`],
    [() => encodeRamDiscard({ blockName: 'a', ranges: [[0, 0x1000], [-1, 0x1000]] }), `POSTCOPY_RAM_DISCARD: range 1 start -1 is not an integer in [0, ${MAX}]`],
    [() => encodeRamDiscard({ blockName: 'a', ranges: [[0, 0]] }), `POSTCOPY_RAM_DISCARD: range 0 length 0 is not an integer in [1, ${MAX}]`],
    [() => encodeRamDiscard({ blockName: 'a', ranges: [] }), 'POSTCOPY_RAM_DISCARD: no ranges'],
    [() => encodeCommandFrame(65536), 'command frame: command 65536 is not an integer in [0, 65535]'],
    [() => encodeReturnPathFrame(-1), 'return-path frame: type -1 is not an integer in [0, 65535]'],
    [() => encodeCommandFrame(1, new Uint8Array(65536)), 'command frame: payload of 65536 bytes does not fit the 16-bit length field'],
    [() => encodeReturnPathFrame(1, [1, 2] as unknown as Uint8Array), 'return-path frame: payload is not a Uint8Array'],
  ];
  for (const [fn, message] of cases) t.throws(fn, { instanceOf: EncodeError, message });
});

test('encoders reject block names that cannot travel in a byte-length field', (t) => {
  const cases: Array<[() => unknown, string]> = [
    [() => encodeRecvBitmapRequest(''), 'RECV_BITMAP request: block name is empty'],
    [() => encodeReqPagesId('pc\0ram', 0, 0x1000), "REQ_PAGES_ID: block name 'pc\\0ram' contains a NUL byte"],
    [() => encodeRamDiscard({ blockName: 'a\ud800', ranges: [[0, 0x1000]] }), 'POSTCOPY_RAM_DISCARD: block name is not well-formed Unicode (lone surrogate)'],
    [() => encodeRecvBitmapRequest('x'.repeat(256)), `RECV_BITMAP request: block name '${'x'.repeat(256)}' is 256 bytes of UTF-8, at most 255 fit`],
    [() => encodeRecvBitmapRequest('é'.repeat(128)), `RECV_BITMAP request: block name '${'é'.repeat(128)}' is 256 bytes of UTF-8, at most 255 fit`],
  ];
  for (const [fn, message] of cases) t.throws(fn, { instanceOf: EncodeError, message });
});

// ---------------------------------------------------------------------------
// Decoder error messages (exact)

function decodeFails(t: import('ava').ExecutionContext, fn: () => unknown, message: string): void {
  t.throws(fn, { instanceOf: DecodeError, message });
}

test('REQ_PAGES and REQ_PAGES_ID decoders name truncation, huge starts, length 0, bad names and trailing bytes', (t) => {
  decodeFails(t, () => decodeReqPages(hex('00 00 00 00 03 aa 40')), 'REQ_PAGES: truncated: start needs 8 bytes, 7 left (at byte 0)');
  decodeFails(t, () => decodeReqPages(hex('00 00 00 00 03 aa 40 00 00 00 10')), 'REQ_PAGES: truncated: length needs 4 bytes, 3 left (at byte 8)');
  decodeFails(t, () => decodeReqPages(hex('00 20 00 00 00 00 00 00 00 00 10 00')), 'REQ_PAGES: start 0x0020000000000000 is not below 2^53 (at byte 0)');
  decodeFails(t, () => decodeReqPages(hex('ff ff ff ff ff ff ff ff 00 00 10 00')), 'REQ_PAGES: start 0xffffffffffffffff is not below 2^53 (at byte 0)');
  decodeFails(t, () => decodeReqPages(hex('00 00 00 00 00 00 00 00 00 00 00 00')), 'REQ_PAGES: length is 0 (at byte 8)');
  decodeFails(t, () => decodeReqPages(hex('00 00 00 00 03 aa 40 00 00 00 10 00 06')), 'REQ_PAGES: 1 trailing bytes after the length (at byte 12)');
  decodeFails(t, () => decodeReqPagesId(hex('00 00 00 00 03 aa 40 00 00 00 10 00')), 'REQ_PAGES_ID: truncated: name length needs 1 bytes, 0 left (at byte 12)');
  decodeFails(t, () => decodeReqPagesId(hex('00 00 00 00 03 aa 40 00 00 00 10 00 00')), 'REQ_PAGES_ID: name length is 0 (at byte 12)');
  decodeFails(t, () => decodeReqPagesId(hex(`00 00 00 00 03 aa 40 00 00 00 10 00 07 ${PC_RAM}`)), 'REQ_PAGES_ID: name length 7 runs past the end of the payload (6 bytes left) (at byte 12)');
  decodeFails(t, () => decodeReqPagesId(hex('00 00 00 00 03 aa 40 00 00 00 10 00 02 61 00')), 'REQ_PAGES_ID: block name contains a NUL byte (at byte 13)');
  decodeFails(t, () => decodeReqPagesId(hex('00 00 00 00 03 aa 40 00 00 00 10 00 02 c3 28')), 'REQ_PAGES_ID: block name is not valid UTF-8 (at byte 13)');
  decodeFails(t, () => decodeReqPagesId(hex(`00 00 00 00 03 aa 40 00 00 00 10 00 05 ${PC_RAM}`)), 'REQ_PAGES_ID: 1 trailing bytes after the name (at byte 18)');
  decodeFails(t, () => decodePageRequest(RpMessage.RESUME_ACK, encodeResumeAck()), 'return-path frame: type 6 is not REQ_PAGES (4) or REQ_PAGES_ID (3) (at byte 0)');
});

test('RAM_DISCARD decoder names a wrong version, a bad name, a bad terminator and bad ranges', (t) => {
  const range = '00 00 00 00 00 10 00 00 00 00 00 00 0e f0 00 00';
  decodeFails(t, () => decodeRamDiscard(new Uint8Array(0)), 'POSTCOPY_RAM_DISCARD: truncated: version needs 1 bytes, 0 left (at byte 0)');
  decodeFails(t, () => decodeRamDiscard(hex(`01 06 ${PC_RAM} 00 ${range}`)), 'POSTCOPY_RAM_DISCARD: version byte is 1, expected 0 (at byte 0)');
  decodeFails(t, () => decodeRamDiscard(hex('00 40 61 62 00')), 'POSTCOPY_RAM_DISCARD: name length 64 runs past the end of the payload (3 bytes left) (at byte 1)');
  decodeFails(t, () => decodeRamDiscard(hex(`00 06 ${PC_RAM}`)), 'POSTCOPY_RAM_DISCARD: truncated: name terminator needs 1 bytes, 0 left (at byte 8)');
  decodeFails(t, () => decodeRamDiscard(hex(`00 06 ${PC_RAM} 2f ${range}`)), 'POSTCOPY_RAM_DISCARD: byte after the name is 47, expected 0 (at byte 8)');
  decodeFails(t, () => decodeRamDiscard(hex(`00 06 ${PC_RAM} 00`)), 'POSTCOPY_RAM_DISCARD: no ranges (at byte 9)');
  decodeFails(t, () => decodeRamDiscard(hex(`00 06 ${PC_RAM} 00 ${range} 00`)), 'POSTCOPY_RAM_DISCARD: 17 bytes of ranges is not a multiple of 16 (at byte 9)');
  decodeFails(t, () => decodeRamDiscard(hex(`00 06 ${PC_RAM} 00 ${range} 00 00 00 00 00 20 00 00 00 00 00 00 00 00 00 00`)), 'POSTCOPY_RAM_DISCARD: range 1 has length 0 (at byte 33)');
  decodeFails(t, () => decodeRamDiscard(hex(`00 06 ${PC_RAM} 00 00 40 00 00 00 00 00 00 00 00 00 00 00 00 10 00`)), 'POSTCOPY_RAM_DISCARD: range 0 start 0x0040000000000000 is not below 2^53 (at byte 9)');
  decodeFails(t, () => decodeRamDiscard(hex(`00 06 ${PC_RAM} 00 00 00 00 00 00 00 00 00 80 00 00 00 00 00 10 00`)), 'POSTCOPY_RAM_DISCARD: range 0 length 0x8000000000001000 is not below 2^53 (at byte 17)');
});

test('ADVISE, RECV_BITMAP request and RESUME_ACK decoders name truncation, trailing bytes and bad values', (t) => {
  decodeFails(t, () => decodeAdvise(hex('00 00 00 00 00 00 10 00 00 00 00 00 00 00 10')), 'POSTCOPY_ADVISE: truncated: target page size needs 8 bytes, 7 left (at byte 8)');
  decodeFails(t, () => decodeAdvise(hex('00 00 00 00 00 00 10 00 00 00 00 00 00 00 10 00 00')), 'POSTCOPY_ADVISE: 1 trailing bytes after the target page size (at byte 16)');
  decodeFails(t, () => decodeAdvise(hex('01 00 00 00 00 00 10 00 00 00 00 00 00 00 10 00')), 'POSTCOPY_ADVISE: host page size summary 0x0100000000001000 is not below 2^53 (at byte 0)');
  decodeFails(t, () => decodeRecvBitmapRequest(new Uint8Array(0)), 'RECV_BITMAP request: truncated: name length needs 1 bytes, 0 left (at byte 0)');
  decodeFails(t, () => decodeRecvBitmapRequest(hex(`06 ${PC_RAM} 00`)), 'RECV_BITMAP request: 1 trailing bytes after the name (at byte 7)');
  decodeFails(t, () => decodeResumeAck(hex('00 00 00 02')), 'RESUME_ACK: value is 2, expected 1 (at byte 0)');
  decodeFails(t, () => decodeResumeAck(hex('00 00 01')), 'RESUME_ACK: truncated: value needs 4 bytes, 3 left (at byte 0)');
  decodeFails(t, () => decodeResumeAck(hex('00 00 00 01 00')), 'RESUME_ACK: 1 trailing bytes after the value (at byte 4)');
});

test('frame decoders name a wrong marker, a short payload and trailing bytes', (t) => {
  decodeFails(t, () => decodeCommandFrame(hex('09 00 04 00 00')), 'command frame: marker byte is 0x09, expected 0x08 (at byte 0)');
  decodeFails(t, () => decodeCommandFrame(hex('08 00')), 'command frame: truncated: command needs 2 bytes, 1 left (at byte 1)');
  decodeFails(t, () => decodeCommandFrame(hex('08 00 06 00 19 00 06')), 'command frame: truncated: length field says 25 bytes, 2 follow (at byte 3)');
  decodeFails(t, () => decodeCommandFrame(hex('08 00 04 00 00 08')), 'command frame: 1 trailing bytes after the payload (at byte 5)');
  decodeFails(t, () => decodeReturnPathFrame(hex('00 06 00')), 'return-path frame: truncated: length needs 2 bytes, 1 left (at byte 2)');
  decodeFails(t, () => decodeReturnPathFrame(hex('00 06 00 04 00 00 01')), 'return-path frame: truncated: length field says 4 bytes, 3 follow (at byte 2)');
  decodeFails(t, () => decodeReturnPathFrame(hex('00 06 00 00 00')), 'return-path frame: 1 trailing bytes after the payload (at byte 4)');
});

test('a decoded frame payload is a view of exactly the declared length', (t) => {
  const frame = hex('00 02 00 04 00 00 00 07');
  const { kind, payload } = decodeReturnPathFrame(frame);
  t.is(kind, RpMessage.PONG);
  t.is(toHex(payload), '00 00 00 07');
  t.is(payload.buffer, frame.buffer);
});
