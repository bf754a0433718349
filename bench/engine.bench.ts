/**
 * engine.place: target pages placed per second by the engine (mock backend, journal
 * records built and handed to a counting sink), beside the mock backend's own copy rate
 * (the same placements without the engine) measured in the same run.
 * engine.fault: faults requested and then resolved (fault → REQ_PAGES → page placed) per second.
 */
import { MigCommand } from '../src/engine/constants.js';
import { Destination } from '../src/engine/destination.js';
import { CountingSink } from '../src/engine/events.js';
import { encodeAdvise } from '../src/engine/wire.js';
import { MockBackend } from '../src/io/backends/mockBackend.js';
import { median, type Benchmark } from './harness.js';

const PAGES = 65536; // 256 MiB of 4 KiB pages
const RUNS = 7;
const DATA = new Uint8Array(4096).fill(0x5a);

function listeningEngine(): { engine: Destination; backend: MockBackend; sink: CountingSink } {
  const blocks = [{ name: 'pc.ram', length: PAGES * 4096 }];
  const backend = new MockBackend(blocks.map((b) => ({ ...b, hostPageSize: 4096 })));
  // A VMM's guest RAM is mapped before migration: first-touch page faults of the mock's
  // own memory are not the engine's cost.
  backend.reserveMemory(PAGES * 4096);
  const sink = new CountingSink();
  const engine = new Destination({ blocks, vcpuTids: [73001, 73002], preempt: false }, backend, { send: () => true }, sink);
  engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: 4096, targetPageSize: 4096 }), 1);
  engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), 2);
  engine.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0), 3);
  return { engine, backend, sink };
}

/** Runs `setup` untimed and `body` timed, `RUNS` times (plus one warm-up); returns seconds. */
function timed<T>(setup: () => T, body: (x: T) => void): number[] {
  const out: number[] = [];
  for (let r = 0; r <= RUNS; r++) {
    const x = setup();
    const t0 = process.hrtime.bigint();
    body(x);
    if (r > 0) out.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return out;
}

function rawBackendRate(): number {
  const secs = timed(
    () => {
      const backend = new MockBackend([{ name: 'pc.ram', length: PAGES * 4096, hostPageSize: 4096 }]);
      backend.reserveMemory(PAGES * 4096);
      backend.listen(() => {});
      backend.register(0);
      return backend;
    },
    (backend) => {
      for (let p = 0; p < PAGES; p++) {
        if (p % 4 === 0) backend.zero(0, p * 4096, 4096);
        else backend.copy(0, p * 4096, DATA, 0, 4096);
      }
    },
  );
  return PAGES / median(secs);
}

export const benchmarks: Benchmark[] = [
  {
    name: 'engine.place',
    description: 'target pages placed per second (4 KiB pages, mock backend, records to a counting sink)',
    run() {
      let records = 0;
      const secs = timed(listeningEngine, ({ engine, sink }) => {
        const before = sink.count;
        for (let p = 0; p < PAGES; p++) engine.page(0, 0, p * 4096, p % 4 === 0, DATA, 0, 10 + p);
        records = sink.count - before;
      });
      const base = rawBackendRate();
      return {
        median: PAGES / median(secs),
        unit: 'pages/s',
        runs: RUNS,
        higherIsBetter: true,
        baseline: { name: 'mock backend copy alone', median: base, source: 'measured' },
        notes: `${PAGES} pages per run (a quarter zero pages), ${records} records per run; goal ≥ 1 000 000 pages/s`,
      };
    },
  },
  {
    name: 'engine.fault',
    description: 'faults requested and resolved per second (fault → REQ_PAGES → page placed)',
    run() {
      const secs = timed(listeningEngine, ({ engine }) => {
        const base = engine.hostAddressOf(0);
        for (let p = 0; p < PAGES; p++) {
          engine.fault(base + p * 4096 + 0x80, 73001 + (p & 1), 10 + 2 * p);
          engine.page(0, 0, p * 4096, false, DATA, 0, 11 + 2 * p);
        }
      });
      const base = rawBackendRate();
      return {
        median: PAGES / median(secs),
        unit: 'faults/s',
        runs: RUNS,
        higherIsBetter: true,
        baseline: { name: 'mock backend copy alone', median: base, source: 'measured' },
        notes: `${PAGES} faults per run, each requested (REQ_PAGES encoded) and resolved`,
      };
    },
  },
];
