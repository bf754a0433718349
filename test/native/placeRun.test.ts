/**
 * placeRun: a run of host pages in one UFFDIO_COPY / UFFDIO_ZEROPAGE, with an outcome per
 * page, on the real userfaultfd; and the engine's run input (`Destination.pages`) over it
 * journaling exactly what the page-by-page input does.
 */
import { MigCommand } from '../../src/engine/constants.js';
import { Destination } from '../../src/engine/destination.js';
import { ArraySink, EventKind, type EventRecord } from '../../src/engine/events.js';
import { PlaceOutcome } from '../../src/engine/ports.js';
import { encodeAdvise, hostPageSizeSummary } from '../../src/engine/wire.js';
import { BackendError } from '../../src/errors.js';
import { UffdBackend } from '../../src/io/backends/uffdBackend.js';
import { layout, PAGE, seededBytes, uffdTest } from './helpers.js';

const PAGES = 16;

uffdTest('a run with a page already present in the middle: one call, that page ALREADY_PRESENT and kept, the rest placed', (t) => {
  const b = new UffdBackend([layout('pc.ram', PAGES)]);
  try {
    b.listen(() => {});
    b.register(0);
    const urgent = new Uint8Array(PAGE).fill(0x5a);
    t.is(b.copy(0, 5 * PAGE, urgent, 0, PAGE), PlaceOutcome.PLACED, 'the urgent page first');
    const run = seededBytes(PAGES * PAGE, 7);
    const outcomes = new Uint8Array(PAGES).fill(0xff);
    t.is(b.placeRun(0, 0, run, 0, PAGES * PAGE, outcomes), PAGES, 'every page has an outcome');
    const expected = Array.from({ length: PAGES }, (_, i) => (i === 5 ? PlaceOutcome.ALREADY_PRESENT : PlaceOutcome.PLACED));
    t.deepEqual([...outcomes], expected);
    const memory = b.read(0, 0, PAGES * PAGE);
    for (let i = 0; i < PAGES; i++) {
      const want = i === 5 ? urgent : run.subarray(i * PAGE, (i + 1) * PAGE);
      t.true(Buffer.from(memory.subarray(i * PAGE, (i + 1) * PAGE)).equals(Buffer.from(want)), `page ${i}`);
    }
    t.is(b.status().stats.alreadyPresent, 1);
  } finally {
    b.close();
  }
});

uffdTest('a zero run over present pages and a data run from an offset into its source', (t) => {
  const b = new UffdBackend([layout('pc.ram', PAGES)]);
  try {
    b.listen(() => {});
    b.register(0);
    const first = new Uint8Array(PAGE).fill(1);
    const last = new Uint8Array(PAGE).fill(2);
    b.copy(0, 0, first, 0, PAGE);
    b.copy(0, 7 * PAGE, last, 0, PAGE);
    const outcomes = new Uint8Array(8);
    t.is(b.placeRun(0, 0, null, 0, 8 * PAGE, outcomes), 8);
    t.deepEqual([...outcomes], [1, 0, 0, 0, 0, 0, 0, 1]);
    t.is(b.read(0, 0, 1)[0], 1, 'a present page is not zeroed');
    t.true(b.read(0, PAGE, 6 * PAGE).every((x) => x === 0));
    const source = seededBytes(6 * PAGE, 3);
    t.is(b.placeRun(0, 8 * PAGE, source, 2 * PAGE, 4 * PAGE, outcomes), 4);
    t.deepEqual([...outcomes.subarray(0, 4)], [0, 0, 0, 0]);
    t.true(Buffer.from(b.read(0, 8 * PAGE, 4 * PAGE)).equals(Buffer.from(source.subarray(2 * PAGE))));
  } finally {
    b.close();
  }
});

uffdTest('a run on an unregistered block is a plain write; bad runs are refused and write nothing', (t) => {
  const b = new UffdBackend([layout('pc.ram', PAGES)]);
  try {
    const data = new Uint8Array(4 * PAGE).fill(9);
    const outcomes = new Uint8Array(4);
    t.is(b.placeRun(0, 4 * PAGE, data, 0, 4 * PAGE, outcomes), 4);
    t.deepEqual([...outcomes], [0, 0, 0, 0]);
    t.true(b.read(0, 4 * PAGE, 4 * PAGE).every((x) => x === 9));
    t.throws(() => b.placeRun(0, 0, data, 0, 4 * PAGE, new Uint8Array(3)), { instanceOf: BackendError, message: /outcomes array holds 3 entries for 4 host pages/ });
    t.throws(() => b.placeRun(0, 14 * PAGE, data, 0, 4 * PAGE, outcomes), { instanceOf: BackendError, message: /outside the block/ });
    t.throws(() => b.placeRun(0, 0, data, PAGE, 4 * PAGE, outcomes), { instanceOf: BackendError, message: /outside the 16384-byte source/ });
    t.true(b.read(0, 0, 4 * PAGE).every((x) => x === 0), 'nothing written by the refused runs');
  } finally {
    b.close();
  }
});

/** An engine over a real uffd backend, listening (blocks registered). */
function listeningEngine(): { engine: Destination; backend: UffdBackend; sink: ArraySink } {
  const backend = new UffdBackend([layout('pc.ram', 64), layout('rom', 4)]);
  const sink = new ArraySink();
  const engine = new Destination(
    { blocks: [{ name: 'pc.ram', length: 64 * PAGE }, { name: 'rom', length: 4 * PAGE }], vcpuTids: [], vcpus: 1, preempt: true, preemptEnd: 'main-eos' },
    backend,
    { send: () => true },
    sink,
  );
  engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary([PAGE, PAGE]), targetPageSize: PAGE }), 1);
  engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), 2);
  engine.channelConnected(1, 3);
  return { engine, backend, sink };
}

/** Records as comparable rows, every field. */
function rows(records: EventRecord[]): unknown[] {
  return records.map((r) => [r.seq, r.kind, r.t, r.cause, r.block, r.offset, r.a, r.b, r.payload === null ? null : [...r.payload]]);
}

uffdTest('Destination.pages on the real backend journals what page() does page by page, an urgent page placed first included', (t) => {
  const byPage = listeningEngine();
  const byRun = listeningEngine();
  try {
    const run = seededBytes(24 * PAGE, 11);
    const urgent = seededBytes(PAGE, 12);
    const romPage = seededBytes(PAGE, 13);
    for (const side of [byPage, byRun]) {
      // An urgent page answered on the preempt channel before the push reaches it.
      side.engine.page(1, 0, 10 * PAGE, false, urgent, 0, 5);
      side.engine.page(0, 1, 0, false, romPage, 0, 6); // another block named between
    }
    // Pages 4..27 of pc.ram, then zero pages 40..47.
    for (let i = 0; i < 24; i++) byPage.engine.page(0, 0, (4 + i) * PAGE, false, run, i * PAGE, 7);
    for (let i = 0; i < 8; i++) byPage.engine.page(0, 0, (40 + i) * PAGE, true, run, 0, 8);
    byRun.engine.pages(0, 0, 4 * PAGE, 24, false, run, 0, 7);
    byRun.engine.pages(0, 0, 40 * PAGE, 8, true, run, 0, 8);

    t.deepEqual(rows(byRun.sink.records), rows(byPage.sink.records), 'the same records, in the same order');
    const present = byRun.sink.records.filter((r) => (r.kind === EventKind.FX_COPY || r.kind === EventKind.FX_ZERO) && r.b === PlaceOutcome.ALREADY_PRESENT);
    t.deepEqual(present.map((r) => r.offset / PAGE), [10], 'the urgent page is the one found present');
    t.deepEqual(byRun.engine.stats, byPage.engine.stats);
    for (const [from, count] of [[4, 24], [40, 8]] as const) {
      t.true(Buffer.from(byRun.backend.read(0, from * PAGE, count * PAGE)).equals(Buffer.from(byPage.backend.read(0, from * PAGE, count * PAGE))), `the same memory from page ${from}`);
    }
    t.true(Buffer.from(byRun.backend.read(0, 10 * PAGE, PAGE)).equals(Buffer.from(urgent)), 'the urgent page kept');
  } finally {
    byPage.backend.close();
    byRun.backend.close();
  }
});
