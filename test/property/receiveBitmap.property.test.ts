import test from 'ava';
import fc from 'fast-check';
import { Bitmap } from '../../src/engine/bitmap.js';
import { TARGET_PAGE_SIZE } from '../../src/engine/constants.js';
import {
  decodeReceiveBitmap,
  encodeReceiveBitmap,
  receiveBitmapSizeBytes,
  reloadReceiveBitmap,
} from '../../src/engine/receiveBitmap.js';
import { DecodeError } from '../../src/errors.js';
import { forAll } from '../../src/testing/properties.js';
import { runsBitmap } from '../../src/testing/arbitraries.js';

/** A bitmap of `size` bits built from random runs (dense, sparse, or anything between). */
function bitmapArb(minSize: number, maxSize: number): fc.Arbitrary<Bitmap> {
  return runsBitmap(minSize, maxSize, { runDivisor: 8, maxOps: 30, minLength: 0 });
}

/** The bits of a bitmap as booleans: the model the properties compare with. */
function bitsOf(bm: Bitmap): boolean[] {
  return Array.from({ length: bm.size }, (_, i) => bm.test(i));
}

function sizeField(blob: Uint8Array): number {
  const dv = new DataView(blob.buffer, blob.byteOffset);
  return dv.getUint32(0) * 2 ** 32 + dv.getUint32(4);
}

function expectDecodeError(blob: Uint8Array, bits: number, what: string): void {
  try {
    decodeReceiveBitmap(blob, bits);
  } catch (err) {
    if (err instanceof DecodeError) return;
    throw new Error(`${what}: threw a non-DecodeError ${String(err)}`);
  }
  throw new Error(`${what}: was accepted`);
}

test('every size from 1 to 200 bits round-trips with a size field of whole 64-bit words', (t) => {
  let checked = 0;
  for (let bits = 1; bits <= 200; bits++) {
    const patterns = [new Bitmap(bits), new Bitmap(bits), new Bitmap(bits), new Bitmap(bits)];
    patterns[1]!.setAll();
    for (let i = 0; i < bits; i += 3) patterns[2]!.set(i);
    patterns[3]!.set(bits - 1);
    for (const bm of patterns) {
      const blob = encodeReceiveBitmap(bm);
      const size = Math.ceil(Math.ceil(bits / 8) / 8) * 8;
      t.is(sizeField(blob), size, `${bits} bits`);
      t.is(blob.length, 8 + size + 8);
      t.true(decodeReceiveBitmap(blob, bits).equals(bm), `${bits} bits round-trip`);
      checked++;
    }
  }
  t.is(checked, 800);
});

test('random bitmaps, small and large, round-trip and carry the right size field', (t) => {
  forAll(t, fc.oneof(bitmapArb(0, 200), bitmapArb(200, 1 << 18)), (bm) => {
    const blob = encodeReceiveBitmap(bm);
    const size = sizeField(blob);
    if (size !== receiveBitmapSizeBytes(bm.size) || size !== Math.ceil(bm.size / 64) * 8) {
      throw new Error(`size field ${size} for ${bm.size} bits`);
    }
    if (size * 8 < bm.size) throw new Error('the body cannot hold every bit');
    if (!decodeReceiveBitmap(blob, bm.size).equals(bm)) throw new Error(`round-trip of ${bm.size} bits`);
  });
});

test('a prefix of a bitmap round-trips as exactly that prefix', (t) => {
  forAll(t, bitmapArb(1, 2000).chain((bm) => fc.tuple(fc.constant(bm), fc.nat({ max: bm.size }))), ([bm, bits]) => {
    const decoded = decodeReceiveBitmap(encodeReceiveBitmap(bm, bits), bits);
    const want = bitsOf(bm).slice(0, bits);
    if (JSON.stringify(bitsOf(decoded)) !== JSON.stringify(want)) throw new Error(`prefix of ${bits} bits`);
  });
});

type Corruption =
  | { kind: 'size'; value: number }
  | { kind: 'endMark'; at: number; xor: number }
  | { kind: 'truncate'; keep: number }
  | { kind: 'append'; extra: number };

const corruptionArb: fc.Arbitrary<Corruption> = fc.oneof(
  fc.record({ kind: fc.constant('size' as const), value: fc.oneof(fc.maxSafeNat(), fc.nat({ max: 4096 })) }),
  fc.record({ kind: fc.constant('endMark' as const), at: fc.nat({ max: 7 }), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
  fc.record({ kind: fc.constant('append' as const), extra: fc.integer({ min: 1, max: 16 }) }),
);

test('any corruption of the size field or the end mark, any truncation or extension is rejected', (t) => {
  forAll(t, fc.tuple(bitmapArb(0, 3000), corruptionArb), ([bm, c]) => {
    const blob = encodeReceiveBitmap(bm);
    let bad: Uint8Array;
    switch (c.kind) {
      case 'size': {
        if (c.value === receiveBitmapSizeBytes(bm.size)) return; // not a corruption
        bad = blob.slice();
        const dv = new DataView(bad.buffer);
        dv.setUint32(0, Math.floor(c.value / 2 ** 32));
        dv.setUint32(4, c.value % 2 ** 32);
        break;
      }
      case 'endMark':
        bad = blob.slice();
        bad[bad.length - 8 + c.at]! ^= c.xor;
        break;
      case 'truncate':
        bad = blob.slice(0, c.keep % blob.length);
        break;
      case 'append':
        bad = new Uint8Array(blob.length + c.extra);
        bad.set(blob);
        break;
    }
    expectDecodeError(bad, bm.size, c.kind);
  });
});

// ---------------------------------------------------------------------------
// 6. Source reload = complement minus permanently discarded ranges

test('source reload is the complement of the received bits minus the permanently discarded ranges', (t) => {
  const caseArb = bitmapArb(1, 5000).chain((received) =>
    fc.tuple(
      fc.constant(received),
      fc.array(fc.tuple(fc.nat({ max: received.size - 1 }), fc.integer({ min: 1, max: Math.max(1, received.size >> 2) })), {
        maxLength: 6,
      }),
    ),
  );
  forAll(t, caseArb, ([received, pageRanges]) => {
    const pages = received.size;
    const discarded = pageRanges.map(([s, c]) => [s * TARGET_PAGE_SIZE, Math.min(c, pages - s) * TARGET_PAGE_SIZE] as const);
    const dirty = reloadReceiveBitmap({ name: 'b', pages, discarded }, encodeReceiveBitmap(received));
    const inDiscarded = (i: number) => discarded.some(([o, l]) => i * TARGET_PAGE_SIZE >= o && i * TARGET_PAGE_SIZE < o + l);
    const want = bitsOf(received).map((r, i) => !r && !inDiscarded(i));
    if (dirty.size !== pages) throw new Error(`size ${dirty.size}`);
    const got = bitsOf(dirty);
    const wrong = got.findIndex((b, i) => b !== want[i]);
    if (wrong >= 0) throw new Error(`page ${wrong}: dirty ${got[wrong]}, expected ${want[wrong]}`);
  });
});
