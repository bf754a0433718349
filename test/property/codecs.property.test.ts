import test from 'ava';
import fc from 'fast-check';
import { Bitmap } from '../../src/engine/bitmap.js';
import { MigCommand, RpMessage } from '../../src/engine/constants.js';
import { decodeReceiveBitmap, encodeReceiveBitmap } from '../../src/engine/receiveBitmap.js';
import {
  decodeAdvise,
  decodeCommandFrame,
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
  ReturnPathRequester,
} from '../../src/engine/wire.js';
import { DecodeError } from '../../src/errors.js';
import { forAll } from '../../src/testing/properties.js';

const utf8 = new TextEncoder();


/** Names that fit the byte-length field: 1-255 bytes of UTF-8, no NUL, well-formed. */
const blockNameArb = fc
  .oneof(
    fc.string({ unit: 'binary', minLength: 1, maxLength: 70 }),
    fc.string({ unit: fc.constantFrom('a', '.', '/', 'é', '€', '😀'), minLength: 1, maxLength: 255 }),
    fc.constantFrom('pc.ram', 'pc.bios', '/rom@etc/acpi/tables', 'x'.repeat(255)),
  )
  .filter((s) => !s.includes('\0') && utf8.encode(s).length <= 255);

const be64Arb = fc.oneof(fc.maxSafeNat(), fc.nat(), fc.constantFrom(0, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER));
const positiveBe64Arb = be64Arb.filter((n) => n > 0);
const be32LengthArb = fc.oneof(fc.integer({ min: 1, max: 0xffff_ffff }), fc.constantFrom(0x1000, 0x20_0000, 0x4000_0000));
const rangesArb = fc.array(fc.tuple(be64Arb, positiveBe64Arb), { minLength: 1, maxLength: 20 });
const payloadArb = fc.uint8Array({ maxLength: 300 });

// ---------------------------------------------------------------------------
// 5a. Every codec round-trips

test('RAM_DISCARD round-trips', (t) => {
  forAll(t, fc.tuple(blockNameArb, rangesArb), ([blockName, ranges]) => {
    const value = { blockName, ranges };
    const decoded = decodeRamDiscard(encodeRamDiscard(value));
    if (JSON.stringify(decoded) !== JSON.stringify(value)) throw new Error(`got ${JSON.stringify(decoded)}`);
  });
});

test('ADVISE, RECV_BITMAP request, REQ_PAGES, REQ_PAGES_ID and RESUME_ACK round-trip', (t) => {
  forAll(t, fc.tuple(be64Arb, be64Arb, blockNameArb, be32LengthArb), ([a, b, name, len]) => {
    const advise = decodeAdvise(encodeAdvise({ hostPageSizeSummary: a, targetPageSize: b }));
    if (advise.hostPageSizeSummary !== a || advise.targetPageSize !== b) throw new Error(`ADVISE ${JSON.stringify(advise)}`);
    if (decodeRecvBitmapRequest(encodeRecvBitmapRequest(name)) !== name) throw new Error('RECV_BITMAP request');
    const rp = decodeReqPages(encodeReqPages(a, len));
    if (rp.blockName !== null || rp.start !== a || rp.length !== len) throw new Error(`REQ_PAGES ${JSON.stringify(rp)}`);
    const rpi = decodeReqPagesId(encodeReqPagesId(name, b, len));
    if (rpi.blockName !== name || rpi.start !== b || rpi.length !== len) throw new Error(`REQ_PAGES_ID ${JSON.stringify(rpi)}`);
    if (decodeResumeAck(encodeResumeAck()) !== 1) throw new Error('RESUME_ACK');
  });
});

test('command and return-path frames round-trip', (t) => {
  forAll(t, fc.tuple(fc.integer({ min: 0, max: 0xffff }), payloadArb), ([kind, payload]) => {
    const c = decodeCommandFrame(encodeCommandFrame(kind, payload));
    const r = decodeReturnPathFrame(encodeReturnPathFrame(kind, payload));
    for (const f of [c, r]) {
      if (f.kind !== kind || Buffer.compare(f.payload, payload) !== 0) throw new Error(`frame ${f.kind}`);
    }
  });
});

test('a stream of page requests decodes back to the faults, each naming the right block', (t) => {
  const faultArb = fc.tuple(fc.constantFrom('pc.ram', 'pc.bios', 'vga.vram'), fc.maxSafeNat(), be32LengthArb);
  forAll(t, fc.array(faultArb, { maxLength: 40 }), (faults) => {
    const rq = new ReturnPathRequester();
    let last: string | null = null;
    for (const [name, start, length] of faults) {
      const { type, payload } = rq.request(name, start, length);
      const frame = decodeReturnPathFrame(encodeReturnPathFrame(type, payload));
      const req = frame.kind === RpMessage.REQ_PAGES ? decodeReqPages(frame.payload) : decodeReqPagesId(frame.payload);
      // The source resolves REQ_PAGES against the last block named.
      const resolved: string | null = req.blockName ?? last;
      if (resolved !== name || req.start !== start || req.length !== length) throw new Error(`request ${JSON.stringify(req)} for ${name}`);
      if ((req.blockName !== null) !== (name !== last)) throw new Error(`named ${String(req.blockName)} after ${String(last)}`);
      last = resolved;
    }
  });
});

// ---------------------------------------------------------------------------
// 5b. Random bytes give typed errors or exact values, never anything else

interface Decoder {
  name: string;
  /** Decodes and re-encodes; a successful decode must re-encode to the same bytes. */
  roundTrip(bytes: Uint8Array, bits: number): Uint8Array;
  /** A valid encoding to corrupt. */
  valid: fc.Arbitrary<Uint8Array>;
}

const decoders: Decoder[] = [
  {
    name: 'command frame',
    roundTrip: (b) => {
      const f = decodeCommandFrame(b);
      return encodeCommandFrame(f.kind, f.payload);
    },
    valid: fc.tuple(fc.constantFrom(...Object.values(MigCommand)), payloadArb).map(([k, p]) => encodeCommandFrame(k, p)),
  },
  {
    name: 'return-path frame',
    roundTrip: (b) => {
      const f = decodeReturnPathFrame(b);
      return encodeReturnPathFrame(f.kind, f.payload);
    },
    valid: fc.tuple(fc.constantFrom(...Object.values(RpMessage)), payloadArb).map(([k, p]) => encodeReturnPathFrame(k, p)),
  },
  {
    name: 'POSTCOPY_ADVISE',
    roundTrip: (b) => encodeAdvise(decodeAdvise(b)),
    valid: fc.tuple(be64Arb, be64Arb).map(([a, b]) => encodeAdvise({ hostPageSizeSummary: a, targetPageSize: b })),
  },
  {
    name: 'POSTCOPY_RAM_DISCARD',
    roundTrip: (b) => encodeRamDiscard(decodeRamDiscard(b)),
    valid: fc.tuple(blockNameArb, rangesArb).map(([blockName, ranges]) => encodeRamDiscard({ blockName, ranges })),
  },
  {
    name: 'RECV_BITMAP request',
    roundTrip: (b) => encodeRecvBitmapRequest(decodeRecvBitmapRequest(b)),
    valid: blockNameArb.map(encodeRecvBitmapRequest),
  },
  {
    name: 'REQ_PAGES',
    roundTrip: (b) => {
      const r = decodeReqPages(b);
      if (r.blockName !== null) throw new Error('REQ_PAGES decoded a block name');
      return encodeReqPages(r.start, r.length);
    },
    valid: fc.tuple(be64Arb, be32LengthArb).map(([s, l]) => encodeReqPages(s, l)),
  },
  {
    name: 'REQ_PAGES_ID',
    roundTrip: (b) => {
      const r = decodeReqPagesId(b);
      return encodeReqPagesId(r.blockName!, r.start, r.length);
    },
    valid: fc.tuple(blockNameArb, be64Arb, be32LengthArb).map(([n, s, l]) => encodeReqPagesId(n, s, l)),
  },
  {
    name: 'RESUME_ACK',
    roundTrip: (b) => {
      decodeResumeAck(b);
      return encodeResumeAck();
    },
    valid: fc.constant(encodeResumeAck()),
  },
  {
    name: 'RECV_BITMAP blob',
    roundTrip: (b, bits) => encodeReceiveBitmap(decodeReceiveBitmap(b, bits)),
    valid: fc.integer({ min: 0, max: 300 }).chain((bits) =>
      fc.array(fc.nat({ max: Math.max(0, bits - 1) }), { maxLength: bits === 0 ? 0 : 20 }).map((set) => {
        const bm = new Bitmap(bits);
        for (const i of set) bm.set(i);
        return encodeReceiveBitmap(bm);
      }),
    ),
  },
];

/** Usually 0 (decode a blob against the block size it claims), sometimes a few bits off. */
const skewArb = fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 70 }) });

/** The bit count a blob claims, less `skew`: the blob decoded against a matching or smaller block. */
function blobBits(bytes: Uint8Array, skew: number): number {
  if (bytes.length < 8) return skew;
  const size = new DataView(bytes.buffer, bytes.byteOffset).getUint32(4);
  return Math.max(0, Math.min(size * 8, 2 ** 24) - skew);
}

type Corruption =
  | { kind: 'random'; bytes: Uint8Array }
  | { kind: 'set'; at: number; fromEnd: boolean; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'append'; bytes: Uint8Array }
  | { kind: 'none' };

const corruptionArb: fc.Arbitrary<Corruption> = fc.oneof(
  fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ maxLength: 80 }) }),
  // Headers and end marks are where the checks are: aim most byte changes near either end.
  fc.record({
    kind: fc.constant('set' as const),
    at: fc.oneof(fc.nat({ max: 24 }), fc.nat()),
    fromEnd: fc.boolean(),
    value: fc.nat({ max: 255 }),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 20 }) }),
  fc.constant({ kind: 'none' as const }),
);

function corrupt(valid: Uint8Array, c: Corruption): Uint8Array {
  switch (c.kind) {
    case 'random':
      return c.bytes;
    case 'set': {
      const out = valid.slice();
      if (out.length > 0) {
        const at = c.at % out.length;
        out[c.fromEnd ? out.length - 1 - at : at] = c.value;
      }
      return out;
    }
    case 'truncate':
      return valid.slice(0, valid.length === 0 ? 0 : c.at % valid.length);
    case 'append': {
      const out = new Uint8Array(valid.length + c.bytes.length);
      out.set(valid);
      out.set(c.bytes, valid.length);
      return out;
    }
    case 'none':
      return valid;
  }
}

for (const d of decoders) {
  test(`${d.name}: any bytes decode to exactly themselves or throw a DecodeError`, (t) => {
    let decodedCount = 0;
    let rejectedCount = 0;
    forAll(t, fc.tuple(d.valid, corruptionArb, skewArb), ([valid, c, skew]) => {
      const bytes = corrupt(valid, c);
      const bits = blobBits(bytes, skew);
      let again: Uint8Array;
      try {
        again = d.roundTrip(bytes, bits);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw new Error(`${d.name} threw a non-DecodeError: ${String(err)}`);
        if (!err.message.startsWith(`${d.name}: `)) throw new Error(`message does not name the format: ${err.message}`);
        if (!(err.at >= 0 && err.at <= bytes.length)) throw new Error(`offset ${err.at} outside ${bytes.length} bytes`);
        rejectedCount++;
        return;
      }
      // A successful decode consumed every byte and lost nothing: it re-encodes identically.
      if (Buffer.compare(again, bytes) !== 0) throw new Error(`${d.name} decoded a partial or altered value`);
      decodedCount++;
    });
    // Both outcomes must have been exercised, or the property says little.
    t.true(rejectedCount > 0, 'some inputs were rejected');
    t.true(decodedCount > 0, 'some inputs decoded');
  });
}
