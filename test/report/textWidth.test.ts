/**
 * Label widths of the report's plots come from DejaVu Sans's and DejaVu Sans Bold's advance
 * widths (src/report/textWidth.ts), the fonts Chromium draws the report with on Debian.
 */
import test from 'ava';
import { textWidth } from '../../src/report/textWidth.js';

const round1 = (v: number): number => Math.round(v * 10) / 10;

test('widths are the fonts\' advances times the size', (t) => {
  // DejaVu Sans: digits 0.636 em, ' ' 0.318, 'm' 0.974, 's' 0.521.
  t.is(round1(textWidth('7.912 ms', 11)), round1((4 * 0.636 + 0.318 + 0.318 + 0.974 + 0.521) * 11));
  // DejaVu Sans Bold: 'W' 1.103 em, 'i' 0.343.
  t.is(round1(textWidth('Wi', 10, true)), 14.5);
  t.is(textWidth('', 11), 0);
});

test('bold is wider than regular for every printable ASCII character', (t) => {
  for (let code = 0x21; code <= 0x7e; code++) {
    const c = String.fromCharCode(code);
    const regular = textWidth(c, 10);
    const bold = textWidth(c, 10, true);
    t.true(regular > 1 && regular <= 10, `${c}: ${regular}`);
    t.true(bold >= regular, `${c}: bold ${bold}, regular ${regular}`);
  }
});

test('the non-ASCII characters labels use are listed; any other counts as 1 em', (t) => {
  t.is(round1(textWidth('µ', 10)), 6.4);
  t.is(textWidth('—', 10), 10);
  t.is(round1(textWidth('→', 10, true)), 8.4);
  t.is(textWidth('漢', 12), 12);
  t.is(textWidth('😀', 12, true), 12, 'a character outside the BMP is one character, 1 em');
});
