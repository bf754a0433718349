/**
 * Property: generated streams (every item kind a source or destination sends) encode, and
 * decode in random chunks back to the very same items; encoding the decoded items gives
 * back the same bytes.
 */
import test from 'ava';
import fc from 'fast-check';
import {
  encodeMainItems,
  encodeRamItem,
  encodeReturnPathItems,
  MainStreamDecoder,
  PreemptChannelDecoder,
  ReturnPathDecoder,
  type MainItem,
  type PreemptItem,
  type RamBlockInfo,
  type ReturnPathItem,
} from '../../../src/engine/qemuWire/index.js';
import { TARGET_PAGE_SIZE } from '../../../src/engine/constants.js';
import { forAll } from '../../../src/testing/properties.js';
import { decodeAll, plain } from './decode.js';

const utf8 = new TextEncoder();

const nameArb = fc
  .oneof(
    fc.constantFrom('pc.ram', 'pc.bios', '/rom@etc/acpi/tables', 'é€😀', 'x'.repeat(255)),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
  )
  .filter((s) => !s.includes('\0') && utf8.encode(s).length <= 255);

const blocksArb = fc.uniqueArray(
  fc.record({ name: nameArb, pages: fc.integer({ min: 1, max: 64 }), pageSize: fc.option(fc.constantFrom(0x20_0000, 0x4000_0000), { nil: undefined }) }),
  { minLength: 1, maxLength: 4, selector: (b) => b.name },
);

/** A page whose bytes depend on `seed` (cheaper to generate than 4096 random bytes). */
function pageData(seed: number): Uint8Array {
  const data = new Uint8Array(TARGET_PAGE_SIZE).fill(seed & 0xff);
  data[seed % TARGET_PAGE_SIZE] = (seed >>> 8) & 0xff;
  return data;
}

const recordArb = fc.record({
  block: fc.nat(),
  page: fc.nat(),
  zero: fc.boolean(),
  preferContinue: fc.boolean(),
  seed: fc.nat(),
});

type ValueOf<A> = A extends fc.Arbitrary<infer T> ? T : never;
type RecordSpec = ValueOf<typeof recordArb>;

/** RAM records over `blocks`, CONTINUE wherever the generator asks and the block allows. */
function records(blocks: readonly RamBlockInfo[], specs: readonly RecordSpec[], last: { block: string | null }): PreemptItem[] {
  return specs.map((spec) => {
    const block = blocks[spec.block % blocks.length]!;
    const pageOffset = (spec.page % (block.usedLength / TARGET_PAGE_SIZE)) * TARGET_PAGE_SIZE;
    const continued = spec.preferContinue && last.block === block.name;
    last.block = block.name;
    return spec.zero
      ? { kind: 'zero-page', offset: 0, block: block.name, pageOffset, continued, fill: 0 }
      : { kind: 'page', offset: 0, block: block.name, pageOffset, continued, data: pageData(spec.seed) };
  });
}

const streamArb = fc.record({
  blocks: blocksArb,
  ownPageSizes: fc.boolean(),
  machine: nameArb,
  sectionId: fc.integer({ min: 0, max: 0xffff_ffff }),
  pings: fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 4, maxLength: 4 }),
  parts: fc.array(fc.array(recordArb, { maxLength: 6 }), { maxLength: 4 }),
  discards: fc.array(fc.tuple(fc.nat(), fc.array(fc.tuple(fc.maxSafeNat(), fc.integer({ min: 1, max: 2 ** 40 })), { minLength: 1, maxLength: 3 })), { maxLength: 3 }),
  switchover: fc.boolean(),
  deviceState: fc.uint8Array({ maxLength: 600 }),
  postcopy: fc.array(recordArb, { maxLength: 8 }),
  chunkSizes: fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 8 }),
});

/** A whole first connection, as the decoder would hand it out (offsets 0: not compared). */
function mainStream(s: ValueOf<typeof streamArb>): { items: MainItem[]; own: Set<string> } {
  const own = new Set<string>();
  const blocks: RamBlockInfo[] = s.blocks.map((b) => {
    const info: RamBlockInfo = { name: b.name, usedLength: b.pages * TARGET_PAGE_SIZE };
    if (s.ownPageSizes && b.pageSize !== undefined) {
      info.pageSize = b.pageSize;
      own.add(b.name);
    }
    return info;
  });
  const id = s.sectionId;
  const o = 0;
  const last = { block: null as string | null };
  const items: MainItem[] = [
    { kind: 'header', offset: o, version: 3 },
    { kind: 'configuration', offset: o, machineType: s.machine },
    { kind: 'open-return-path', offset: o, inPackage: false },
    { kind: 'ping', offset: o, value: s.pings[0]!, inPackage: false },
    { kind: 'advise', offset: o, advise: { hostPageSizeSummary: own.size > 0 ? 0x1000 + [...new Set(blocks.map((b) => b.pageSize ?? 0x1000))].filter((p) => p !== 0x1000).reduce((a, b) => a + b, 0) : 0x1000, targetPageSize: 0x1000 } },
    { kind: 'section-start', offset: o, sectionId: id, idstr: 'ram', instanceId: 0, versionId: 4 },
    { kind: 'mem-size', offset: o, totalBytes: blocks.reduce((n, b) => n + b.usedLength, 0), blocks },
    { kind: 'eos', offset: o },
    { kind: 'section-footer', offset: o, sectionId: id },
  ];
  for (const part of s.parts) {
    items.push({ kind: 'section-part', offset: o, sectionId: id, idstr: 'ram' }, ...records(blocks, part, last), { kind: 'eos', offset: o }, { kind: 'section-footer', offset: o, sectionId: id });
  }
  if (s.switchover) items.push({ kind: 'switchover-start', offset: o, inPackage: false });
  for (const [block, ranges] of s.discards) items.push({ kind: 'ram-discard', offset: o, discard: { blockName: blocks[block % blocks.length]!.name, ranges } });
  items.push(
    { kind: 'ping', offset: o, value: s.pings[1]!, inPackage: false },
    { kind: 'packaged', offset: o, length: 19 + s.deviceState.length },
    { kind: 'listen', offset: o, inPackage: true },
    { kind: 'device-state', offset: o, bytes: s.deviceState },
    { kind: 'ping', offset: o, value: s.pings[2]!, inPackage: true },
    { kind: 'run', offset: o, inPackage: true },
    { kind: 'ping', offset: o, value: s.pings[3]!, inPackage: false },
    { kind: 'section-end', offset: o, sectionId: id, idstr: 'ram' },
    ...records(blocks, s.postcopy, last),
    { kind: 'eos', offset: o },
    { kind: 'section-footer', offset: o, sectionId: id },
    { kind: 'recv-bitmap-request', offset: o, blockName: blocks[0]!.name },
    { kind: 'postcopy-resume', offset: o, inPackage: false },
    { kind: 'eof', offset: o },
  );
  return { items, own };
}

function concat(pieces: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function* chunked(bytes: Uint8Array, sizes: readonly number[]): Generator<Uint8Array> {
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length]!;
    yield bytes.subarray(at, at + size);
    at += size;
  }
}

/** Decoded items equal the generated ones (offsets aside), and their offsets increase. */
function checkSame<Item extends { offset: number }>(what: string, decoded: { items: Item[]; error: Error | null }, expected: readonly Item[]): void {
  if (decoded.error) throw new Error(`${what}: ${decoded.error.message}`);
  const got = JSON.stringify(decoded.items.map((i) => plain(i as never, false)));
  const want = JSON.stringify(expected.map((i) => plain(i as never, false)));
  if (got !== want) throw new Error(`${what}: decoded\n${got}\nexpected\n${want}`);
  for (let i = 1; i < decoded.items.length; i++) {
    if (decoded.items[i]!.offset < decoded.items[i - 1]!.offset) throw new Error(`${what}: offsets go back at item ${i}`);
  }
}

test('main stream: encode, decode in chunks, encode again', (t) => {
  forAll(t, streamArb, (s) => {
    const { items, own } = mainStream(s);
    const bytes = concat(encodeMainItems(items));
    const decoded = decodeAll(new MainStreamDecoder({ blocksWithOwnPageSize: own }), chunked(bytes, s.chunkSizes));
    checkSame('main stream', decoded, items);
    if (Buffer.compare(concat(encodeMainItems(decoded.items)), bytes) !== 0) throw new Error('re-encoding the decoded items gives other bytes');
  });
});

test('preempt channel: encode, decode in chunks', (t) => {
  const arb = fc.record({ blocks: blocksArb, specs: fc.array(recordArb, { maxLength: 20 }), eos: fc.boolean(), chunkSizes: fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 8 }) });
  forAll(t, arb, ({ blocks, specs, eos, chunkSizes }) => {
    const infos = blocks.map((b) => ({ name: b.name, usedLength: b.pages * TARGET_PAGE_SIZE }));
    const items: PreemptItem[] = [...records(infos, specs, { block: null }), ...(eos ? [{ kind: 'eos', offset: 0 } as const] : [])];
    const bytes = concat(items.flatMap(encodeRamItem));
    checkSame('preempt channel', decodeAll(new PreemptChannelDecoder({ blocks: infos }), chunked(bytes, chunkSizes)), items);
  });
});

const returnPathItemArb: fc.Arbitrary<ReturnPathItem> = fc.oneof(
  fc.record({ kind: fc.constant('shut' as const), offset: fc.constant(0), status: fc.integer({ min: 0, max: 0xffff_ffff }) }),
  fc.record({ kind: fc.constant('pong' as const), offset: fc.constant(0), value: fc.integer({ min: 0, max: 0xffff_ffff }) }),
  fc.record({ kind: fc.constant('page-request' as const), offset: fc.constant(0), block: nameArb, named: fc.boolean(), start: fc.maxSafeNat(), length: fc.integer({ min: 1, max: 0xffff_ffff }) }),
  fc.record({ kind: fc.constant('recv-bitmap' as const), offset: fc.constant(0), blockName: nameArb, bitmap: fc.integer({ min: 0, max: 64 }).chain((words) => fc.uint8Array({ minLength: words * 8, maxLength: words * 8 })) }),
  fc.constant({ kind: 'resume-ack' as const, offset: 0, value: 1 }),
  fc.constant({ kind: 'switchover-ack' as const, offset: 0 }),
);

test('return path: encode, decode in chunks; REQ_PAGES come out with the block of the last REQ_PAGES_ID', (t) => {
  forAll(t, fc.tuple(fc.array(returnPathItemArb, { maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 8 })), ([generated, chunkSizes]) => {
    // A request names its block unless generated otherwise and it is the last block named.
    let last: string | null = null;
    const items = generated.map((item) => {
      if (item.kind !== 'page-request') return item;
      const named = item.named || last !== item.block;
      last = item.block;
      return { ...item, named };
    });
    const bytes = concat(encodeReturnPathItems(items));
    checkSame('return path', decodeAll(new ReturnPathDecoder(), chunked(bytes, chunkSizes)), items);
  });
});
