// A consumer's own property, built only from postcopy-engine/testing (compiled and run by consumer.test.ts).
import fc from 'fast-check';
import { Bitmap, MockBackend, Destination, ArraySink, describeGuest } from 'postcopy-engine';
import { POSTCOPY_STATE_NAMES } from 'postcopy-engine/machines';
import { assertProperty, BitmapModel, destinationCommands, discardRanges, failureMessage, fcParams, runsBitmap } from 'postcopy-engine/testing';

// 1. "My" run finder against the reference model, on bitmaps made of runs.
function myRuns(bm: Bitmap): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  bm.forEachRun((start, length) => void out.push([start, length]));
  return out;
}
assertProperty(fc.property(runsBitmap(1, 500, { runDivisor: 4, maxOps: 20, minLength: 1 }), (bm) => JSON.stringify(myRuns(bm)) === JSON.stringify(BitmapModel.of(bm).runs())));

// 2. Canonical discard ranges are sorted, disjoint and inside the block.
assertProperty(
  fc.property(discardRanges({ blockLengthBytes: 64 * 4096 }), (ranges) =>
    ranges.every((r, i) => r.lengthBytes > 0 && r.offsetBytes + r.lengthBytes <= 64 * 4096 && (i === 0 || ranges[i - 1]!.offsetBytes + ranges[i - 1]!.lengthBytes < r.offsetBytes)),
  ),
);

// 3. Random command sequences against the engine on the mock backend follow the reference table.
const guest = describeGuest({ blocks: [{ name: 'pc.ram', lengthBytes: 16 * 4096 }], vcpuTids: [73001, 73002] });
assertProperty(
  fc.property(fc.commands(destinationCommands({ block: { name: 'pc.ram', lengthBytes: 16 * 4096 }, hostAddress: 0x7f0000000000, vcpuTids: [73001, 73002] }), { maxCommands: 30 }), (cmds) => {
    const engine = new Destination(guest.destination, new MockBackend(guest.layout), { send: () => true }, new ArraySink());
    fc.modelRun(() => ({ model: { state: 'NONE' as const }, real: { engine, tNs: 0 } }), cmds);
  }),
  { numRuns: 100 },
);

// 4. A failing property reports its own message, a counterexample as ranges, and how to replay it.
const failed = fc.check(
  fc.property(discardRanges({ blockLengthBytes: 64 * 4096 }), (ranges) => {
    if (ranges.length > 1) throw new Error('my discard code lost a range');
  }),
  { seed: 42 },
);
const message = failureMessage(failed);
for (const needle of ['my discard code lost a range', 'pages [', 'FC_SEED=42 FC_PATH=']) {
  if (!message.includes(needle)) throw new Error(`the failure report lacks '${needle}':\n${message}`);
}
console.log(`properties ok (${fcParams().numRuns} runs each; states ${POSTCOPY_STATE_NAMES.join(' ')})`);
