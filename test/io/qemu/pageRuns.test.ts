import test from 'ava';
import { TARGET_PAGE_SIZE } from '../../../src/engine/constants.js';
import { MAX_RUN_PAGES, PageRuns } from '../../../src/io/qemu/pageRuns.js';
import type { PageItem, ZeroPageItem } from '../../../src/engine/qemuWire/index.js';

const P = TARGET_PAGE_SIZE;

function dataPage(block: string, page: number): PageItem {
  const data = new Uint8Array(P).fill(page & 0xff);
  return { kind: 'page', block, pageOffset: page * P, data } as PageItem;
}
function zeroPage(block: string, page: number): ZeroPageItem {
  return { kind: 'zero-page', block, pageOffset: page * P } as ZeroPageItem;
}

function collect(): { runs: Array<{ block: string; first: number; count: number; zero: boolean; bytes: number[] }>; runsOf: PageRuns } {
  const runs: Array<{ block: string; first: number; count: number; zero: boolean; bytes: number[] }> = [];
  const runsOf = new PageRuns((block, offset, count, zero, data) => {
    // The first byte of each data page: which page landed where in the staging buffer.
    runs.push({ block, first: offset / P, count, zero, bytes: zero ? [] : Array.from({ length: count }, (_, i) => data[i * P]!) });
  });
  return { runs, runsOf };
}

test('consecutive pages of one block gather into one run, handed on at flush, data contiguous in order', (t) => {
  const { runs, runsOf } = collect();
  for (let p = 10; p < 14; p++) runsOf.add(dataPage('pc.ram', p));
  t.is(runsOf.pending, 4);
  t.deepEqual(runs, [], 'nothing handed on before the flush');
  runsOf.flush();
  t.deepEqual(runs, [{ block: 'pc.ram', first: 10, count: 4, zero: false, bytes: [10, 11, 12, 13] }]);
  runsOf.flush();
  t.is(runs.length, 1, 'an empty flush hands on nothing');
});

test('a run breaks at a gap, another block, a zero/data change and at its largest size', (t) => {
  const { runs, runsOf } = collect();
  runsOf.add(dataPage('a', 0));
  runsOf.add(dataPage('a', 1));
  runsOf.add(dataPage('a', 3)); // gap
  runsOf.add(dataPage('b', 4)); // other block
  runsOf.add(zeroPage('b', 5)); // zero after data
  runsOf.add(zeroPage('b', 6));
  runsOf.add(dataPage('b', 7)); // data after zero
  for (let p = 100; p < 100 + MAX_RUN_PAGES + 1; p++) runsOf.add(dataPage('c', p));
  runsOf.flush();
  t.deepEqual(
    runs.map((r) => [r.block, r.first, r.count, r.zero]),
    [
      ['a', 0, 2, false],
      ['a', 3, 1, false],
      ['b', 4, 1, false],
      ['b', 5, 2, true],
      ['b', 7, 1, false],
      ['c', 100, MAX_RUN_PAGES, false],
      ['c', 100 + MAX_RUN_PAGES, 1, false],
    ],
  );
  t.deepEqual(runs[5]!.bytes, Array.from({ length: MAX_RUN_PAGES }, (_, i) => (100 + i) & 0xff));
});

test('a page is copied when added: the read it came from may be reused before the flush', (t) => {
  const { runs, runsOf } = collect();
  const item = dataPage('pc.ram', 0);
  runsOf.add(item);
  item.data.fill(0xee); // the read buffer reused
  runsOf.flush();
  t.deepEqual(runs[0]!.bytes, [0]);
});

test('a sink that throws leaves no run behind', (t) => {
  let calls = 0;
  const runsOf = new PageRuns(() => {
    calls++;
    throw new Error('refused');
  });
  runsOf.add(dataPage('pc.ram', 0));
  t.throws(() => runsOf.flush(), { message: 'refused' });
  t.is(runsOf.pending, 0);
  runsOf.flush();
  t.is(calls, 1);
});
