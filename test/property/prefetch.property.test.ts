import test from 'ava';
import fc from 'fast-check';
import { TARGET_PAGE_SIZE } from '../../src/engine/constants.js';
import { Source } from '../../src/engine/source.js';
import { forAll } from '../../src/testing/properties.js';


const scenario = fc.record({
  pagesPerHost: fc.constantFrom(1, 4),
  hostPages: fc.integer({ min: 4, max: 96 }),
  cap: fc.integer({ min: 0, max: 64 }),
  preempt: fc.boolean(),
  ops: fc.array(
    fc.oneof(
      { weight: 4, arbitrary: fc.record({ op: fc.constant('request' as const), page: fc.nat() }) },
      { weight: 2, arbitrary: fc.record({ op: fc.constant('serve' as const), k: fc.integer({ min: 1, max: 8 }) }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('push' as const), k: fc.integer({ min: 1, max: 8 }) }) },
    ),
    { maxLength: 60 },
  ),
});

/**
 * Property 8 (prefetch): against a model of the urgent queue, a source with prefetch on
 * answers every queued request, in order, before it sends any page ahead; a page sent
 * ahead lies within the cap after some earlier request's host page; prefetch stays on the
 * urgent pages' channel; and every page is still sent exactly once, whole host pages
 * together, with the counters adding up.
 */
test('prefetch never delays a request, stays within its window, and sends every page exactly once', (t) => {
  forAll(t, scenario, ({ pagesPerHost, hostPages, cap, preempt, ops }) => {
    const pages = hostPages * pagesPerHost;
    const sent: Array<{ channel: number; page: number }> = [];
    const source = new Source(
      [{ name: 'ram', hostPageSize: pagesPerHost * TARGET_PAGE_SIZE, memory: new Uint8Array(pages * TARGET_PAGE_SIZE) }],
      { command: () => {}, page: (channel, _b, offset) => sent.push({ channel, page: offset / TARGET_PAGE_SIZE }), endOfStream: () => {} },
      preempt,
      cap,
    );
    source.startPostcopy();
    const done = new Uint8Array(pages);
    const pending: number[] = []; // host-page starts, in request order
    const requestedHosts: number[] = [];
    const take = (from: number): Array<{ channel: number; page: number }> => sent.slice(from);
    for (const o of ops) {
      if (o.op === 'request') {
        const page = o.page % pages;
        const host = page - (page % pagesPerHost);
        source.request({ blockName: 'ram', start: page * TARGET_PAGE_SIZE, length: TARGET_PAGE_SIZE });
        pending.push(host);
        requestedHosts.push(host);
        continue;
      }
      const from = sent.length;
      if (o.op === 'push') source.pushBackground(o.k);
      else source.serveUrgent(o.k);
      const out = take(from);
      for (const s of out) {
        if (done[s.page]) throw new Error(`page ${s.page} sent twice`);
        done[s.page] = 1;
      }
      if (o.op === 'push') {
        if (out.some((s) => s.channel !== 0)) throw new Error('background push left the main channel');
        continue;
      }
      // The model: queued requests first, in order, each a whole host page unless already sent.
      let i = 0;
      let budget = o.k;
      while (pending.length > 0 && budget > 0) {
        const host = pending.shift()!;
        if (i < out.length && out[i]!.page === host) {
          for (let j = 0; j < pagesPerHost; j++) {
            if (out[i + j]?.page !== host + j) throw new Error(`host page ${host} not sent whole`);
          }
          i += pagesPerHost;
          budget--;
        }
      }
      if (pending.length > 0 && i < out.length) throw new Error('a page was sent ahead while a request still waited');
      for (; i < out.length; i++) {
        const q = out[i]!.page;
        const near = requestedHosts.some((h) => q >= h + pagesPerHost && q < h + pagesPerHost + cap);
        if (!near) throw new Error(`page ${q} sent ahead but not within ${cap} pages after any request (requests ${requestedHosts.join(',')})`);
      }
      if (out.some((s) => s.channel !== (preempt ? 1 : 0))) throw new Error('an urgent or prefetched page left the urgent channel');
    }
    while (!source.finished()) {
      const from = sent.length;
      source.serveUrgent(1000);
      source.pushBackground(16);
      for (const s of take(from)) {
        if (done[s.page]) throw new Error(`page ${s.page} sent twice`);
        done[s.page] = 1;
      }
    }
    t.is(done.indexOf(0), -1, 'every page sent');
    const c = source.counters;
    t.is(c.urgentPages + c.prefetchPages + c.postcopyPages, pages, 'counters add up');
    if (cap < pagesPerHost) t.is(c.prefetchPages, 0, 'a cap below one host page prefetches nothing');
  });
});
