/**
 * Codec figures:
 * - msgpackr.* : how msgpackr suits our journal payloads. `msgpackr-extract` (its native
 *   string extractor) installs as msgpackr's ordinary optional dependency where the registry
 *   has a build for the platform (linux-x64 here); `msgpackr.decode.js.extractorOff`
 *   measures the pure-JS path (MSGPACKR_NATIVE_ACCELERATION_DISABLED=true) against the
 *   default, both in child processes, since the choice is made once when msgpackr is imported.
 * - codec.reqPages.encode : the per-fault REQ_PAGES encoder beside a BigInt/DataView one.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isNativeAccelerationEnabled, Packr, Unpackr } from 'msgpackr';
import { encodeReqPages } from '../src/engine/wire.js';
import { median, timeRuns, type Benchmark, type BenchResult } from './harness.js';

const RUNS = 7;
const ELEMENTS = 4096;
/** Set in the child process that measures one msgpackr configuration. */
const CHILD_FLAG = 'POSTCOPY_CODEC_BENCH_CHILD';

/** A typical journal segment: a small header and columnar fault data (cf. FaultBatch). */
interface Segment {
  kind: string;
  seq: number;
  block: string;
  count: number;
  addresses: Float64Array;
  tids: Int32Array;
  timesNs: Float64Array;
  outcomes: Uint8Array;
}

function makeSegment(): Segment {
  const addresses = new Float64Array(ELEMENTS);
  const tids = new Int32Array(ELEMENTS);
  const timesNs = new Float64Array(ELEMENTS);
  const outcomes = new Uint8Array(ELEMENTS);
  let x = 12345;
  let t = 3_600_000_000_000; // monotonic ns, an hour after boot
  for (let i = 0; i < ELEMENTS; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    addresses[i] = 0x7ffa_0be0_0000 + (x % 65536) * 4096;
    tids[i] = 15782 + (x & 2);
    t += 1000 + (x % 50_000);
    timesNs[i] = t;
    outcomes[i] = x & 1;
  }
  return { kind: 'faults', seq: 4242, block: 'pc.ram', count: ELEMENTS, addresses, tids, timesNs, outcomes };
}

/** JSON cannot hold typed arrays: the baseline carries plain arrays and rebuilds them. */
function toJson(s: Segment): string {
  return JSON.stringify({
    ...s,
    addresses: Array.from(s.addresses),
    tids: Array.from(s.tids),
    timesNs: Array.from(s.timesNs),
    outcomes: Array.from(s.outcomes),
  });
}

function fromJson(text: string): Segment {
  const o = JSON.parse(text) as Omit<Segment, 'addresses' | 'tids' | 'timesNs' | 'outcomes'> & Record<string, number[]>;
  return {
    ...o,
    addresses: Float64Array.from(o['addresses']!),
    tids: Int32Array.from(o['tids']!),
    timesNs: Float64Array.from(o['timesNs']!),
    outcomes: Uint8Array.from(o['outcomes']!),
  };
}

/** Operations per second: median over RUNS runs of a batch sized to take about 100 ms. */
function opsPerSecond(fn: () => void): number {
  let batch = 1;
  for (;;) {
    const [seconds] = timeRuns(1, () => {
      for (let i = 0; i < batch; i++) fn();
    });
    if (seconds! >= 0.05 || batch >= 1 << 24) {
      batch = Math.max(1, Math.round((batch * 0.1) / Math.max(seconds!, 1e-9)));
      break;
    }
    batch *= 4;
  }
  const runs = timeRuns(RUNS, () => {
    for (let i = 0; i < batch; i++) fn();
  });
  return batch / median(runs);
}

// moreTypes: typed arrays travel as typed-array extensions and come back as typed arrays.
const packr = new Packr({ moreTypes: true, useRecords: false });
const unpackr = new Unpackr({ moreTypes: true, useRecords: false });

function checkSame(a: Segment, b: Segment): void {
  const same =
    a.kind === b.kind &&
    a.seq === b.seq &&
    a.block === b.block &&
    b.addresses instanceof Float64Array &&
    b.tids instanceof Int32Array &&
    Buffer.compare(Buffer.from(a.addresses.buffer), Buffer.from(b.addresses.buffer)) === 0 &&
    Buffer.compare(Buffer.from(a.timesNs.buffer), Buffer.from(b.timesNs.buffer)) === 0;
  if (!same) throw new Error('codec bench: the decoded segment differs from the original');
}

function segmentNotes(packed: Uint8Array, json: string): string {
  return `segment = 5-field header + 3 typed arrays of ${ELEMENTS} (f64, i32, f64) + 1 u8; msgpackr ${packed.length} B, JSON ${json.length} B (typed arrays as plain arrays, rebuilt on parse); msgpackr isNativeAccelerationEnabled=${String(isNativeAccelerationEnabled)}`;
}

function decodeBench(): BenchResult {
  const seg = makeSegment();
  const packed = packr.pack(seg);
  const json = toJson(seg);
  checkSame(seg, unpackr.unpack(packed) as Segment);
  checkSame(seg, fromJson(json));
  const msgpackr = opsPerSecond(() => unpackr.unpack(packed));
  const base = opsPerSecond(() => fromJson(json));
  return {
    median: msgpackr,
    unit: 'segments/s',
    runs: RUNS,
    higherIsBetter: true,
    baseline: { name: 'JSON.parse', median: base, source: 'measured' },
    notes: `unpack, as installed (no native extractor); ${segmentNotes(packed, json)}`,
  };
}

function encodeBench(): BenchResult {
  const seg = makeSegment();
  const packed = packr.pack(seg);
  const json = toJson(seg);
  const msgpackr = opsPerSecond(() => packr.pack(seg));
  const base = opsPerSecond(() => toJson(seg));
  return {
    median: msgpackr,
    unit: 'segments/s',
    runs: RUNS,
    higherIsBetter: true,
    baseline: { name: 'JSON.stringify', median: base, source: 'measured' },
    notes: `pack; ${segmentNotes(packed, json)}`,
  };
}

/** Runs this file as a child with msgpackr's native extractor on (as installed) or off. */
function childUnpackRate(extractorOff: boolean): { rate: number; native: boolean } {
  const env: NodeJS.ProcessEnv = { ...process.env, [CHILD_FLAG]: '1' };
  if (extractorOff) env['MSGPACKR_NATIVE_ACCELERATION_DISABLED'] = 'true';
  else delete env['MSGPACKR_NATIVE_ACCELERATION_DISABLED'];
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], { env, encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`codec bench child failed: ${child.stderr}`);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as { rate: number; native: boolean };
}

function extractorOffBench(): BenchResult {
  const installed = childUnpackRate(false);
  const off = childUnpackRate(true);
  return {
    median: off.rate,
    unit: 'segments/s',
    runs: RUNS,
    higherIsBetter: true,
    baseline: { name: 'msgpackr as installed (no-op extractor)', median: installed.rate, source: 'measured' },
    notes: `unpack with MSGPACKR_NATIVE_ACCELERATION_DISABLED=true (isNativeAccelerationEnabled=${String(off.native)}) vs as installed (${String(installed.native)}); each in its own child process`,
  };
}

function reqPagesBigInt(start: number, length: number): Uint8Array {
  const out = new Uint8Array(12);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(start));
  dv.setUint32(8, length);
  return out;
}

function reqPagesBench(): BenchResult {
  let offset = 0;
  // Every result feeds `sink`, so that no encoder call can be optimised away.
  let sink = 0;
  const ours = opsPerSecond(() => {
    offset = (offset + 0x1000) % 0x4000_0000;
    sink ^= encodeReqPages(0x1_0000_0000 + offset, 0x1000)[5]!;
  });
  const base = opsPerSecond(() => {
    offset = (offset + 0x1000) % 0x4000_0000;
    sink ^= reqPagesBigInt(0x1_0000_0000 + offset, 0x1000)[5]!;
  });
  if (sink < 0) throw new Error('unreachable: keeps sink alive');
  return {
    median: ours,
    unit: 'requests/s',
    runs: RUNS,
    higherIsBetter: true,
    baseline: { name: 'DataView.setBigUint64(BigInt(start))', median: base, source: 'measured' },
    notes: 'encodeReqPages (validated, two 32-bit halves) vs a naive BigInt encoder without validation',
  };
}

export const benchmarks: Benchmark[] = [
  {
    name: 'msgpackr.decode.js',
    description: 'msgpackr unpack of a journal segment (pure JS, extractor replaced by a no-op) vs JSON.parse',
    run: decodeBench,
  },
  {
    name: 'msgpackr.decode.js.extractorOff',
    description: 'msgpackr unpack with native acceleration switched off by env vs as installed',
    run: extractorOffBench,
  },
  {
    name: 'msgpackr.encode.js',
    description: 'msgpackr pack of a journal segment vs JSON.stringify',
    run: encodeBench,
  },
  {
    name: 'codec.reqPages.encode',
    description: 'REQ_PAGES payload encoding (one per fault)',
    run: reqPagesBench,
  },
];

if (process.env[CHILD_FLAG] === '1') {
  const packed = packr.pack(makeSegment());
  const rate = opsPerSecond(() => unpackr.unpack(packed));
  console.log(JSON.stringify({ rate, native: isNativeAccelerationEnabled }));
}
