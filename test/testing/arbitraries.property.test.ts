import test from 'ava';
import fc from 'fast-check';
import { createRamBlocks } from '../../src/engine/ramBlock.js';
import { decodeCommandFrame, decodeRamDiscard } from '../../src/engine/wire.js';
import { MigCommand } from '../../src/engine/constants.js';
import { hostPageLayout, wireCommandFrame } from '../../src/testing/arbitraries.js';
import { forAll } from '../../src/testing/properties.js';

test('host-page layouts are valid RAM blocks, and their frames decode to what they say, discards whole host pages inside the block', (t) => {
  const layoutAndFrame = hostPageLayout().chain((blocks) => fc.tuple(fc.constant(blocks), wireCommandFrame(blocks)));
  forAll(t, layoutAndFrame, ([blocks, frame]) => {
    const rams = createRamBlocks(blocks);
    const decoded = decodeCommandFrame(frame.bytes);
    if (decoded.kind !== frame.command || decoded.payload.length !== frame.payload.length) throw new Error(`frame ${fc.stringify(frame)} decodes to command ${decoded.kind}`);
    if (frame.command === MigCommand.POSTCOPY_RAM_DISCARD) {
      const d = decodeRamDiscard(decoded.payload);
      const rb = rams.find((b) => b.name === d.blockName);
      if (rb === undefined) throw new Error(`discard of unknown block ${d.blockName}`);
      for (const [start, length] of d.ranges) {
        if (start % rb.hostPageSize !== 0 || length % rb.hostPageSize !== 0 || length === 0 || start + length > rb.usedLength) throw new Error(`range ${start}+${length} in ${fc.stringify(blocks)}`);
      }
    }
  });
});
