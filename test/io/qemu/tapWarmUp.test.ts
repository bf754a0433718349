/**
 * The tap recorder's warm-up (tapWarmUp.ts): its synthetic stream is a QEMU stream the real
 * decoder reads to the end, its records reach the recorder as a migration's would, and it
 * leaves nothing behind on disk.
 */
import test from 'ava';
import { readdirSync } from 'node:fs';
import { MainStreamDecoder } from '../../../src/engine/qemuWire/index.js';
import { warmUpRecorder, warmUpStream } from '../../../src/io/qemu/tapWarmUp.js';
import { scratchDir } from '../../scratchDir.js';

const dir = scratchDir('tap-warm-up-test-');

test('the warm-up stream is a whole QEMU main stream: header to EOF, every 17th page a ZERO record, named then CONTINUE pages', (t) => {
  const decoder = new MainStreamDecoder();
  const items = decoder.push(warmUpStream(1000));
  decoder.end();
  const pages = items.filter((i) => i.kind === 'page' || i.kind === 'zero-page');
  t.is(pages.length, 1000);
  t.is(pages.filter((i) => i.kind === 'zero-page').length, Math.ceil((1000 - 5) / 17));
  t.is(items[0]!.kind, 'header');
  t.is(items.at(-1)!.kind, 'eof');
  t.true(pages.some((p) => p.kind === 'page' && p.continued) && pages.some((p) => p.kind === 'page' && !p.continued), 'both forms of a page record');
});

test('the warm-up records its stream through the real recorder, split into reads that end inside records, and removes its journal', (t) => {
  const summary = warmUpRecorder(3000, dir);
  t.deepEqual(summary.pages, { precopy: 3000, main: 0, preempt: 0 });
  t.is(summary.migration, 'completed');
  t.is(summary.connections.length, 1);
  t.is(summary.connections[0]!.role, 'main');
  t.deepEqual(summary.connections[0]!.undecodedFrom, [], 'every byte decoded');
  t.true(summary.requests > 0, 'requests on the return path too');
  t.deepEqual(readdirSync(dir), [], 'no journal left behind');
});
