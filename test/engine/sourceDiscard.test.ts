import test from 'ava';
import { Bitmap } from '../../src/engine/bitmap.js';
import { RamBlock } from '../../src/engine/ramBlock.js';
import {
  batchDiscardCommands,
  canonicaliseHostPages,
  discardBlock,
  discardRanges,
  sumDiscardCounters,
} from '../../src/engine/sourceDiscard.js';
import { encodeRamDiscard } from '../../src/engine/wire.js';
import { RamBlockError } from '../../src/errors.js';

const TPS = 4096;

function bitmapWith(size: number, runs: Array<[number, number]>): Bitmap {
  const bm = new Bitmap(size);
  for (const [s, c] of runs) bm.setRange(s, c);
  return bm;
}

test('canonicalisation makes partly dirty host pages wholly dirty and counts the newly set bits', (t) => {
  // 4 target pages per host page: host page 0 has bit 1, host page 1 bits 6-7, host page 2 is full.
  const dirty = bitmapWith(16, [[1, 1], [6, 2], [8, 4]]);
  t.is(canonicaliseHostPages(dirty, 4), 3 + 2);
  t.deepEqual(dirty.runs(), [[0, 12]]);
});

test('canonicalisation of a run crossing host pages fills both ends', (t) => {
  const dirty = bitmapWith(32, [[3, 6], [20, 1], [22, 1]]);
  t.is(canonicaliseHostPages(dirty, 4), (12 - 6) + (4 - 2));
  t.deepEqual(dirty.runs(), [[0, 12], [20, 4]]);
});

test('canonicalisation is a no-op when a host page is one target page', (t) => {
  const dirty = bitmapWith(16, [[1, 1], [6, 2]]);
  t.is(canonicaliseHostPages(dirty, 1), 0);
  t.deepEqual(dirty.runs(), [[1, 1], [6, 2]]);
});

test('canonicalisation stops at the end of a bitmap that ends inside a host page', (t) => {
  const dirty = bitmapWith(10, [[9, 1]]);
  t.is(canonicaliseHostPages(dirty, 4), 1);
  t.deepEqual(dirty.runs(), [[8, 2]]);
});

test('runs of dirty pages become byte ranges', (t) => {
  t.deepEqual(discardRanges(bitmapWith(64, [[0, 1], [5, 3], [63, 1]])), [
    [0, TPS],
    [5 * TPS, 3 * TPS],
    [63 * TPS, TPS],
  ]);
  t.deepEqual(discardRanges(new Bitmap(64)), []);
});

test('ranges are batched 12 to a command and the remainder flushed at the end of the block', (t) => {
  const runs: Array<[number, number]> = Array.from({ length: 25 }, (_, i) => [i * 2, 1]);
  const pass = discardBlock({ name: 'pc.ram', pagesPerHostPage: 1 }, bitmapWith(64, runs));
  t.deepEqual(pass.commands.map((c) => c.ranges.length), [12, 12, 1]);
  t.is(pass.rangesSent, 25);
  t.is(pass.commandsSent, 3);
  t.is(pass.newlyDirtied, 0);
  t.true(pass.commands.every((c) => c.blockName === 'pc.ram'));
  t.deepEqual(pass.commands.flatMap((c) => c.ranges), runs.map(([s]) => [s * TPS, TPS]));
});

test('exactly 12 ranges make one command; none make no command', (t) => {
  const twelve: Array<[number, number]> = Array.from({ length: 12 }, (_, i) => [i * TPS * 2, TPS]);
  t.is(batchDiscardCommands('a', twelve).length, 1);
  t.deepEqual(batchDiscardCommands('a', []), []);
  const clean = discardBlock({ name: 'a', pagesPerHostPage: 512 }, new Bitmap(1024));
  t.deepEqual(clean, { blockName: 'a', newlyDirtied: 0, commands: [], rangesSent: 0, commandsSent: 0 });
});

test('the plain fixture: pc.ram pages 0x100/0xef00 are one range in one 25-byte command', (t) => {
  // src: "postcopy_discard_send_range pc.ram:100/ef00", "mask words sent=1 in 1 commands".
  const block = new RamBlock({ name: 'pc.ram', length: 0x10000000 }, 0, 0);
  const dirty = bitmapWith(block.received.size, [[0x100, 0xef00]]);
  const pass = discardBlock(block, dirty);
  t.deepEqual(pass.commands, [{ blockName: 'pc.ram', ranges: [[0x100000, 0xef00000]] }]);
  t.is(encodeRamDiscard(pass.commands[0]!).length, 25);
  t.deepEqual([pass.rangesSent, pass.commandsSent], [1, 1]);
});

test('no zero-length discard range ever, whatever the dirty pattern', (t) => {
  const patterns: Bitmap[] = [
    bitmapWith(1, [[0, 1]]),
    bitmapWith(200, [[0, 200]]),
    bitmapWith(200, [[199, 1]]),
    bitmapWith(64, Array.from({ length: 32 }, (_, i) => [i * 2, 1] as [number, number])),
    bitmapWith(64, [[31, 2], [63, 1]]),
  ];
  for (const pp of [1, 2, 4, 512]) {
    for (const p of patterns) {
      const pass = discardBlock({ name: 'b', pagesPerHostPage: pp }, p.clone());
      const ranges = pass.commands.flatMap((c) => c.ranges);
      t.true(ranges.length > 0);
      t.true(ranges.every(([, len]) => len > 0), `pp ${pp}: ${JSON.stringify(ranges)}`);
      for (const c of pass.commands) t.notThrows(() => encodeRamDiscard(c));
    }
  }
});

test('counters sum over blocks', (t) => {
  const a = discardBlock({ name: 'a', pagesPerHostPage: 1 }, bitmapWith(64, [[0, 1], [2, 1]]));
  const b = discardBlock({ name: 'b', pagesPerHostPage: 1 }, bitmapWith(64, [[5, 5]]));
  t.deepEqual(sumDiscardCounters([a, b]), { rangesSent: 3, commandsSent: 2 });
});

test('a block with a bad host page ratio is refused by name', (t) => {
  t.throws(() => discardBlock({ name: 'odd', pagesPerHostPage: 0 }, new Bitmap(8)), {
    instanceOf: RamBlockError,
    message: "RAM block 'odd': 0 target pages per host page is not a positive integer",
  });
});
