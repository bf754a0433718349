/**
 * Every connection direction of the QEMU 7.2 relay captures decodes, and yields the counts
 * of the wire README (fixtures qemu-7.2/wire/README.md), found there with an independent
 * decoder. "In postcopy" = after the LISTEN item of the PACKAGED (see decode.ts).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import {
  MainStreamDecoder,
  PreemptChannelDecoder,
  ReturnPathDecoder,
  type MainItem,
  type PageRequestItem,
  type RecvBitmapItem,
} from '../../../src/engine/qemuWire/index.js';
import { TARGET_PAGE_SIZE } from '../../../src/engine/constants.js';
import { WireError } from '../../../src/errors.js';
import { fixture } from '../../fixtures.js';
import { loadCapture, MAIN, PREEMPT, TO_DESTINATION, TO_SOURCE } from './capture.js';
import { countKinds, decodeAll, postcopyPages } from './decode.js';

const MiB = 1024 * 1024;

function sourceRequests(folder: string): number {
  const json = JSON.parse(readFileSync(fixture('wire', folder, 'query-migrate-src.json'), 'utf8')) as { ram: { 'postcopy-requests': number } };
  return json.ram['postcopy-requests'];
}

function requests(items: ReadonlyArray<{ kind: string }>): PageRequestItem[] {
  return items.filter((i): i is PageRequestItem => i.kind === 'page-request');
}

/** What every complete first connection shows before postcopy (qemu-wire.md, "in order"). */
function checkPrecopyShape(t: import('ava').ExecutionContext, items: readonly MainItem[]): void {
  t.deepEqual(
    items.slice(0, 5).map((i) => i.kind),
    ['header', 'configuration', 'open-return-path', 'ping', 'advise'],
  );
  const config = items[1];
  t.is(config?.kind === 'configuration' ? config.machineType : null, 'pc-i440fx-7.2');
  const memSize = items.find((i) => i.kind === 'mem-size');
  if (memSize?.kind !== 'mem-size') return void t.fail('no MEM_SIZE');
  t.is(memSize.blocks.length, 6);
  t.deepEqual(memSize.blocks[0], { name: 'pc.ram', usedLength: 256 * MiB });
  t.is(memSize.totalBytes, memSize.blocks.reduce((n, b) => n + b.usedLength, 0));
  t.true(memSize.blocks.every((b) => b.pageSize === undefined), 'ADVISE summary 0x1000: no block carries a page size');
  // The package: LISTEN, device state, PING 3, RUN, in that order right after PACKAGED.
  const at = items.findIndex((i) => i.kind === 'packaged');
  t.deepEqual(
    items.slice(at, at + 5).map((i) => i.kind),
    ['packaged', 'listen', 'device-state', 'ping', 'run'],
  );
  const deviceState = items[at + 2];
  t.is(deviceState?.kind === 'device-state' ? deviceState.bytes.length : -1, 15_569);
  const packagePing = items[at + 3];
  t.is(packagePing?.kind === 'ping' ? packagePing.value : -1, 3);
  // Counting from the PACKAGED item or from its RUN gives the same as from its LISTEN.
  t.deepEqual(postcopyPages(items, 'packaged'), postcopyPages(items, 'listen'));
  t.deepEqual(postcopyPages(items, 'run'), postcopyPages(items, 'listen'));
}

test('plain: the whole capture decodes, with the README counts', (t) => {
  const capture = loadCapture('plain', 'wire-main.gz');
  const main = decodeAll(new MainStreamDecoder(), capture.reads(MAIN, TO_DESTINATION));
  t.is(main.error, null);
  t.is(main.items.at(-1)?.kind, 'eof');
  checkPrecopyShape(t, main.items);
  t.deepEqual(postcopyPages(main.items), { pages: 60_782, zeroPages: 4_174 });
  t.is(countKinds(main.items)['ram-discard'], 6, 'one discard per block');

  const rp = decodeAll(new ReturnPathDecoder(), capture.reads(MAIN, TO_SOURCE));
  t.is(rp.error, null);
  const reqs = requests(rp.items);
  t.is(reqs.length, 4_418);
  t.is(reqs.filter((r) => r.named).length, 1);
  t.is(reqs.filter((r) => !r.named).length, 4_417);
  t.true(reqs.every((r) => r.block === 'pc.ram' && r.length === TARGET_PAGE_SIZE));
  t.is(reqs.length, sourceRequests('plain'));
  t.deepEqual(rp.items.filter((i) => i.kind === 'pong').map((i) => (i.kind === 'pong' ? i.value : 0)), [1, 2, 4, 3], 'PONG 4 before PONG 3');
  t.deepEqual(rp.items.at(-1), { kind: 'shut', offset: capture.bytes(MAIN, TO_SOURCE).length - 8, status: 0 });
});

test('plain: pages lying in one read are views into it, the others are assembled, and all hold the stream bytes', (t) => {
  const capture = loadCapture('plain', 'wire-main.gz');
  const reads = capture.reads(MAIN, TO_DESTINATION);
  const whole = capture.bytes(MAIN, TO_DESTINATION);
  const buffers = new Set(reads.map((r) => r.buffer));
  const decoder = new MainStreamDecoder();
  let views = 0;
  let assembled = 0;
  let wrong = 0;
  for (const read of reads) {
    for (const item of decoder.push(read)) {
      if (item.kind !== 'page') continue;
      const dataAt = item.offset + (item.continued ? 8 : 9 + item.block.length);
      if (Buffer.compare(item.data, whole.subarray(dataAt, dataAt + TARGET_PAGE_SIZE)) !== 0) wrong++;
      if (item.data.buffer === read.buffer && item.data.byteOffset >= read.byteOffset && item.data.byteOffset + TARGET_PAGE_SIZE <= read.byteOffset + read.length) views++;
      else if (!buffers.has(item.data.buffer)) assembled++;
    }
  }
  decoder.end();
  t.is(wrong, 0);
  t.is(views + assembled, 119_659, 'every page is either a view into its read or assembled');
  t.true(assembled > 0 && assembled < reads.length, `${assembled} pages spanned reads`);
});

test('preempt: main stream, preempt channel and return path decode, with the README counts', (t) => {
  const capture = loadCapture('preempt', 'wire-main.gz');
  const main = decodeAll(new MainStreamDecoder(), capture.reads(MAIN, TO_DESTINATION));
  t.is(main.error, null);
  checkPrecopyShape(t, main.items);
  t.is(postcopyPages(main.items).pages, 61_135);

  const preempt = decodeAll(new PreemptChannelDecoder(), capture.reads(PREEMPT, TO_DESTINATION));
  t.is(preempt.error, null);
  t.deepEqual(countKinds(preempt.items), { page: 49, eos: 1 }, 'the channel closes with an EOS');
  t.is(capture.reads(PREEMPT, TO_SOURCE).length, 0, 'nothing flows back on the preempt connection');

  const rp = decodeAll(new ReturnPathDecoder(), capture.reads(MAIN, TO_SOURCE));
  t.is(rp.error, null);
  t.is(requests(rp.items).length, 4_897);
  t.is(requests(rp.items).length, sourceRequests('preempt'));
});

test('recover-preempt: the first connection is cut, the resumed one goes on from its state', (t) => {
  const first = loadCapture('recover-preempt', 'wire-main.gz');
  const mainDecoder = new MainStreamDecoder();
  const main = decodeAll(mainDecoder, first.reads(MAIN, TO_DESTINATION));
  const length = first.bytes(MAIN, TO_DESTINATION).length;
  t.is(main.error?.reason, 'cut');
  t.is(main.error?.offset, length);
  t.regex(main.error?.message ?? '', new RegExp(`^main stream cut at byte ${length} inside section 2, between its EOS and its footer`));
  t.is(main.items.at(-1)?.kind, 'eos', 'the capture stops right after an EOS, before its footer');
  t.is(mainDecoder.lastItemEnd, length);
  checkPrecopyShape(t, main.items);
  t.is(postcopyPages(main.items).pages, 4_090);
  const firstPreempt = decodeAll(new PreemptChannelDecoder(), first.reads(PREEMPT, TO_DESTINATION));
  t.is(firstPreempt.error, null, 'the first preempt connection stops between records');
  t.deepEqual(countKinds(firstPreempt.items), { page: 25 });
  const firstRp = decodeAll(new ReturnPathDecoder(), first.reads(MAIN, TO_SOURCE));
  t.is(firstRp.error, null);
  const firstRequests = requests(firstRp.items).length;
  t.is(firstRequests, 128);

  const resume = loadCapture('recover-preempt', 'wire-resume.gz');
  const state = mainDecoder.state();
  const resumed = decodeAll(new MainStreamDecoder({ resume: state }), resume.reads(MAIN, TO_DESTINATION));
  t.is(resumed.error, null);
  t.deepEqual(
    resumed.items.slice(0, 7).map((i) => (i.kind === 'recv-bitmap-request' ? i.blockName : i.kind)),
    [...state.blocks.map((b) => b.name), 'postcopy-resume'],
    'no header: one RECV_BITMAP per block, then POSTCOPY_RESUME',
  );
  t.true(resumed.items.every((i) => i.kind !== 'section-part' || i.sectionId === 2), 'section id of the first connection');
  t.is(countKinds(resumed.items).page, 56_991);
  t.is(resumed.items.at(-1)?.kind, 'eof');
  const withoutResume = t.throws(() => new MainStreamDecoder().push(resume.reads(MAIN, TO_DESTINATION)[0]!), { instanceOf: WireError });
  t.is(withoutResume?.reason, 'bad-magic', 'a resumed connection has no header');

  const preempt = decodeAll(new PreemptChannelDecoder({ blocks: state.blocks }), resume.reads(PREEMPT, TO_DESTINATION));
  t.is(preempt.error, null);
  t.deepEqual(countKinds(preempt.items), { page: 78, eos: 1 });

  const rp = decodeAll(new ReturnPathDecoder(), resume.reads(MAIN, TO_SOURCE));
  t.is(rp.error, null);
  const bitmaps = rp.items.filter((i): i is RecvBitmapItem => i.kind === 'recv-bitmap');
  t.deepEqual(bitmaps.map((b) => b.blockName), state.blocks.map((b) => b.name));
  for (const [i, bitmap] of bitmaps.entries()) {
    const pages = state.blocks[i]!.usedLength / TARGET_PAGE_SIZE;
    t.is(bitmap.bitmap.length, Math.ceil(pages / 64) * 8, `bitmap of ${bitmap.blockName}: whole 64-bit words`);
  }
  t.is(rp.items.filter((i) => i.kind === 'resume-ack').length, 1);
  t.is(requests(rp.items).length, 4_190);
  t.is(firstRequests + requests(rp.items).length, sourceRequests('recover-preempt'));
  t.is(rp.items.at(-1)?.kind, 'shut');
});
