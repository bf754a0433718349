import test from 'ava';
import fc from 'fast-check';
import { Bitmap } from '../../src/engine/bitmap.js';
import { forAll } from '../../src/testing/properties.js';

/**
 * The SIMD scanners (wasm, for large bitmaps) must answer exactly like the JS scanners
 * (checked against a Set model in bitmap.test.ts): the same bitmap is built on both
 * paths and every query is compared. Sizes cover word, 16-byte and 64-byte block
 * edges and the default threshold (2^16 bits), where the real engine switches.
 */

/** The same size twice: [SIMD path, JS path]. */
function pair(size: number): [Bitmap, Bitmap] {
  const saved = Bitmap.simdMinBits;
  try {
    Bitmap.simdMinBits = 1;
    const simd = new Bitmap(size);
    Bitmap.simdMinBits = Infinity;
    return [simd, new Bitmap(size)];
  } finally {
    Bitmap.simdMinBits = saved;
  }
}

type Op = { op: 'setRange' | 'clearRange'; s: number; c: number };

/** Positions anywhere, or next to a 64-bit word edge (where scans change words). */
function positionArb(size: number): fc.Arbitrary<number> {
  const nearEdge = fc
    .tuple(fc.nat({ max: Math.floor(size / 64) }), fc.integer({ min: -2, max: 2 }))
    .map(([k, d]) => Math.min(size - 1, Math.max(0, k * 64 + d)));
  return fc.oneof(fc.nat({ max: size - 1 }), nearEdge);
}

/** Short and long ranges (long ones span many 64-byte blocks). */
function opArb(size: number): fc.Arbitrary<Op> {
  const length = fc.oneof(fc.nat({ max: 70 }), fc.nat({ max: 1200 }), fc.nat({ max: size }));
  return fc
    .tuple(fc.constantFrom('setRange' as const, 'clearRange' as const), positionArb(size), length)
    .map(([op, s, c]) => ({ op, s, c: Math.min(c, size - s) }));
}

const sizeArb = fc.oneof(
  fc.constantFrom(1, 63, 64, 65, 127, 128, 129, 191, 192, 193, 511, 512, 513, 575, 576, 577, 1024, 4097),
  fc.integer({ min: 1, max: 3000 }),
  fc.integer({ min: 2 ** 16 - 64, max: 2 ** 16 + 3000 }),
);

const caseArb = sizeArb.chain((size) =>
  fc.tuple(fc.constant(size), fc.array(opArb(size), { maxLength: 30 }), fc.array(positionArb(size), { maxLength: 40 })),
);

/** Where to compare scans: every bit of small bitmaps; otherwise run edges, block edges and samples. */
function probes(size: number, js: Bitmap, extra: number[]): number[] {
  if (size <= 1100) return Array.from({ length: size + 1 }, (_, i) => i);
  const out = [0, size - 1, size, ...extra];
  for (const [s, l] of js.runs().slice(0, 400)) out.push(s - 1, s, s + 1, s + l - 1, s + l, s + l + 1);
  for (let i = 0; i < size; i += 509) out.push(i);
  return out.filter((i) => i >= 0 && i <= size);
}

function check(simd: Bitmap, js: Bitmap, size: number, extra: number[]): void {
  const fail = (what: string, got: unknown, want: unknown): never => {
    throw new Error(`${what}: SIMD gave ${JSON.stringify(got)}, JS ${JSON.stringify(want)} (size ${size})`);
  };
  for (const from of probes(size, js, extra)) {
    if (simd.findNextSet(from) !== js.findNextSet(from)) fail(`findNextSet(${from})`, simd.findNextSet(from), js.findNextSet(from));
    if (simd.findNextZero(from) !== js.findNextZero(from)) fail(`findNextZero(${from})`, simd.findNextZero(from), js.findNextZero(from));
  }
  const a = JSON.stringify(simd.runs());
  const b = JSON.stringify(js.runs());
  if (a !== b) fail('runs', a, b);
  if (simd.count() !== js.count()) fail('count', simd.count(), js.count());
  for (const s of extra.slice(0, 10)) {
    const c = Math.min(size - s, 1 + (s % 3000));
    if (simd.countRange(s, c) !== js.countRange(s, c)) fail(`countRange(${s}, ${c})`, simd.countRange(s, c), js.countRange(s, c));
    if (simd.testRangeAllSet(s, c) !== js.testRangeAllSet(s, c)) fail(`testRangeAllSet(${s}, ${c})`, simd.testRangeAllSet(s, c), js.testRangeAllSet(s, c));
    if (simd.testRangeAllClear(s, c) !== js.testRangeAllClear(s, c)) fail(`testRangeAllClear(${s}, ${c})`, simd.testRangeAllClear(s, c), js.testRangeAllClear(s, c));
  }
}

test('the SIMD scanners answer every scan exactly like the JS scanners', (t) => {
  forAll(t, caseArb, ([size, ops, extra]) => {
    const [simd, js] = pair(size);
    if (!simd.usesSimd || js.usesSimd) throw new Error('pair() did not give one bitmap per path');
    for (const o of ops) for (const bm of [simd, js]) bm[o.op](o.s, o.c);
    check(simd, js, size, extra);
    // The complement swaps every run and gap, so it exercises the other scanner on the same shapes.
    check(simd.complement(), js.complement(), size, extra);
  });
});

test('clone, complement and decoding give the same bits on either path', (t) => {
  const [simd, js] = pair(700);
  for (const bm of [simd, js]) {
    bm.setRange(3, 500);
    bm.set(699);
  }
  t.deepEqual(simd.clone().runs(), js.clone().runs());
  t.deepEqual(simd.complement().runs(), js.complement().runs());
  t.deepEqual(simd.toLE64Bytes(), js.toLE64Bytes());
  t.deepEqual(Bitmap.fromLE64Bytes(700, simd.toLE64Bytes()).runs(), [[3, 500], [699, 1]]);
  t.true(simd.equals(js));
});

test('bitmaps of at least simdMinBits bits use the SIMD path, smaller ones the JS path', (t) => {
  t.true(new Bitmap(Bitmap.simdMinBits).usesSimd);
  t.false(new Bitmap(Bitmap.simdMinBits - 1).usesSimd);
  t.false(new Bitmap(0).usesSimd);
  t.is(new Bitmap(2 ** 28).words.byteLength, 32 * 2 ** 20, 'wasm-backed words are exactly wordsFor(size) long');
});

test('the constructor copies the words it is given', (t) => {
  for (const size of [64, 2 ** 16]) {
    const words = new Int32Array(Bitmap.wordsFor(size));
    words[1] = 1; // bit 32
    const bm = new Bitmap(size, words);
    words[0] = 1;
    t.deepEqual(bm.runs(), [[32, 1]], `size ${size}`);
    bm.set(5);
    t.is(words[0], 1);
  }
});
