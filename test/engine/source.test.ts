import test from 'ava';
import { Bitmap } from '../../src/engine/bitmap.js';
import { TARGET_PAGE_SIZE } from '../../src/engine/constants.js';
import { encodeReceiveBitmap } from '../../src/engine/receiveBitmap.js';
import { PrefetchStreams } from '../../src/engine/prefetchStreams.js';
import { Source, type SourceOutput } from '../../src/engine/source.js';
import { runSimulatedMigration } from '../../src/io/migration/simulatedMigration.js';
import { scratchDir } from '../scratchDir.js';

interface Sent {
  channel: number;
  page: number;
}

/** A source over one block whose pages are all dirty and postcopy started; records what it sends. */
function postcopySource(pages: number, hostPageSize: number, preempt: boolean, prefetchPages: number): { source: Source; sent: Sent[] } {
  const sent: Sent[] = [];
  const memory = new Uint8Array(pages * TARGET_PAGE_SIZE);
  for (let p = 0; p < pages; p++) memory[p * TARGET_PAGE_SIZE] = 1 + (p % 200);
  const out: SourceOutput = {
    command: () => {},
    page: (channel, _block, offset) => sent.push({ channel, page: offset / TARGET_PAGE_SIZE }),
    endOfStream: () => {},
  };
  const source = new Source([{ name: 'ram', hostPageSize, memory }], out, preempt, prefetchPages);
  source.startPostcopy();
  return { source, sent };
}

const request = (source: Source, page: number): void => source.request({ blockName: 'ram', start: page * TARGET_PAGE_SIZE, length: TARGET_PAGE_SIZE });

test('a scattered request starts a stream but prefetches nothing', (t) => {
  const s = new PrefetchStreams(32);
  t.is(s.onRequest(0, 100, 1), null);
  t.is(s.onRequest(0, 5000, 1), null, 'far from the first stream: a second stream');
  t.is(s.onRequest(1, 101, 1), null, 'another block is another stream');
});

test('a stream doubles its window per request up to the cap, never covering a page twice', (t) => {
  const s = new PrefetchStreams(32);
  t.is(s.onRequest(0, 100, 1), null);
  t.deepEqual(s.onRequest(0, 101, 1), { first: 102, pages: 4 });
  t.deepEqual(s.onRequest(0, 102, 1), { first: 106, pages: 5 }, 'window 8 after 102: 103..110, of which 106.. are new');
  t.deepEqual(s.onRequest(0, 111, 1), { first: 112, pages: 16 });
  t.deepEqual(s.onRequest(0, 128, 1), { first: 129, pages: 32 });
  t.deepEqual(s.onRequest(0, 161, 1), { first: 162, pages: 32 }, 'capped at 32');
  t.is(s.onRequest(0, 150, 1), null, 'behind the stream\'s latest request: not a continuation');
});

test('streams of several vCPUs are followed at once', (t) => {
  const s = new PrefetchStreams(16);
  s.onRequest(0, 0, 1);
  s.onRequest(0, 1000, 1);
  t.deepEqual(s.onRequest(0, 1, 1), { first: 2, pages: 4 });
  t.deepEqual(s.onRequest(0, 1001, 1), { first: 1002, pages: 4 });
});

test('only whole host pages are prefetched; a host page larger than the cap gets none', (t) => {
  const s = new PrefetchStreams(32);
  t.is(s.onRequest(0, 0, 4), null);
  t.deepEqual(s.onRequest(0, 5, 4), { first: 8, pages: 4 }, 'request inside host page 4..7: next host page');
  const huge = new PrefetchStreams(32);
  t.is(huge.onRequest(0, 0, 512), null);
  t.is(huge.onRequest(0, 512, 512), null);
  const off = new PrefetchStreams(0);
  off.onRequest(0, 0, 1);
  t.is(off.onRequest(0, 1, 1), null, 'a cap of 0 turns prefetch off');
});

test('the source answers requests first, then prefetches ahead of a sequential walk, and sends every page once', (t) => {
  const { source, sent } = postcopySource(256, TARGET_PAGE_SIZE, true, 32);
  for (const p of [10, 11, 12]) {
    request(source, p);
    source.serveUrgent(1000);
  }
  t.deepEqual(sent.slice(0, 2).map((s) => s.page), [10, 11]);
  t.deepEqual(sent.slice(2, 6).map((s) => s.page), [12, 13, 14, 15], 'after 11: 12..15 ahead');
  t.true(sent.every((s) => s.channel === 1), 'prefetched pages travel with urgent pages (preempt channel)');
  t.is(source.counters.urgentPages, 2, 'the request for 12 found it already sent');
  t.true(source.counters.prefetchPages > 0);
  while (!source.finished()) source.pushBackground(64);
  const pages = sent.map((s) => s.page).sort((a, b) => a - b);
  t.deepEqual(pages, Array.from({ length: 256 }, (_, i) => i), 'every page exactly once');
  t.is(source.counters.urgentPages + source.counters.prefetchPages + source.counters.postcopyPages, 256);
});

test('a request that arrives while prefetch is queued goes first', (t) => {
  const { source, sent } = postcopySource(256, TARGET_PAGE_SIZE, false, 32);
  request(source, 0);
  request(source, 1); // queues 2..5 ahead
  source.serveUrgent(1); // page 0 only
  request(source, 200);
  source.serveUrgent(1000);
  t.deepEqual(sent.map((s) => s.page), [0, 1, 200, 2, 3, 4, 5]);
  t.true(sent.every((s) => s.channel === 0), 'without preempt everything is on the main channel');
});

test('prefetch held back by its caller: requested pages still go, the window waits for room', (t) => {
  const { source, sent } = postcopySource(256, TARGET_PAGE_SIZE, true, 32);
  request(source, 0);
  request(source, 1); // queues 2..5 ahead
  t.is(source.serveUrgent(1000, 0), 2, 'both requested pages, no prefetch');
  t.deepEqual(sent.map((s) => s.page), [0, 1]);
  t.is(source.serveUrgent(1000, 2), 2, 'two prefetched pages when there is room for two');
  request(source, 100);
  source.serveUrgent(1000, 0);
  t.deepEqual(sent.map((s) => s.page), [0, 1, 2, 3, 100], 'a later request goes ahead of the rest of the window');
  source.serveUrgent(1000);
  t.deepEqual(sent.map((s) => s.page).slice(0, 7), [0, 1, 2, 3, 100, 4, 5]);
});

test('after a recovery the source forgets queued prefetch and its streams', (t) => {
  const { source, sent } = postcopySource(64, TARGET_PAGE_SIZE, false, 32);
  request(source, 0);
  request(source, 1);
  // The destination received nothing: an all-clear receive bitmap.
  t.is(source.reloadReceiveBitmap('ram', encodeReceiveBitmap(new Bitmap(64))), 64);
  source.serveUrgent(1000);
  t.deepEqual(sent, [], 'nothing left to answer or prefetch');
  t.is(source.counters.prefetchPages, 0);
});

test('a simulated migration with prefetch (and a break) verifies its memory and replays with zero divergence', (t) => {
  for (const preempt of [false, true]) {
    const r = runSimulatedMigration({
      sizeBytes: 8 << 20, vcpus: 2, workload: 'sequential-increment', seed: 5, preempt, breakAt: 0.4, prefetchPages: 32,
      journalPath: `${scratchDir('pcsim-')}/prefetch.journal`,
    });
    t.is(r.status, 'completed');
    t.true(r.verified, 'memory verified page for page');
    t.true(r.source.prefetchPages > 0, 'vCPUs walking forward were prefetched for');
    t.deepEqual(r.replay?.ok, true, r.replay?.message);
  }
});
