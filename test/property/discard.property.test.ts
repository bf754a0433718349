import test from 'ava';
import fc from 'fast-check';
import { Bitmap } from '../../src/engine/bitmap.js';
import { MAX_DISCARD_RANGES_PER_COMMAND, PostcopyState, TARGET_PAGE_SIZE } from '../../src/engine/constants.js';
import { applyDiscard } from '../../src/engine/discard.js';
import { createRamBlocks } from '../../src/engine/ramBlock.js';
import { canonicaliseHostPages, discardBlock } from '../../src/engine/sourceDiscard.js';
import { decodeCommandFrame, decodeRamDiscard, ramDiscardCommand } from '../../src/engine/wire.js';
import { forAll } from '../../src/testing/properties.js';
import { runsBitmap } from '../../src/testing/arbitraries.js';

/** A dirty bitmap from random runs: from a few scattered pages to nearly all dirty. */
function dirtyArb(maxSize: number): fc.Arbitrary<Bitmap> {
  return runsBitmap(1, maxSize, { runDivisor: 4, maxOps: 40, minLength: 1 });
}

const pagesPerHostPageArb = fc.constantFrom(1, 2, 4, 8, 16, 512);

function bitsOf(bm: Bitmap): boolean[] {
  return Array.from({ length: bm.size }, (_, i) => bm.test(i));
}

// ---------------------------------------------------------------------------
// 2. Host-page canonicalisation

test('canonicalisation: contains the input, whole host pages only, right count, idempotent', (t) => {
  forAll(t, fc.tuple(dirtyArb(3000), pagesPerHostPageArb), ([input, pp]) => {
    const out = input.clone();
    const newlySet = canonicaliseHostPages(out, pp);
    const inBits = bitsOf(input);
    const outBits = bitsOf(out);
    inBits.forEach((b, i) => {
      if (b && !outBits[i]) throw new Error(`bit ${i} was lost`);
    });
    for (let hp = 0; hp < out.size; hp += pp) {
      const n = Math.min(pp, out.size - hp);
      const anyIn = inBits.slice(hp, hp + n).some(Boolean);
      if (anyIn ? !out.testRangeAllSet(hp, n) : !out.testRangeAllClear(hp, n)) {
        throw new Error(`host page at bit ${hp} is ${anyIn ? 'partly' : 'wrongly'} set`);
      }
    }
    if (newlySet !== out.count() - input.count()) throw new Error(`count ${newlySet}, really ${out.count() - input.count()}`);
    const again = out.clone();
    if (canonicaliseHostPages(again, pp) !== 0 || !again.equals(out)) throw new Error('not idempotent');
  });
});

test('canonicalisation changes nothing when the host page is the target page', (t) => {
  forAll(t, dirtyArb(3000), (input) => {
    const out = input.clone();
    if (canonicaliseHostPages(out, 1) !== 0 || !out.equals(input)) throw new Error('changed with 1 page per host page');
  });
});

// ---------------------------------------------------------------------------
// 3. Discard ranges and commands

test('discard ranges are sorted, disjoint, non-empty and cover exactly the dirty pages, 12 to a command', (t) => {
  forAll(t, fc.tuple(dirtyArb(3000), pagesPerHostPageArb), ([input, pp]) => {
    const dirty = input.clone();
    const pass = discardBlock({ name: 'pc.ram', pagesPerHostPage: pp }, dirty);
    const ranges = pass.commands.flatMap((c) => c.ranges);
    const covered = new Bitmap(dirty.size);
    let prevEnd = -1;
    for (const [start, length] of ranges) {
      if (length <= 0) throw new Error(`empty range at ${start}`);
      if (start % TARGET_PAGE_SIZE !== 0 || length % TARGET_PAGE_SIZE !== 0) throw new Error('range not page aligned');
      if (start <= prevEnd) throw new Error(`range at ${start} is not after the previous one's end ${prevEnd}`);
      prevEnd = start + length;
      covered.setRange(start / TARGET_PAGE_SIZE, length / TARGET_PAGE_SIZE);
    }
    if (!covered.equals(dirty)) throw new Error('ranges do not cover exactly the (canonicalised) dirty pages');
    for (const c of pass.commands) {
      if (c.ranges.length === 0 || c.ranges.length > MAX_DISCARD_RANGES_PER_COMMAND) throw new Error(`command of ${c.ranges.length} ranges`);
    }
    const full = pass.commands.slice(0, -1).every((c) => c.ranges.length === MAX_DISCARD_RANGES_PER_COMMAND);
    if (!full) throw new Error('only the last command of a block may be short');
    if (pass.commandsSent !== Math.ceil(ranges.length / MAX_DISCARD_RANGES_PER_COMMAND) || pass.commandsSent !== pass.commands.length) {
      throw new Error(`${pass.commandsSent} commands for ${ranges.length} ranges`);
    }
    if (pass.rangesSent !== ranges.length) throw new Error(`rangesSent ${pass.rangesSent} for ${ranges.length}`);
  });
});

test('the source pass, sent and applied on the destination, drops exactly the dirty pages', (t) => {
  forAll(t, fc.tuple(dirtyArb(2048), fc.constantFrom(1, 4, 512)), ([input, pp]) => {
    const hostPageSize = pp * TARGET_PAGE_SIZE;
    const pages = Math.ceil(input.size / pp) * pp;
    const dirty = new Bitmap(pages);
    input.forEachRun((s, c) => dirty.setRange(s, c));
    const [block] = createRamBlocks([{ name: 'pc.ram', length: pages * TARGET_PAGE_SIZE, hostPageSize }]);
    block!.received.setAll();
    const pass = discardBlock(block!, dirty);
    let state: number = PostcopyState.ADVISE;
    for (const command of pass.commands) {
      const frame = decodeCommandFrame(ramDiscardCommand(command));
      const plan = applyDiscard(state, [block!], decodeRamDiscard(frame.payload));
      if (plan.firstDiscard !== (state === PostcopyState.ADVISE)) throw new Error('first discard flag');
      state = plan.nextState;
    }
    if (!block!.received.complement().equals(dirty)) throw new Error('the destination dropped other pages than the dirty ones');
  });
});
