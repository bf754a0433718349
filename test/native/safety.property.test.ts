import fc from 'fast-check';
import { BackendError } from '../../src/errors.js';
import { UffdBackend } from '../../src/io/backends/uffdBackend.js';
import { assertProperty, fcParams } from '../../src/testing/properties.js';
import { PAGE, PlaceOutcome, layout, seededBytes, uffdTest } from './helpers.js';

const PAGES = 16;
const LEN = PAGES * PAGE;

/** Every byte of both blocks (neither is registered, so reading never blocks). */
function snapshot(backend: UffdBackend): Uint8Array[] {
  return [0, 1].map((b) => new Uint8Array(backend.read(b, 0, backend.blocks[b]!.length)));
}

uffdTest('addresses and lengths outside guest memory are refused with an error and nothing is written', (t) => {
  const backend = new UffdBackend([layout('pc.ram', PAGES), layout('other', PAGES)]);
  try {
    backend.listen(() => {});
    backend.register(0);
    backend.copy(1, 0, seededBytes(LEN, 5), 0, LEN); // block 1 unregistered: plain write
    const before = block1Bytes(backend);
    const data = new Uint8Array(2 * PAGE).fill(0xee);
    const refused: [string, () => unknown][] = [
      ['past the end', () => backend.copy(0, LEN, data, 0, PAGE)],
      ['straddling the end', () => backend.copy(0, LEN - PAGE, data, 0, 2 * PAGE)],
      ['unaligned offset', () => backend.copy(0, 100, data, 0, PAGE)],
      ['partial page', () => backend.copy(0, 0, data, 0, 100)],
      ['zero length', () => backend.copy(0, 0, data, 0, 0)],
      ['negative offset', () => backend.copy(0, -PAGE, data, 0, PAGE)],
      ['fractional offset', () => backend.copy(0, 0.5, data, 0, PAGE)],
      ['NaN offset', () => backend.copy(0, NaN, data, 0, PAGE)],
      ['huge offset', () => backend.copy(0, 2 ** 60, data, 0, PAGE)],
      ['unknown block', () => backend.copy(2, 0, data, 0, PAGE)],
      ['negative block', () => backend.copy(-1, 0, data, 0, PAGE)],
      ['source too short', () => backend.copy(0, 0, data, PAGE + 1, PAGE)],
      ['source not bytes', () => backend.copy(0, 0, [1, 2, 3] as unknown as Uint8Array, 0, PAGE)],
      ['zero past the end', () => backend.zero(0, LEN, PAGE)],
      ['wake past the end', () => backend.wake(0, LEN, PAGE)],
      ['discard past the end', () => backend.discard(0, LEN - PAGE, 2 * PAGE)],
      ['read past the end', () => backend.read(1, LEN - 1, 2)],
      ['zero into block 1 past its end', () => backend.zero(1, LEN, PAGE)],
    ];
    for (const [what, op] of refused) {
      const err = t.throws(op, { instanceOf: BackendError }, what);
      t.is(err?.code, 'BACKEND', what);
    }
    t.deepEqual(block1Bytes(backend), before, 'no byte of block 1 changed');
    t.is(backend.status().stats.faults, 0);
    // Block 0 got no page at all: once unregistered it reads as zeros everywhere.
    backend.unregister(0);
    t.true(backend.read(0, 0, LEN).every((x) => x === 0), 'no byte of block 0 was written');
  } finally {
    backend.close();
  }
});

/** Block 1's bytes (it is never registered, so reading it cannot block). */
function block1Bytes(backend: UffdBackend): Uint8Array {
  return new Uint8Array(backend.read(1, 0, LEN));
}

uffdTest('property: a copy is placed exactly where asked when in range, refused and writes nothing otherwise', (t) => {
  const backend = new UffdBackend([layout('pc.ram', PAGES), layout('other', PAGES)]);
  try {
    const data = seededBytes(4 * PAGE, 9);
    let placed = 0;
    let refused = 0;
    // Offsets and lengths around the edges: page multiples, near misses, and far outside.
    const near = (max: number) =>
      fc.oneof(
        { arbitrary: fc.integer({ min: 0, max: max / PAGE }).map((p) => p * PAGE), weight: 4 },
        { arbitrary: fc.integer({ min: -2 * PAGE, max: max + 2 * PAGE }), weight: 1 },
        { arbitrary: fc.constantFrom(-1, 2 ** 40, 2 ** 53, Number.MAX_SAFE_INTEGER), weight: 1 },
      );
    assertProperty(
      fc.property(fc.integer({ min: -1, max: 2 }), near(LEN), near(4 * PAGE), near(2 * PAGE), fc.integer({ min: 0, max: 255 }), (block, offset, length, dataOffset, fill) => {
        data.fill(fill);
        const before = snapshot(backend);
        const valid =
          (block === 0 || block === 1) &&
          offset >= 0 && offset % PAGE === 0 && length > 0 && length % PAGE === 0 && offset + length <= LEN &&
          dataOffset >= 0 && dataOffset + length <= data.length;
        if (valid) {
          if (backend.copy(block, offset, data, dataOffset, length) !== PlaceOutcome.PLACED) return false;
          placed++;
          const after = snapshot(backend);
          const expected = before.map((m) => Uint8Array.from(m));
          expected[block]!.set(data.subarray(dataOffset, dataOffset + length), offset);
          return Buffer.compare(after[0]!, expected[0]!) === 0 && Buffer.compare(after[1]!, expected[1]!) === 0;
        }
        try {
          backend.copy(block, offset, data, dataOffset, length);
          return false;
        } catch (err) {
          if (!(err instanceof BackendError)) return false;
        }
        refused++;
        const after = snapshot(backend);
        return Buffer.compare(after[0]!, before[0]!) === 0 && Buffer.compare(after[1]!, before[1]!) === 0;
      }),
      fcParams(),
    );
    t.log(`${placed} placements, ${refused} refusals`);
    t.is(placed + refused, fcParams().numRuns, 'every generated case was either placed exactly or refused cleanly');
  } finally {
    backend.close();
  }
});

uffdTest('operations after close() are refused, and close() is idempotent', (t) => {
  const backend = new UffdBackend([layout('pc.ram', PAGES)]);
  backend.listen(() => {});
  backend.close();
  backend.close();
  t.throws(() => backend.copy(0, 0, new Uint8Array(PAGE), 0, PAGE), { instanceOf: BackendError, message: /closed/ });
  t.throws(() => backend.read(0, 0, PAGE), { instanceOf: BackendError, message: /closed/ });
  t.throws(() => backend.register(0), { instanceOf: BackendError });
  t.true(backend.status().closed);
});
