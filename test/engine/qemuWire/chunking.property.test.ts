/**
 * Property: however a stream is cut into chunks, the decoders hand out the same items (and
 * the same final error) as for one push. Run on slices of the real captures, bounded to keep
 * each case fast: the first 2 MB of the plain main stream (header to precopy pages), 2 MB of
 * it from the first discard on (discards, PACKAGED with its device state, postcopy pages),
 * decoded as a resumed connection from the state at that point, the preempt channel and two
 * return paths (plain, and the resumed one with its RECV_BITMAP blobs).
 */
import test from 'ava';
import fc from 'fast-check';
import { MainStreamDecoder, PreemptChannelDecoder, ReturnPathDecoder } from '../../../src/engine/qemuWire/index.js';
import { assertProperty, fcParams } from '../../../src/testing/properties.js';
import { loadCapture, MAIN, PREEMPT, TO_DESTINATION, TO_SOURCE } from './capture.js';
import { decodeAll, plain } from './decode.js';

const SLICE = 2 * 1024 * 1024;
/** Each case decodes about 4.4 MB in possibly tiny chunks: fewer cases than FC_RUNS asks for. */
const MAX_CASES = 60;

interface Subject {
  name: string;
  bytes: Uint8Array;
  decoder: () => { push(c: Uint8Array): unknown[]; end(): void };
}

function subjects(): Subject[] {
  const plainCapture = loadCapture('plain', 'wire-main.gz');
  const main = plainCapture.bytes(MAIN, TO_DESTINATION);
  const firstDiscard = decodeAll(new MainStreamDecoder(), [main]).items.find((i) => i.kind === 'ram-discard')!.offset;
  const upToDiscard = new MainStreamDecoder();
  upToDiscard.push(main.subarray(0, firstDiscard));
  const state = upToDiscard.state();
  const resume = loadCapture('recover-preempt', 'wire-resume.gz');
  return [
    { name: 'plain main, first 2 MB', bytes: main.subarray(0, SLICE), decoder: () => new MainStreamDecoder() },
    { name: 'plain main, 2 MB from the first discard', bytes: main.subarray(firstDiscard, firstDiscard + SLICE), decoder: () => new MainStreamDecoder({ resume: state }) },
    { name: 'preempt channel', bytes: loadCapture('preempt', 'wire-main.gz').bytes(PREEMPT, TO_DESTINATION), decoder: () => new PreemptChannelDecoder() },
    { name: 'plain return path', bytes: plainCapture.bytes(MAIN, TO_SOURCE), decoder: () => new ReturnPathDecoder() },
    { name: 'resumed return path', bytes: resume.bytes(MAIN, TO_SOURCE), decoder: () => new ReturnPathDecoder() },
  ];
}

/** `bytes` cut into chunks whose sizes cycle through `sizes`. */
function* chunked(bytes: Uint8Array, sizes: readonly number[]): Generator<Uint8Array> {
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length]!;
    yield bytes.subarray(at, at + size);
    at += size;
  }
}

function summary(subject: Subject, chunks: Iterable<Uint8Array>): string {
  const { items, error } = decodeAll(subject.decoder(), chunks);
  return JSON.stringify({ items: items.map((i) => plain(i as never)), error: error?.message ?? null });
}

const chunkSizesArb = fc.array(
  fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 16 }), weight: 1 },
    { arbitrary: fc.integer({ min: 1, max: 9000 }), weight: 2 },
    { arbitrary: fc.integer({ min: 1, max: 300_000 }), weight: 2 },
  ),
  { minLength: 1, maxLength: 30 },
).filter((sizes) => sizes.some((s) => s > 0));

test('any chunking of capture slices decodes to the same items as one push', (t) => {
  const all = subjects();
  const expected = all.map((s) => summary(s, [s.bytes]));
  // Sanity: the slices hold what they are meant to.
  t.regex(expected[1]!, /"kind":"device-state"/);
  t.regex(expected[4]!, /"kind":"recv-bitmap"/);
  const params = fcParams();
  let cases = 0;
  assertProperty(
    fc.property(chunkSizesArb, (sizes) => {
      cases++;
      all.forEach((subject, i) => {
        const got = summary(subject, chunked(subject.bytes, sizes));
        if (got !== expected[i]) throw new Error(`${subject.name}: chunks [${sizes.join(', ')}] decode differently`);
      });
    }),
    { ...params, numRuns: Math.min(params.numRuns, MAX_CASES) },
  );
  t.is(cases, Math.min(params.numRuns, MAX_CASES));
});
