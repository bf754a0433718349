/**
 * bitmap.scan.sparse / bitmap.scan.runs: finding every run of set bits in a 32 MiB
 * bitmap (2^28 bits, a 1 TiB guest), in GB of bitmap per second, beside a C scanner
 * compiled and run on the same bitmap in the same run.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Bitmap } from '../src/engine/bitmap.js';
import { seededRandom } from '../src/io/backends/accessPatterns.js';
import { buildC, repoRoot } from './cbuild.js';
import { median, timeRuns, type Benchmark } from './harness.js';

const BITS = 2 ** 28;
const RUNS = 9;

/** One set bit per ~64 Ki bits on average: a dirty bitmap late in precopy. */
function sparse(): Bitmap {
  const bm = new Bitmap(BITS);
  const r = seededRandom(1);
  for (let i = 0; i < BITS / 65536; i++) bm.set(Math.floor(r() * BITS));
  return bm;
}

/** Runs of 1..4096 set bits separated by gaps of 1..4096: a working set. */
function runs(): Bitmap {
  const bm = new Bitmap(BITS);
  const r = seededRandom(2);
  let pos = 0;
  for (;;) {
    pos += 1 + Math.floor(r() * 4096);
    const len = 1 + Math.floor(r() * 4096);
    if (pos + len > BITS) break;
    bm.setRange(pos, len);
    pos += len;
  }
  return bm;
}

function scanJs(bm: Bitmap): number {
  let n = 0;
  bm.forEachRun(() => {
    n++;
  });
  return n;
}

function scanBench(name: string, make: () => Bitmap): Benchmark {
  return {
    name,
    description: `runs of set bits in a 32 MiB bitmap (${name.split('.').pop()}), GB/s`,
    run() {
      const bm = make();
      const bytes = bm.words.byteLength;
      const dir = join(repoRoot, 'bench', '.build');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `${name}.bin`);
      writeFileSync(file, bm.toLE64Bytes());
      const bin = buildC('bitmap_scan');
      const out = execFileSync(bin, [file, String(BITS), String(RUNS)], { encoding: 'utf8' }).trim().split('\n');
      const cSecs = out[0]!.split(' ').map(Number);
      const cRuns = Number(out[1]);
      let jsRuns = 0;
      const jsSecs = timeRuns(RUNS, () => {
        jsRuns = scanJs(bm);
      }, 2);
      if (jsRuns !== cRuns) throw new Error(`${name}: JS found ${jsRuns} runs, C found ${cRuns}`);
      return {
        median: bytes / median(jsSecs) / 1e9,
        unit: 'GB/s',
        runs: RUNS,
        higherIsBetter: true,
        baseline: { name: 'C scanner (cc -O2, 64-bit words, ctz)', median: bytes / median(cSecs) / 1e9, source: 'measured' },
        notes: `${cRuns} runs found by both`,
      };
    },
  };
}

export const benchmarks: Benchmark[] = [scanBench('bitmap.scan.sparse', sparse), scanBench('bitmap.scan.runs', runs)];
