import test from 'ava';
import { PostcopyState } from '../../src/engine/constants.js';
import { applyDiscard, planDiscard, postcopyStateName } from '../../src/engine/discard.js';
import { createRamBlocks } from '../../src/engine/ramBlock.js';
import { BadRangeError, UnknownBlockError, WrongStateError } from '../../src/errors.js';

const TPS = 4096;

function blocks() {
  const bs = createRamBlocks([
    { name: 'pc.ram', length: 64 * TPS },
    { name: 'huge', length: 2 * 0x20_0000, hostPageSize: 0x20_0000 },
  ]);
  for (const b of bs) b.received.setAll();
  return bs;
}

test('a valid discard clears the receive bits of its ranges and returns them for the engine', (t) => {
  const bs = blocks();
  const plan = applyDiscard(PostcopyState.ADVISE, bs, { blockName: 'pc.ram', ranges: [[TPS, 2 * TPS], [10 * TPS, TPS]] });
  t.deepEqual(plan, {
    nextState: PostcopyState.DISCARD,
    firstDiscard: true,
    ranges: [
      { block: 0, start: TPS, length: 2 * TPS },
      { block: 0, start: 10 * TPS, length: TPS },
    ],
  });
  t.deepEqual(bs[0]!.received.complement().runs(), [[1, 2], [10, 1]]);
  t.is(bs[1]!.received.count(), bs[1]!.received.size, 'other blocks untouched');
});

test('a later discard (state DISCARD) is not the first one', (t) => {
  const bs = blocks();
  const plan = applyDiscard(PostcopyState.DISCARD, bs, { blockName: 'huge', ranges: [[0x1000, 0x1000]] });
  t.false(plan.firstDiscard);
  t.deepEqual(plan.ranges, [{ block: 1, start: 0x1000, length: 0x1000 }]);
  t.false(bs[1]!.received.test(1), 'target-page aligned ranges inside a huge page are accepted');
});

test('planDiscard validates without touching the receive bitmaps', (t) => {
  const bs = blocks();
  const plan = planDiscard(PostcopyState.ADVISE, bs, { blockName: 'pc.ram', ranges: [[0, 64 * TPS]] });
  t.deepEqual(plan.ranges, [{ block: 0, start: 0, length: 64 * TPS }]);
  t.is(bs[0]!.received.count(), 64);
});

test('a discard outside ADVISE or DISCARD is refused, naming the state', (t) => {
  for (const state of [PostcopyState.NONE, PostcopyState.LISTENING, PostcopyState.RUNNING, PostcopyState.END]) {
    t.throws(() => applyDiscard(state, blocks(), { blockName: 'pc.ram', ranges: [[0, TPS]] }), {
      instanceOf: WrongStateError,
      message: `RAM_DISCARD in wrong postcopy state (${postcopyStateName(state)})`,
    });
  }
  t.throws(() => applyDiscard(PostcopyState.LISTENING, blocks(), { blockName: 'pc.ram', ranges: [[0, TPS]] }), {
    message: 'RAM_DISCARD in wrong postcopy state (LISTENING)',
  });
  t.throws(() => applyDiscard(9, blocks(), { blockName: 'pc.ram', ranges: [[0, TPS]] }), {
    instanceOf: WrongStateError,
    message: 'RAM_DISCARD in wrong postcopy state (unknown (9))',
  });
});

test('a discard for an unknown block is refused by name', (t) => {
  t.throws(() => applyDiscard(PostcopyState.ADVISE, blocks(), { blockName: 'pc.rom', ranges: [[0, TPS]] }), {
    instanceOf: UnknownBlockError,
    message: "RAM_DISCARD: unknown RAM block 'pc.rom'",
  });
});

test('bad ranges are refused with what was wrong', (t) => {
  const cases: Array<[[number, number], string]> = [
    [[TPS + 1, TPS], "RAM_DISCARD: RAM block 'pc.ram': range 0x1001+0x1000 is not aligned to the target page size 4096"],
    [[TPS, 100], "RAM_DISCARD: RAM block 'pc.ram': range 0x1000+0x64 is not aligned to the target page size 4096"],
    [[63 * TPS, 2 * TPS], "RAM_DISCARD: RAM block 'pc.ram': range 0x3f000+0x2000 is past the block's end 0x40000"],
    [[64 * TPS, TPS], "RAM_DISCARD: RAM block 'pc.ram': range 0x40000+0x1000 is past the block's end 0x40000"],
    [[-TPS, TPS], "RAM_DISCARD: RAM block 'pc.ram': range start -4096 length 4096 is not a valid byte range"],
    [[TPS, 0], "RAM_DISCARD: RAM block 'pc.ram': range at 0x1000 is empty"],
  ];
  for (const [range, message] of cases) {
    t.throws(() => applyDiscard(PostcopyState.DISCARD, blocks(), { blockName: 'pc.ram', ranges: [range] }), {
      instanceOf: BadRangeError,
      message,
    });
  }
});

test('the bound is the postcopy length, not the max length', (t) => {
  const [grow] = createRamBlocks([{ name: 'grow', length: 4 * TPS, maxLength: 8 * TPS }]);
  t.throws(() => applyDiscard(PostcopyState.ADVISE, [grow!], { blockName: 'grow', ranges: [[4 * TPS, TPS]] }), {
    instanceOf: BadRangeError,
    message: "RAM_DISCARD: RAM block 'grow': range 0x4000+0x1000 is past the block's end 0x4000",
  });
});

test('a command with one bad range changes nothing', (t) => {
  const bs = blocks();
  t.throws(() => applyDiscard(PostcopyState.DISCARD, bs, { blockName: 'pc.ram', ranges: [[0, TPS], [TPS + 1, TPS]] }), {
    instanceOf: BadRangeError,
  });
  t.is(bs[0]!.received.count(), 64);
});
