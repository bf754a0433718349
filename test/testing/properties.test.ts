import test from 'ava';
import fc from 'fast-check';
import { Bitmap } from '../../src/engine/bitmap.js';
import { describeBitmap, discardRanges, runsBitmap } from '../../src/testing/arbitraries.js';
import { assertProperty, failureMessage, fcParams } from '../../src/testing/properties.js';

test('fcParams: FC_RUNS, FC_SEED, and FC_PATH (which replays with endOnFailure, and needs its seed)', (t) => {
  t.deepEqual(fcParams({}), { numRuns: 200 });
  t.deepEqual(fcParams({ FC_RUNS: '7', FC_SEED: '-12' }), { numRuns: 7, seed: -12 });
  t.deepEqual(fcParams({ FC_SEED: '5', FC_PATH: '3:1:0' }), { numRuns: 200, seed: 5, path: '3:1:0', endOnFailure: true });
  t.throws(() => fcParams({ FC_PATH: '3:1:0' }), { message: /set FC_SEED too/ });
  t.throws(() => fcParams({ FC_SEED: 'x' }), { message: /not an integer/ });
});

const failing = fc.property(discardRanges({ blockLengthBytes: 256 * 4096 }), (ranges) => {
  if (ranges.some((r) => r.lengthBytes > 4 * 4096)) throw new Error('a range longer than 4 pages');
});

test("a failure prints the property's own message, the counterexample as pages, and the line to replay it", (t) => {
  const details = fc.check(failing, { seed: 1234 });
  t.true(details.failed);
  const message = failureMessage(details);
  t.regex(message, /Caused by: Error: a range longer than 4 pages/);
  t.regex(message, /Counterexample: \[pages \[\d+\.\.\d+\]\]/);
  t.regex(message, /Replay this case without shrinking: FC_SEED=1234 FC_PATH=[\d:]+/);
  const error = t.throws(() => assertProperty(failing, { seed: 1234 }));
  t.regex(error.message, /a range longer than 4 pages/);
});

test('FC_PATH replays the reported case at once, without shrinking again', (t) => {
  const first = fc.check(failing, { seed: 1234 });
  const replayed = fc.check(failing, { seed: 1234, path: first.counterexamplePath!, endOnFailure: true });
  t.true(replayed.failed);
  t.is(replayed.numShrinks, 0);
  t.deepEqual(replayed.counterexample, first.counterexample);
});

test('bitmaps print as runs, not as an Int32Array', (t) => {
  const bm = new Bitmap(100);
  bm.setRange(3, 4);
  bm.set(50);
  t.is(describeBitmap(bm), 'Bitmap(100 bits, 5 set: [3..6], [50])');
  const [sample] = fc.sample(runsBitmap(10, 40, { runDivisor: 4, maxOps: 5, minLength: 1 }), { numRuns: 1, seed: 3 });
  t.regex(fc.stringify(sample), /^Bitmap\(\d+ bits, \d+ set/);
});
