/**
 * `Destination.pages` (a run of consecutive pages as one input) against `page` for each of
 * its pages: the same records in the same order, the same stats and the same memory, over
 * random runs in every phase, with pages already present, refused pages, RETRY answers
 * (injected) and faults between runs; with a backend that places a run in one call and with
 * one that has no placeRun.
 */
import test from 'ava';
import fc from 'fast-check';
import { PostcopyError } from '../../src/errors.js';
import type { EventRecord } from '../../src/engine/events.js';
import { PlaceOutcome, type PlaceOutcomeValue } from '../../src/engine/ports.js';
import { forAll } from '../../src/testing/properties.js';
import { advise, listen, rig, run, type Rig } from './harness.js';

const PAGE = 4096;
const BLOCKS = [
  { name: 'pc.ram', length: 48 * PAGE },
  // Two target pages per host page: runs there go page by page (assembled host pages).
  { name: 'huge', length: 16 * PAGE, hostPageSize: 2 * PAGE },
];

type Op =
  | { op: 'run'; channel: number; block: number; start: number; count: number; zero: boolean }
  | { op: 'fault'; block: number; page: number; vcpu: number }
  | { op: 'retry'; block: number; page: number; times: number };

const runArb: fc.Arbitrary<Op> = fc.record({
  op: fc.constant('run' as const),
  channel: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constant(2) }),
  block: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constant(5) }),
  start: fc.integer({ min: 0, max: 50 }),
  count: fc.integer({ min: 1, max: 12 }),
  zero: fc.boolean(),
});
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: runArb },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('fault' as const), block: fc.constantFrom(0, 1), page: fc.integer({ min: 0, max: 15 }), vcpu: fc.constantFrom(0, 1) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('retry' as const), block: fc.constantFrom(0, 1), page: fc.integer({ min: 0, max: 15 }), times: fc.integer({ min: 1, max: 3 }) }) },
);

const scenarioArb = fc.record({
  beforeAdvise: fc.array(runArb, { maxLength: 4 }),
  beforeListen: fc.array(runArb, { maxLength: 3 }),
  postcopy: fc.array(opArb, { maxLength: 25 }),
  runAt: fc.integer({ min: 0, max: 25 }),
  placeRun: fc.boolean(),
});

/** A placeRun as the uffd backend's contract says, page by page over the mock's copy/zero. */
function withPlaceRun(r: Rig): void {
  const b = r.backend;
  Object.assign(b, {
    placeRun(block: number, offset: number, data: Uint8Array | null, dataOffset: number, length: number, outcomes: Uint8Array): number {
      const hps = b.blocks[block]!.hostPageSize;
      for (let i = 0; i * hps < length; i++) {
        const outcome: PlaceOutcomeValue = data === null ? b.zero(block, offset + i * hps, hps) : b.copy(block, offset + i * hps, data, dataOffset + i * hps, hps);
        outcomes[i] = outcome;
        if (outcome === PlaceOutcome.RETRY) return i + 1;
      }
      return length / hps;
    },
  });
}

/** Page contents that say which page and which run they came from. */
function runData(seed: number, count: number): Uint8Array {
  const d = new Uint8Array(count * PAGE);
  for (let i = 0; i < count; i++) d.fill((seed * 31 + i) & 0xff, i * PAGE, (i + 1) * PAGE);
  return d;
}

function swallow(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof PostcopyError)) throw err;
  }
}

function feed(r: Rig, ops: Op[], asRuns: boolean, clock: { t: number }): void {
  ops.forEach((o, k) => {
    const t = ++clock.t;
    switch (o.op) {
      case 'run': {
        const data = runData(k + clock.t, o.count);
        if (asRuns) swallow(() => r.engine.pages(o.channel, o.block, o.start * PAGE, o.count, o.zero, data, 0, t));
        else for (let i = 0; i < o.count; i++) swallow(() => r.engine.page(o.channel, o.block, (o.start + i) * PAGE, o.zero, data, i * PAGE, t));
        return;
      }
      case 'fault':
        swallow(() => r.engine.fault(r.engine.hostAddressOf(o.block) + o.page * PAGE, 73001 + o.vcpu, t));
        return;
      case 'retry':
        r.backend.injectRetry(o.block, o.page * PAGE, PAGE, o.times);
        return;
    }
  });
}

function rows(records: EventRecord[]): unknown[] {
  return records.map((x) => [x.seq, x.kind, x.t, x.cause, x.block, x.offset, x.a, x.b, x.payload === null ? null : Buffer.from(x.payload).toString('hex')]);
}

test('a run of pages journals, places and counts exactly what page() does for each of its pages', (t) => {
  forAll(t, scenarioArb, (s) => {
    const sides = [false, true].map((asRuns) => {
      const r = rig({ blocks: BLOCKS, preempt: true, preemptEnd: 'main-eos' });
      if (asRuns && s.placeRun) withPlaceRun(r);
      const clock = { t: 10 };
      feed(r, s.beforeAdvise, asRuns, clock);
      advise(r, ++clock.t);
      feed(r, s.beforeListen, asRuns, clock);
      listen(r, ++clock.t);
      swallow(() => r.engine.channelConnected(1, ++clock.t));
      feed(r, s.postcopy.slice(0, s.runAt), asRuns, clock);
      run(r, ++clock.t);
      feed(r, s.postcopy.slice(s.runAt), asRuns, clock);
      return r;
    });
    const [byPage, byRun] = sides as [Rig, Rig];
    const a = rows(byPage.sink.records);
    const b = rows(byRun.sink.records);
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (JSON.stringify(a[i]) !== JSON.stringify(b[i])) throw new Error(`record ${i} differs: page by page ${JSON.stringify(a[i])}, as runs ${JSON.stringify(b[i])}`);
    }
    if (JSON.stringify(byRun.engine.stats) !== JSON.stringify(byPage.engine.stats)) throw new Error(`stats differ: ${JSON.stringify(byPage.engine.stats)} vs ${JSON.stringify(byRun.engine.stats)}`);
    if (JSON.stringify(byRun.engine.snapshot()) !== JSON.stringify(byPage.engine.snapshot())) throw new Error('snapshots differ');
    // Unregistered, missing pages read as zeros: the whole of each block compares.
    byPage.engine.blocks.forEach((rb, i) => {
      byPage.backend.unregister(i);
      byRun.backend.unregister(i);
      const x = Buffer.from(byPage.backend.read(i, 0, rb.usedLength));
      const y = Buffer.from(byRun.backend.read(i, 0, rb.usedLength));
      if (!x.equals(y)) throw new Error(`memory of block ${i} differs`);
    });
  });
});
