/**
 * Bad input: each decoder refuses it with a WireError naming the reason and the exact byte
 * offset, never with a RangeError or a silent success; random and corrupted bytes too.
 */
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import {
  configuration,
  endOfSection,
  endOfStream,
  memSize,
  MainStreamDecoder,
  packaged,
  pageRecordHeader,
  PreemptChannelDecoder,
  ReturnPathDecoder,
  sectionFooter,
  sectionStart,
  streamHeader,
  zeroPageRecord,
  pageRequest,
  pong,
  recvBitmap,
  type MainStreamState,
} from '../../../src/engine/qemuWire/index.js';
import { WireError, type WireErrorReason } from '../../../src/errors.js';
import { encodeCommandFrame } from '../../../src/engine/wire.js';
import { forAll } from '../../../src/testing/properties.js';
import { loadCaptureHead, MAIN, TO_DESTINATION } from './capture.js';
import { decodeAll } from './decode.js';

const utf8 = new TextEncoder();

/** A plain Uint8Array (not a Buffer, whose slice() would be a view). */
function concat(...pieces: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(pieces));
}

/** A valid start of a main stream, up to inside the data of ram section 2 (after MEM_SIZE). */
const IN_SECTION = concat(streamHeader(), configuration('pc-i440fx-7.2'), sectionStart(2, 'ram', 0, 4), memSize([{ name: 'pc.ram', usedLength: 16 * 4096 }]));
/** The same, at the top level again (section closed by EOS and its footer). */
const AT_TOP = concat(IN_SECTION, endOfSection(), sectionFooter(2));

/** A RAM record header with raw flags (offset 0). */
function rawRecord(flags: number): Uint8Array {
  const out = new Uint8Array(8);
  out[6] = flags >>> 8;
  out[7] = flags & 0xff;
  return out;
}

type Decoder = { push(c: Uint8Array): unknown[]; end(): void };

/** Decodes `bytes` in one push then end(), and in one-byte pushes: both must fail the same way. */
function expectWireError(t: ExecutionContext, make: () => Decoder, bytes: Uint8Array, reason: WireErrorReason, offset: number, message?: RegExp): WireError | undefined {
  const whole = decodeAll(make(), [bytes]).error;
  const bytewise = decodeAll(make(), Array.from(bytes, (b) => Uint8Array.of(b))).error;
  if (!(whole instanceof WireError)) return void t.fail(`no WireError (reason ${reason} expected at ${offset})`);
  t.is(whole.reason, reason, whole.message);
  t.is(whole.offset, offset, whole.message);
  if (message) t.regex(whole.message, message);
  t.is(bytewise?.message, whole.message, 'the same error whatever the chunking');
  return whole;
}

const main = (): MainStreamDecoder => new MainStreamDecoder();

test('an HTTP request is not a migration stream: bad-magic at byte 0', (t) => {
  const http = utf8.encode('GET / HTTP/1.1\r\nHost: destination:4444\r\n\r\n');
  expectWireError(t, main, http, 'bad-magic', 0, /stream starts with 47 \('G'\), not the magic 51 45 56 4d/);
  // One byte is enough to know.
  t.throws(() => main().push(utf8.encode('G')), { instanceOf: WireError, message: /at byte 0/ });
});

test('a truncated header: end() reports the cut inside the header', (t) => {
  expectWireError(t, main, utf8.encode('QEVM\0\0'), 'cut', 6, /^main stream cut at byte 6 inside the stream header \(6 of its 8 bytes arrived\)$/);
  expectWireError(t, main, new Uint8Array(0), 'cut', 0, /no byte arrived/);
});

test('version 2: bad-version at the version field (byte 4)', (t) => {
  const header = streamHeader();
  header[7] = 2;
  expectWireError(t, main, header, 'bad-version', 4, /stream version 2, only 3/);
});

test('XBZRLE, COMPRESS_PAGE and MULTIFD_FLUSH records are unsupported, at the record', (t) => {
  for (const [flags, name] of [[0x40, 'XBZRLE'], [0x100, 'COMPRESS_PAGE'], [0x200, 'MULTIFD_FLUSH'], [0x40 | 0x20, 'XBZRLE']] as const) {
    expectWireError(t, main, concat(IN_SECTION, rawRecord(flags)), 'unsupported', IN_SECTION.length, new RegExp(`${name} RAM record`));
  }
  expectWireError(t, main, concat(IN_SECTION, rawRecord(0x80)), 'malformed', IN_SECTION.length, /flags 0x080 are not valid in section 2/);
});

test('an unknown command, ENABLE_COLO, an unknown section type byte and a section other than ram are unsupported', (t) => {
  expectWireError(t, main, concat(AT_TOP, encodeCommandFrame(42, Uint8Array.of(1, 2))), 'unsupported', AT_TOP.length + 1, /unknown command 42 \(length 2\)/);
  expectWireError(t, main, concat(AT_TOP, encodeCommandFrame(8)), 'unsupported', AT_TOP.length + 1, /ENABLE_COLO/);
  expectWireError(t, main, concat(AT_TOP, Uint8Array.of(0x42)), 'unsupported', AT_TOP.length, /unknown section type byte 0x42/);
  expectWireError(t, main, concat(AT_TOP, sectionStart(3, 'block', 0, 1)), 'unsupported', AT_TOP.length, /section 'block'/);
});

test('broken framing inside a ram section is malformed, at the byte that is wrong', (t) => {
  const footerAt = IN_SECTION.length + 8;
  expectWireError(t, main, concat(IN_SECTION, endOfSection(), sectionFooter(3)), 'malformed', footerAt + 1, /footer names section 3, the section being read is 2/);
  expectWireError(t, main, concat(IN_SECTION, endOfSection(), Uint8Array.of(0x02)), 'malformed', footerAt, /expected SECTION_FOOTER/);
  expectWireError(t, main, concat(IN_SECTION, pageRecordHeader(0, null)), 'malformed', IN_SECTION.length, /CONTINUE but no previous block/);
  const zero = zeroPageRecord(4096, 'pc.ram');
  zero[zero.length - 1] = 1;
  expectWireError(t, main, concat(IN_SECTION, zero), 'malformed', IN_SECTION.length + zero.length - 1, /fill byte is 0x01/);
  expectWireError(t, main, concat(IN_SECTION, pageRecordHeader(16 * 4096, 'pc.ram')), 'malformed', IN_SECTION.length, /outside block 'pc.ram'/);
  expectWireError(t, main, concat(IN_SECTION, pageRecordHeader(0, 'pc.rom')), 'malformed', IN_SECTION.length + 8, /unknown block 'pc.rom'/);
  expectWireError(t, main, concat(AT_TOP, Uint8Array.of(0x02, 0, 0, 0, 9)), 'malformed', AT_TOP.length + 1, /section id 9, which no SECTION_START opened/);
  expectWireError(t, main, concat(AT_TOP, endOfStream(), Uint8Array.of(0)), 'malformed', AT_TOP.length + 1, /after EOF/);
});

test('a stream cut inside a page: end() names the record, where it started and the last complete item', (t) => {
  const decoder = main();
  const cut = concat(IN_SECTION, zeroPageRecord(0, 'pc.ram'), pageRecordHeader(4096, null), new Uint8Array(100));
  const recordAt = IN_SECTION.length + 16;
  const error = expectWireError(t, main, cut, 'cut', cut.length, new RegExp(`^main stream cut at byte ${cut.length} inside a PAGE record of 'pc.ram' at page offset 0x1000 that started at byte ${recordAt} \\(108 of its bytes arrived\\)$`));
  t.is(error?.lastItemEnd, recordAt);
  t.deepEqual(decoder.push(cut).map((i) => i.kind), ['header', 'configuration', 'section-start', 'mem-size', 'zero-page']);
  t.is(decoder.lastItemEnd, recordAt);
  t.is(decoder.bytesReceived, cut.length);
});

test('MEM_SIZE must add up: a zero total, a block listed twice, a used length that is not whole pages', (t) => {
  const start = concat(streamHeader(), sectionStart(2, 'ram', 0, 4));
  const twice = memSize([{ name: 'a', usedLength: 4096 }, { name: 'b', usedLength: 4096 }]);
  twice[8 + 1 + 1 + 8 + 1] = 'a'.charCodeAt(0); // rename block b to a
  expectWireError(t, main, concat(start, twice), 'malformed', start.length + 18, /lists block 'a' twice/);
  const zeroTotal = new Uint8Array(8);
  zeroTotal[7] = 4;
  expectWireError(t, main, concat(start, zeroTotal), 'malformed', start.length, /MEM_SIZE total 0/);
  const oddLength = memSize([{ name: 'a', usedLength: 8192 }]);
  oddLength[oddLength.length - 1] = 1; // used length 0x2001
  expectWireError(t, main, concat(start, oddLength), 'malformed', start.length + 10, /used length 8193 is not a positive multiple of 4096/);
});

test('a PACKAGED holds exactly LISTEN, device state, PING, RUN: anything else is named with its offset', (t) => {
  const [head, state, tail] = packaged(utf8.encode('device state'), 3);
  const good = concat(head, state, tail);
  t.deepEqual(
    decodeAll(new MainStreamDecoder({ resume: { sections: new Map(), blocks: [], lastBlock: null, advise: null } }), [good]).items.map((i) => i.kind),
    ['packaged', 'listen', 'device-state', 'ping', 'run'],
  );
  const resumed = (): MainStreamDecoder => new MainStreamDecoder({ resume: { sections: new Map(), blocks: [], lastBlock: null, advise: null } satisfies MainStreamState });
  const badListen = good.slice();
  badListen[9 + 2] = 5; // RUN where LISTEN belongs
  expectWireError(t, resumed, badListen, 'malformed', 11, /does not start with POSTCOPY_LISTEN/);
  const noRun = good.slice();
  noRun[noRun.length - 3] = 4;
  expectWireError(t, resumed, noRun, 'malformed', good.length - 3, /does not end with POSTCOPY_RUN/);
  const noPing = good.slice();
  noPing[noPing.length - 14 + 2] = 9;
  expectWireError(t, resumed, noPing, 'malformed', good.length - 12, /no PING/);
  const tooShort = concat(encodeCommandFrame(7, Uint8Array.of(0, 0, 0, 5)), new Uint8Array(5));
  expectWireError(t, resumed, tooShort, 'malformed', 5, /PACKAGED length 5/);
  expectWireError(t, resumed, good.subarray(0, 20), 'cut', 20, /a COMMAND PACKAGED item that started at byte 0/);
});

test('the return path: wrong end mark, REQ_PAGES before any block, unknown type', (t) => {
  const rp = (): ReturnPathDecoder => new ReturnPathDecoder();
  const [head, bitmap, mark] = recvBitmap('pc.ram', new Uint8Array(16));
  const wrongMark = mark.slice();
  wrongMark[7] ^= 1;
  expectWireError(t, rp, concat(pong(1), head, bitmap, wrongMark), 'malformed', 8 + head.length + 16, /ends with 0x0123456789abcdee, not the end mark/);
  expectWireError(t, rp, concat(pong(1), pageRequest(null, 0, 4096)), 'malformed', 8, /REQ_PAGES before any REQ_PAGES_ID/);
  expectWireError(t, rp, Uint8Array.of(0, 99, 0, 0), 'unsupported', 0, /unknown return-path message type 99/);
  expectWireError(t, rp, concat(pageRequest('pc.ram', 0, 4096), new Uint8Array(3)), 'cut', 26, /message that started at byte 23 \(3 of its bytes arrived\)/);
  const magicLater = utf8.encode('QEVX');
  expectWireError(t, main, magicLater, 'bad-magic', 3, /stream starts with 51 45 56 58 \('X'\)/);
  expectWireError(t, rp, Uint8Array.of(0, 2, 0, 5, 0, 0, 0, 0, 0), 'malformed', 2, /PONG with payload length 5, expected 4/);
});

test('after a WireError, every push() throws that same error', (t) => {
  const decoder = main();
  const first = t.throws(() => decoder.push(utf8.encode('GET /')), { instanceOf: WireError });
  t.is(t.throws(() => decoder.push(streamHeader())), first);
  t.is(t.throws(() => decoder.end()), first);
});

/** Only a WireError may come out of a decoder; returns it (or null). */
function onlyWireErrors(make: () => Decoder, chunks: Iterable<Uint8Array>): WireError | null {
  try {
    return decodeAll(make(), chunks).error;
  } catch (e) {
    throw new Error(`not a WireError: ${String(e)}`);
  }
}

function* chunked(bytes: Uint8Array, sizes: readonly number[]): Generator<Uint8Array> {
  for (let at = 0, i = 0; at < bytes.length; i++) {
    yield bytes.subarray(at, at + sizes[i % sizes.length]!);
    at += sizes[i % sizes.length]!;
  }
}

const sizesArb = fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 6 });

test('random bytes: every decoder (main first and resumed, preempt, return path) answers with a WireError or items, never anything else', (t) => {
  const resumeState: MainStreamState = { sections: new Map([[2, 'ram']]), blocks: [{ name: 'pc.ram', usedLength: 1 << 28 }], lastBlock: 'pc.ram', advise: null };
  const decoders: Array<() => Decoder> = [
    () => new MainStreamDecoder(),
    () => new MainStreamDecoder({ resume: resumeState }),
    () => new PreemptChannelDecoder(),
    () => new ReturnPathDecoder({ lastRequestBlock: 'pc.ram' }),
  ];
  forAll(t, fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 600 }), sizesArb), ([bytes, sizes]) => {
    for (const make of decoders) {
      const whole = onlyWireErrors(make, [bytes]);
      const split = onlyWireErrors(make, chunked(bytes, sizes));
      if (whole?.message !== split?.message) throw new Error(`chunking changed the outcome: ${whole?.message} / ${split?.message}`);
      if (whole && !(whole.offset >= 0 && whole.offset <= bytes.length)) throw new Error(`offset ${whole.offset} outside the ${bytes.length} bytes`);
    }
  });
});

test('a corrupted capture prefix: a WireError at or before the end, or clean items; never another error', (t) => {
  const prefix = loadCaptureHead('plain', 'wire-main.gz', 256 * 1024).bytes(MAIN, TO_DESTINATION).subarray(0, 64 * 1024);
  t.is(prefix.length, 64 * 1024);
  const corruptions = fc.array(fc.tuple(fc.integer({ min: 0, max: prefix.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 });
  forAll(t, fc.tuple(corruptions, sizesArb), ([changes, sizes]) => {
    const bytes = prefix.slice();
    for (const [at, value] of changes) bytes[at] = value;
    const whole = onlyWireErrors(() => new MainStreamDecoder(), [bytes]);
    const split = onlyWireErrors(() => new MainStreamDecoder(), chunked(bytes, sizes));
    if (whole?.message !== split?.message) throw new Error(`chunking changed the outcome: ${whole?.message} / ${split?.message}`);
    // The prefix stops inside the precopy stream: at best a cut.
    if (whole === null) throw new Error('a 64 KiB prefix cannot end cleanly');
  });
});
