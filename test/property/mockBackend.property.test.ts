import test from 'ava';
import fc from 'fast-check';
import { BackendError } from '../../src/errors.js';
import { PlaceOutcome, type BlockLayout } from '../../src/engine/ports.js';
import { MockBackend } from '../../src/io/backends/mockBackend.js';
import { assertProperty, fcParams } from '../../src/testing/properties.js';

const PAGE = 4096;
const LAYOUTS: BlockLayout[] = [
  { name: 'pc.ram', length: 12 * PAGE, hostPageSize: PAGE },
  // Small "huge" pages keep the property fast; the rules are the same as for 2 MiB.
  { name: 'huge.ram', length: 4 * 4 * PAGE, maxLength: 6 * 4 * PAGE, hostPageSize: 4 * PAGE, hugetlbfs: true },
];

/** The reference model: per block, a registered flag and a Map page index -> content of present pages. */
class Model {
  readonly blocks = LAYOUTS.map((l) => ({ layout: l, registered: false, pages: new Map<number, Uint8Array>() }));
  private injections: Array<{ block: number; start: number; end: number; remaining: number }> = [];

  private inRange(block: number, offset: number, length: number, align: number): boolean {
    const len = this.blocks[block]!.layout.length;
    return (
      Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 &&
      offset % align === 0 && length % align === 0 && offset + length <= len
    );
  }

  private pageOf(block: number, page: number): Uint8Array {
    const pages = this.blocks[block]!.pages;
    let p = pages.get(page);
    if (p === undefined) {
      p = new Uint8Array(PAGE);
      pages.set(page, p);
    }
    return p;
  }

  private anyPresent(block: number, offset: number, length: number): boolean {
    for (let p = Math.floor(offset / PAGE); p * PAGE < offset + length; p++) if (this.blocks[block]!.pages.has(p)) return true;
    return false;
  }

  place(block: number, offset: number, length: number, data: Uint8Array | null, dataOffset: number): Result {
    const b = this.blocks[block]!;
    const hps = b.layout.hostPageSize;
    if (length !== hps || !this.inRange(block, offset, length, hps)) return { error: 'EINVAL' };
    if (!b.registered) return { error: 'ENOENT' };
    if (data !== null && (dataOffset < 0 || dataOffset + length > data.length)) return { error: 'EINVAL' };
    const inj = this.injections.findIndex((i) => i.block === block && i.end > offset && i.start < offset + length);
    if (inj >= 0) {
      if (--this.injections[inj]!.remaining === 0) this.injections.splice(inj, 1);
      return { outcome: PlaceOutcome.RETRY };
    }
    if (this.anyPresent(block, offset, length)) return { outcome: PlaceOutcome.ALREADY_PRESENT };
    for (let i = 0; i < length; i++) {
      const at = offset + i;
      this.pageOf(block, Math.floor(at / PAGE))[at % PAGE] = data === null ? 0 : data[dataOffset + i]!;
    }
    return { outcome: PlaceOutcome.PLACED };
  }

  discard(block: number, offset: number, length: number): Result {
    const l = this.blocks[block]!.layout;
    if (!this.inRange(block, offset, length, l.hugetlbfs ? l.hostPageSize : PAGE)) return { error: 'EINVAL' };
    for (let p = offset / PAGE; p < (offset + length) / PAGE; p++) this.blocks[block]!.pages.delete(p);
    return {};
  }

  write(block: number, offset: number, data: Uint8Array, dataOffset: number, length: number): Result {
    if (!this.inRange(block, offset, length, 1)) return { error: 'EINVAL' };
    if (dataOffset < 0 || dataOffset + length > data.length) return { error: 'EINVAL' };
    if (this.blocks[block]!.registered) return { error: '' };
    for (let i = 0; i < length; i++) {
      const at = offset + i;
      this.pageOf(block, Math.floor(at / PAGE))[at % PAGE] = data[dataOffset + i]!;
    }
    return {};
  }

  read(block: number, offset: number, length: number): Result {
    if (!this.inRange(block, offset, length, 1)) return { error: 'EINVAL' };
    const b = this.blocks[block]!;
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      const at = offset + i;
      const page = b.pages.get(Math.floor(at / PAGE));
      if (page === undefined && b.registered) return { error: '' };
      out[i] = page?.[at % PAGE] ?? 0;
    }
    return { bytes: out };
  }

  inject(block: number, offset: number, length: number, times: number): Result {
    if (!this.inRange(block, offset, length, 1)) return { error: 'EINVAL' };
    if (times > 0 && length > 0) this.injections.push({ block, start: offset, end: offset + length, remaining: times });
    return {};
  }
}

interface Result {
  error?: string;
  outcome?: number;
  bytes?: Uint8Array;
}

type Op =
  | { op: 'copy'; block: number; offset: number; length: number; dataOffset: number; fill: number }
  | { op: 'zero' | 'discard' | 'read'; block: number; offset: number; length: number }
  | { op: 'write'; block: number; offset: number; length: number; dataOffset: number; fill: number }
  | { op: 'register' | 'unregister'; block: number }
  | { op: 'inject'; block: number; offset: number; length: number; times: number };

/** Offsets and lengths that are mostly valid for the block, sometimes misaligned or out of range. */
function rangeArb(block: number): fc.Arbitrary<{ block: number; offset: number; length: number }> {
  const l = LAYOUTS[block]!;
  const hps = l.hostPageSize;
  const offset = fc.oneof(
    { weight: 4, arbitrary: fc.nat({ max: l.length / hps - 1 }).map((n) => n * hps) },
    { weight: 2, arbitrary: fc.nat({ max: l.length / PAGE }).map((n) => n * PAGE) },
    { weight: 1, arbitrary: fc.integer({ min: -PAGE, max: l.length + PAGE }) },
  );
  const length = fc.oneof(
    { weight: 4, arbitrary: fc.constant(hps) },
    { weight: 2, arbitrary: fc.nat({ max: 6 }).map((n) => n * PAGE) },
    { weight: 1, arbitrary: fc.integer({ min: -100, max: 3 * hps }) },
  );
  return fc.record({ block: fc.constant(block), offset, length });
}

const dataOffsetArb = fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.nat({ max: 3000 }) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: 40000 }) });

const opArb: fc.Arbitrary<Op> = fc.integer({ min: 0, max: LAYOUTS.length - 1 }).chain((block) =>
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ r: rangeArb(block), dataOffset: dataOffsetArb, fill: fc.nat({ max: 255 }) }).map(({ r, dataOffset, fill }) => ({ op: 'copy' as const, ...r, dataOffset, fill })) },
    { weight: 3, arbitrary: rangeArb(block).map((r) => ({ op: 'zero' as const, ...r })) },
    { weight: 4, arbitrary: rangeArb(block).map((r) => ({ op: 'discard' as const, ...r })) },
    { weight: 3, arbitrary: rangeArb(block).map((r) => ({ op: 'read' as const, ...r })) },
    { weight: 2, arbitrary: fc.record({ r: rangeArb(block), dataOffset: dataOffsetArb, fill: fc.nat({ max: 255 }) }).map(({ r, dataOffset, fill }) => ({ op: 'write' as const, ...r, dataOffset, fill })) },
    { weight: 1, arbitrary: fc.constant({ op: 'register' as const, block }) },
    { weight: 1, arbitrary: fc.constant({ op: 'unregister' as const, block }) },
    { weight: 2, arbitrary: fc.record({ r: rangeArb(block), times: fc.nat({ max: 2 }) }).map(({ r, times }) => ({ op: 'inject' as const, ...r, times })) },
  ),
);

/** A source buffer whose bytes differ by position and by `fill`, so misplaced bytes show. */
function dataFor(fill: number): Uint8Array {
  const d = new Uint8Array(8 * PAGE);
  for (let i = 0; i < d.length; i++) d[i] = (fill + i * 7 + (i >> 12)) & 0xff;
  return d;
}

/** Runs `fn` against the backend, turning a BackendError into `{ error: errno }`. */
function attempt(fn: () => Result): Result {
  try {
    return fn();
  } catch (e) {
    if (e instanceof BackendError) return { error: e.errno };
    throw e;
  }
}

function apply(be: MockBackend, o: Op): Result {
  switch (o.op) {
    case 'copy': return attempt(() => ({ outcome: be.copy(o.block, o.offset, dataFor(o.fill), o.dataOffset, o.length) }));
    case 'zero': return attempt(() => ({ outcome: be.zero(o.block, o.offset, o.length) }));
    case 'discard': return attempt(() => (be.discard(o.block, o.offset, o.length), {}));
    case 'read': return attempt(() => ({ bytes: be.read(o.block, o.offset, o.length) }));
    case 'write': return attempt(() => (be.write(o.block, o.offset, dataFor(o.fill), o.dataOffset, o.length), {}));
    case 'register': return attempt(() => (be.register(o.block), {}));
    case 'unregister': return attempt(() => (be.unregister(o.block), {}));
    case 'inject': return attempt(() => (be.injectRetry(o.block, o.offset, o.length, o.times), {}));
  }
}

function applyModel(m: Model, o: Op): Result {
  switch (o.op) {
    case 'copy': return m.place(o.block, o.offset, o.length, dataFor(o.fill), o.dataOffset);
    case 'zero': return m.place(o.block, o.offset, o.length, null, 0);
    case 'discard': return m.discard(o.block, o.offset, o.length);
    case 'read': return m.read(o.block, o.offset, o.length);
    case 'write': return m.write(o.block, o.offset, dataFor(o.fill), o.dataOffset, o.length);
    case 'register': m.blocks[o.block]!.registered = true; return {};
    case 'unregister': m.blocks[o.block]!.registered = false; return {};
    case 'inject': return m.inject(o.block, o.offset, o.length, o.times);
  }
}

/** Presence of every page, and the content of every readable page, agree. */
function sameState(be: MockBackend, m: Model): string | null {
  for (const [i, b] of m.blocks.entries()) {
    for (let p = 0; p < b.layout.length / PAGE; p++) {
      if (be.isPresent(i, p * PAGE) !== b.pages.has(p)) return `block ${i} page ${p}: presence differs`;
      if (!b.pages.has(p) && b.registered) continue;
      const want = b.pages.get(p) ?? new Uint8Array(PAGE);
      const got = be.read(i, p * PAGE, PAGE);
      if (Buffer.compare(got, want) !== 0) return `block ${i} page ${p}: content differs`;
    }
  }
  return null;
}

test('any sequence of copy/zero/discard/write/read/register/unregister/inject agrees with a page-map model', (t) => {
  // Which results the runs reached, so a generator that stopped reaching a rule shows.
  const reached = new Set<string>();
  const run = (): void => void assertProperty(
    // Most runs start with some blocks registered, as postcopy does, so placements mostly reach the kernel rules.
    fc.property(fc.subarray([0, 1]), fc.array(opArb, { maxLength: 60, size: 'max' }), (initiallyRegistered, rest) => {
      const ops: Op[] = [...initiallyRegistered.map((block) => ({ op: 'register' as const, block })), ...rest];
      const be = new MockBackend(LAYOUTS);
      be.listen(() => {});
      const m = new Model();
      for (const [k, o] of ops.entries()) {
        const got = apply(be, o);
        const want = applyModel(m, o);
        reached.add(want.error !== undefined ? `error ${want.error || 'refused'}` : want.outcome !== undefined ? `outcome ${want.outcome}` : o.op);
        if (got.error !== want.error || got.outcome !== want.outcome) {
          throw new Error(`op ${k} ${JSON.stringify(o)}: backend ${JSON.stringify({ ...got, bytes: undefined })}, model ${JSON.stringify({ ...want, bytes: undefined })}`);
        }
        if (want.bytes !== undefined && Buffer.compare(got.bytes!, want.bytes) !== 0) throw new Error(`op ${k} ${JSON.stringify(o)}: read bytes differ`);
        const diff = sameState(be, m);
        if (diff !== null) throw new Error(`after op ${k} ${JSON.stringify(o)}: ${diff}`);
      }
    }),
    fcParams(),
  );
  t.notThrows(run);
  t.log(`${fcParams().numRuns} runs reached: ${[...reached].sort().join(', ')}`);
  if (fcParams().numRuns >= 100) {
    for (const r of ['outcome 0', 'outcome 1', 'outcome 2', 'error EINVAL', 'error ENOENT', 'error refused', 'read', 'discard', 'write']) {
      t.true(reached.has(r), `no run reached ${r}`);
    }
  }
});
