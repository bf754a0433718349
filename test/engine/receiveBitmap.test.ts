import test from 'ava';
import { Bitmap } from '../../src/engine/bitmap.js';
import { RamBlock } from '../../src/engine/ramBlock.js';
import {
  decodeReceiveBitmap,
  encodeBlockReceiveBitmap,
  encodeReceiveBitmap,
  receiveBitmapSizeBytes,
  reloadBlockOf,
  reloadReceiveBitmap,
} from '../../src/engine/receiveBitmap.js';
import { DecodeError, EncodeError } from '../../src/errors.js';
import { hex, toHex } from './hex.js';

const END_MARK = '01 23 45 67 89 ab cd ef';

function bitmapWith(size: number, bits: number[]): Bitmap {
  const bm = new Bitmap(size);
  for (const b of bits) bm.set(b);
  return bm;
}

test('a one-page (4 KiB) block sends a non-empty bitmap: size 8, one word, end mark (the upstream bug)', (t) => {
  const blob = encodeReceiveBitmap(bitmapWith(1, [0]));
  t.is(toHex(blob), `00 00 00 00 00 00 00 08 01 00 00 00 00 00 00 00 ${END_MARK}`);
  t.is(receiveBitmapSizeBytes(1), 8); // bits / 8 rounded down would be 0
  t.true(decodeReceiveBitmap(blob, 1).test(0));
});

test('a one-page block built as a RamBlock sends its received page', (t) => {
  const block = new RamBlock({ name: 'tiny', length: 4096 }, 0, 0);
  block.markHostPageReceived(0);
  t.is(toHex(encodeBlockReceiveBitmap(block)), `00 00 00 00 00 00 00 08 01 00 00 00 00 00 00 00 ${END_MARK}`);
});

test('the bitmap travels as little-endian 64-bit words, the size rounded up to whole words', (t) => {
  const blob = encodeReceiveBitmap(bitmapWith(65, [0, 63, 64]));
  t.is(
    toHex(blob),
    `00 00 00 00 00 00 00 10 01 00 00 00 00 00 00 80 01 00 00 00 00 00 00 00 ${END_MARK}`,
  );
  t.deepEqual(decodeReceiveBitmap(blob, 65).runs(), [[0, 1], [63, 2]]);
});

test('size is ceil(bits / 8) rounded up to a multiple of 8', (t) => {
  const sizes = [0, 1, 8, 63, 64, 65, 128, 129, 65536].map(receiveBitmapSizeBytes);
  t.deepEqual(sizes, [0, 8, 8, 8, 8, 16, 16, 24, 8192]);
});

test('an empty bitmap is the size 0 and the end mark', (t) => {
  t.is(toHex(encodeReceiveBitmap(new Bitmap(0))), `00 00 00 00 00 00 00 00 ${END_MARK}`);
  t.is(decodeReceiveBitmap(hex(`00 00 00 00 00 00 00 00 ${END_MARK}`), 0).size, 0);
});

test('a block sends its used length only, even when its bitmap spans a larger max length', (t) => {
  const block = new RamBlock({ name: 'grow', length: 3 * 4096, maxLength: 100 * 4096 }, 0, 0);
  block.markHostPageReceived(2 * 4096);
  block.received.set(50); // past the used length: must not travel
  const blob = encodeBlockReceiveBitmap(block);
  t.is(toHex(blob), `00 00 00 00 00 00 00 08 04 00 00 00 00 00 00 00 ${END_MARK}`);
  t.true(block.received.test(50), 'the block itself is untouched');
});

test('the encoder rejects a bit count outside the bitmap', (t) => {
  t.throws(() => encodeReceiveBitmap(new Bitmap(10), 11), {
    instanceOf: EncodeError,
    message: 'RECV_BITMAP blob: bit count 11 is not an integer in [0, 10]',
  });
  t.throws(() => encodeReceiveBitmap(new Bitmap(10), -1), {
    instanceOf: EncodeError,
    message: 'RECV_BITMAP blob: bit count -1 is not an integer in [0, 10]',
  });
});

test('the decoder names a size mismatch, a wrong end mark, truncation, stray tail bits and trailing bytes', (t) => {
  const cases: Array<[string, number, string]> = [
    [`00 00 00 00 00 00 00 10 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ${END_MARK}`, 1,
      "RECV_BITMAP blob: size field says 16 bytes, block 'pc.ram' of 1 bits needs 8 (at byte 0)"],
    [`00 00 00 00 00 00 00 00 ${END_MARK}`, 1,
      "RECV_BITMAP blob: size field says 0 bytes, block 'pc.ram' of 1 bits needs 8 (at byte 0)"],
    [`00 00 00 00 00 00 00 08 01 00 00 00 00 00 00 00 01 23 45 67 89 ab cd ee`, 1,
      'RECV_BITMAP blob: end mark is 0x0123456789abcdee, expected 0x0123456789abcdef (at byte 16)'],
    [`00 00 00 00 00 00 00 08 01 00 00 00 00 00 00 00 01 23 45 67`, 1,
      'RECV_BITMAP blob: truncated: end mark needs 4 bytes, 0 left (at byte 20)'],
    [`00 00 00 00 00 00 00 08 01 00 00 00`, 1,
      'RECV_BITMAP blob: truncated: bitmap needs 8 bytes, 4 left (at byte 8)'],
    [`00 00 00 00 00 00`, 1,
      'RECV_BITMAP blob: truncated: size needs 8 bytes, 6 left (at byte 0)'],
    [`00 00 00 00 00 00 00 08 03 00 00 00 00 00 00 00 ${END_MARK}`, 1,
      'RECV_BITMAP blob: bits past the end (1 bits) are set (at byte 8)'],
    [`00 00 00 00 00 00 00 08 01 00 00 00 00 00 00 00 ${END_MARK} 00`, 1,
      'RECV_BITMAP blob: 1 trailing bytes after the end mark (at byte 24)'],
    [`ff 00 00 00 00 00 00 08 01 00 00 00 00 00 00 00 ${END_MARK}`, 1,
      'RECV_BITMAP blob: size 0xff00000000000008 is not below 2^53 (at byte 0)'],
  ];
  for (const [bytes, bits, message] of cases) {
    t.throws(() => decodeReceiveBitmap(hex(bytes), bits, 'pc.ram'), { instanceOf: DecodeError, message });
  }
});

test('source reload complements the received bits and clears permanently discarded ranges', (t) => {
  const blob = encodeReceiveBitmap(bitmapWith(16, [0, 1, 2, 9]));
  const dirty = reloadReceiveBitmap({ name: 'pc.ram', pages: 16, discarded: [[4 * 4096, 2 * 4096], [15 * 4096, 4096]] }, blob);
  t.deepEqual(dirty.runs(), [[3, 1], [6, 3], [10, 5]]);
});

test('source reload clips discarded ranges past the used length', (t) => {
  const block = new RamBlock({ name: 'grow', length: 4 * 4096, maxLength: 8 * 4096, discarded: [[2 * 4096, 6 * 4096]] }, 0, 0);
  block.markHostPageReceived(0);
  const dirty = reloadReceiveBitmap(reloadBlockOf(block), encodeBlockReceiveBitmap(block));
  t.is(dirty.size, 4);
  t.deepEqual(dirty.runs(), [[1, 1]]);
});

test('source reload rejects a blob for a block of another size, naming the block', (t) => {
  const blob = encodeReceiveBitmap(new Bitmap(64));
  t.throws(() => reloadReceiveBitmap({ name: 'pc.bios', pages: 65, discarded: [] }, blob), {
    instanceOf: DecodeError,
    message: "RECV_BITMAP blob: size field says 8 bytes, block 'pc.bios' of 65 bits needs 16 (at byte 0)",
  });
});
