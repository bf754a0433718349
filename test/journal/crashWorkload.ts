import { MigCommand } from '../../src/engine/constants.js';
import { Destination } from '../../src/engine/destination.js';
import type { RecordSink } from '../../src/engine/events.js';
import { encodeAdvise } from '../../src/engine/wire.js';
import { MockBackend } from '../../src/io/backends/mockBackend.js';
import type { JournalMeta } from '../../src/journal/meta.js';

export const CRASH_PAGES = 1 << 20; // 4 GiB of 4 KiB pages, sparse in the mock

export function crashMeta(backend: MockBackend): JournalMeta {
  return {
    engineVersion: 'test', source: 'engine', created: '2026-11-23T00:00:00Z', timeOriginNs: 0,
    blocks: [{ name: 'pc.ram', length: CRASH_PAGES * 4096, hostPageSize: 4096, hostAddress: backend.hostAddress(0) }],
    vcpuTids: [73001, 73002], capabilities: [], blocktimeMode: 'both',
  };
}

export function crashBackend(): MockBackend {
  return new MockBackend([{ name: 'pc.ram', length: CRASH_PAGES * 4096, hostPageSize: 4096 }]);
}

/**
 * A deterministic engine workload: ADVISE, LISTEN, RUN, then faults, zero pages and data
 * pages forever (until `inputs` inputs). Calls `applied(n)` after every input the engine
 * has finished applying, with the number of inputs applied so far.
 */
export function runCrashWorkload(backend: MockBackend, sink: RecordSink, inputs: number, applied: (n: number) => void): Destination {
  const engine = new Destination({ blocks: [{ name: 'pc.ram', length: CRASH_PAGES * 4096 }], vcpuTids: [73001, 73002], preempt: false }, backend, { send: () => true }, sink);
  const data = new Uint8Array(4096).fill(3);
  let n = 0;
  engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: 4096, targetPageSize: 4096 }), 1);
  applied(++n);
  engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), 2);
  applied(++n);
  engine.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0), 3);
  applied(++n);
  const base = engine.hostAddressOf(0);
  for (let p = 0; n < inputs && p < CRASH_PAGES; p++) {
    if (p % 7 === 0) {
      engine.fault(base + p * 4096 + 0x40, 73001 + (p & 1), 10 + 3 * p);
      applied(++n);
    }
    engine.page(0, 0, p * 4096, p % 3 === 0, data, 0, 11 + 3 * p);
    applied(++n);
  }
  return engine;
}
