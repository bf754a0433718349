import test from 'ava';
import fc from 'fast-check';
import { Bitmap } from '../../src/engine/bitmap.js';
import { BitmapBoundsError, DecodeError } from '../../src/errors.js';
import { assertProperty, fcParams } from '../../src/testing/properties.js';
import { BitmapModel } from '../../src/testing/models.js';

/** The reference model: a Set of set bit indexes (postcopy-engine/testing's BitmapModel). */
const SetModel = BitmapModel;
type SetModel = BitmapModel;

type Op =
  | { op: 'set' | 'clear' | 'test' | 'nextSet' | 'nextZero'; i: number }
  | { op: 'setRange' | 'clearRange' | 'countRange' | 'allSet' | 'allClear'; s: number; c: number }
  | { op: 'count' | 'runs' | 'complement' | 'serialize' };

function opArb(size: number): fc.Arbitrary<Op> {
  const idx = fc.nat({ max: size - 1 });
  const range = fc.tuple(fc.nat({ max: size }), fc.nat({ max: size })).map(([a, b]) => {
    const s = Math.min(a, b);
    return { s, c: Math.max(a, b) - s };
  });
  return fc.oneof(
    fc.record({ op: fc.constantFrom('set', 'clear', 'test', 'nextSet', 'nextZero' as const), i: idx }),
    range.chain((r) => fc.constantFrom('setRange', 'clearRange', 'countRange', 'allSet', 'allClear' as const).map((op) => ({ op, ...r }))),
    fc.record({ op: fc.constantFrom('count', 'runs', 'complement', 'serialize' as const) }),
  ) as fc.Arbitrary<Op>;
}

/** Applies one op to both and checks they agree; returns the (possibly new) bitmap and model. */
function applyAndCheck(bm: Bitmap, m: SetModel, o: Op): [Bitmap, SetModel] {
  const fail = (what: string, got: unknown, want: unknown): never => {
    throw new Error(`${what}: bitmap gave ${JSON.stringify(got)}, model ${JSON.stringify(want)} (size ${m.size}, op ${JSON.stringify(o)})`);
  };
  switch (o.op) {
    case 'set': bm.set(o.i); m.bits.add(o.i); break;
    case 'clear': bm.clear(o.i); m.bits.delete(o.i); break;
    case 'test': if (bm.test(o.i) !== m.bits.has(o.i)) fail('test', bm.test(o.i), m.bits.has(o.i)); break;
    case 'nextSet': if (bm.findNextSet(o.i) !== m.findNextSet(o.i)) fail('findNextSet', bm.findNextSet(o.i), m.findNextSet(o.i)); break;
    case 'nextZero': if (bm.findNextZero(o.i) !== m.findNextZero(o.i)) fail('findNextZero', bm.findNextZero(o.i), m.findNextZero(o.i)); break;
    case 'setRange': bm.setRange(o.s, o.c); m.setRange(o.s, o.c); break;
    case 'clearRange': bm.clearRange(o.s, o.c); m.clearRange(o.s, o.c); break;
    case 'countRange': {
      let want = 0;
      for (let i = o.s; i < o.s + o.c; i++) if (m.bits.has(i)) want++;
      if (bm.countRange(o.s, o.c) !== want) fail('countRange', bm.countRange(o.s, o.c), want);
      break;
    }
    case 'allSet': {
      let want = true;
      for (let i = o.s; i < o.s + o.c; i++) if (!m.bits.has(i)) want = false;
      if (bm.testRangeAllSet(o.s, o.c) !== want) fail('testRangeAllSet', !want, want);
      break;
    }
    case 'allClear': {
      let want = true;
      for (let i = o.s; i < o.s + o.c; i++) if (m.bits.has(i)) want = false;
      if (bm.testRangeAllClear(o.s, o.c) !== want) fail('testRangeAllClear', !want, want);
      break;
    }
    case 'count': if (bm.count() !== m.bits.size) fail('count', bm.count(), m.bits.size); break;
    case 'runs': {
      const got = JSON.stringify(bm.runs());
      const want = JSON.stringify(m.runs());
      if (got !== want) fail('runs', got, want);
      break;
    }
    case 'complement': {
      const c = bm.complement();
      const cm = new SetModel(m.size);
      for (let i = 0; i < m.size; i++) if (!m.bits.has(i)) cm.bits.add(i);
      return [c, cm];
    }
    case 'serialize': {
      const bytes = bm.toLE64Bytes();
      if (bytes.length !== Math.ceil(m.size / 64) * 8) fail('serialized length', bytes.length, Math.ceil(m.size / 64) * 8);
      for (let i = 0; i < m.size; i++) {
        const bit = (bytes[i >> 3]! >> (i & 7)) & 1;
        if (bit !== (m.bits.has(i) ? 1 : 0)) fail(`serialized bit ${i}`, bit, m.bits.has(i));
      }
      const back = Bitmap.fromLE64Bytes(m.size, bytes);
      if (!back.equals(bm)) fail('round trip', 'different', 'equal');
      break;
    }
  }
  return [bm, m];
}

function checkAll(bm: Bitmap, m: SetModel): void {
  applyAndCheck(bm, m, { op: 'count' });
  applyAndCheck(bm, m, { op: 'runs' });
  // The tail past `size` must stay clear: it would leak into serialisation and counts.
  const rawBits = bm.words.length * 32;
  for (let i = m.size; i < rawBits; i++) {
    if ((bm.words[i >>> 5]! & (1 << (i & 31))) !== 0) throw new Error(`bit ${i} past size ${m.size} is set`);
  }
}

for (const size of [1, 63, 64, 65, 4097]) {
  test(`any sequence of bitmap operations equals the Set model (size ${size})`, (t) => {
    assertProperty(
      fc.property(fc.array(opArb(size), { maxLength: 60, size: 'max' }), (ops) => {
        let bm = new Bitmap(size);
        let m = new SetModel(size);
        for (const o of ops) [bm, m] = applyAndCheck(bm, m, o);
        checkAll(bm, m);
      }),
      fcParams(),
    );
    t.log(`${fcParams().numRuns} runs`);
    t.true(fcParams().numRuns > 0);
  });
}

test('any sequence of bitmap operations equals the Set model (random sizes)', (t) => {
  assertProperty(
    fc.property(
      fc.integer({ min: 1, max: 3000 }).chain((size) => fc.tuple(fc.constant(size), fc.array(opArb(size), { maxLength: 40, size: 'max' }))),
      ([size, ops]) => {
        let bm = new Bitmap(size);
        let m = new SetModel(size);
        for (const o of ops) [bm, m] = applyAndCheck(bm, m, o);
        checkAll(bm, m);
      },
    ),
    fcParams(),
  );
  t.true(fcParams().numRuns > 0);
});

test('out-of-range indexes and ranges are refused with BitmapBoundsError', (t) => {
  const bm = new Bitmap(65);
  t.throws(() => bm.set(65), { instanceOf: BitmapBoundsError, message: 'bitmap index 65 is outside the bitmap of 65 bits' });
  t.throws(() => bm.test(-1), { instanceOf: BitmapBoundsError });
  t.throws(() => bm.setRange(60, 6), { instanceOf: BitmapBoundsError });
  t.throws(() => bm.set(1.5), { instanceOf: BitmapBoundsError });
  t.is(bm.count(), 0, 'a refused operation changes nothing');
});

test('decoding a bitmap with bits set past its size is refused', (t) => {
  const bytes = new Uint8Array(8);
  bytes[1] = 0x80; // bit 15
  t.throws(() => Bitmap.fromLE64Bytes(10, bytes), { instanceOf: DecodeError, message: /bits past the end \(10 bits\)/ });
  t.throws(() => Bitmap.fromLE64Bytes(65, bytes), { instanceOf: DecodeError, message: /need 16 bytes for 65 bits, have 8/ });
});

test('a 2^28-bit bitmap (1 TiB of 4 KiB pages) fits in 32 MiB and scans', (t) => {
  const bm = new Bitmap(2 ** 28);
  t.is(bm.words.byteLength, 32 * 2 ** 20);
  bm.set(2 ** 28 - 1);
  bm.setRange(1000, 5000);
  t.deepEqual(bm.runs(), [[1000, 5000], [2 ** 28 - 1, 1]]);
  t.is(bm.count(), 5001);
  t.is(bm.findNextZero(1000), 6000);
});
