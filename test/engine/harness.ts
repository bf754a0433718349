import { MigCommand } from '../../src/engine/constants.js';
import { Destination, type DestinationConfig } from '../../src/engine/destination.js';
import { ArraySink, EVENT_KIND_NAMES, EventKind, type EventRecord } from '../../src/engine/events.js';
import { encodeAdvise, encodeRamDiscard, hostPageSizeSummary } from '../../src/engine/wire.js';
import { MockBackend, type MockBackendOptions } from '../../src/io/backends/mockBackend.js';
import { unpack } from 'msgpackr';

export interface Rig {
  engine: Destination;
  backend: MockBackend;
  sink: ArraySink;
  sent: Array<[number, Uint8Array]>;
  /** Whether the return path accepts messages. */
  link: { up: boolean };
}

/** An engine over a mock backend with an in-memory sink and a recording return path. */
export function rig(config: Partial<DestinationConfig> = {}, backendOptions: MockBackendOptions = {}): Rig {
  const blocks = config.blocks ?? [{ name: 'pc.ram', length: 64 * 4096 }];
  const backend = new MockBackend(blocks.map((b) => ({ name: b.name, length: b.length, maxLength: b.maxLength ?? b.length, hostPageSize: b.hostPageSize ?? 4096, hugetlbfs: b.hugetlbfs ?? false })), backendOptions);
  const sink = new ArraySink();
  const sent: Array<[number, Uint8Array]> = [];
  const link = { up: true };
  const engine = new Destination(
    { blocks, vcpuTids: config.vcpuTids ?? [73001, 73002], preempt: config.preempt ?? false, ...(config.preemptEnd ? { preemptEnd: config.preemptEnd } : {}) },
    backend,
    { send: (type, payload) => (link.up ? (sent.push([type, payload.slice()]), true) : false) },
    sink,
  );
  return { engine, backend, sink, sent, link };
}

/** ADVISE with the payload matching the engine's blocks. */
export function advise(r: Rig, t = 1): void {
  const summary = hostPageSizeSummary(r.engine.blocks.map((b) => b.hostPageSize));
  r.engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: summary, targetPageSize: 4096 }), t);
}

export function discard(r: Rig, block: string, ranges: Array<[number, number]>, t = 2): void {
  r.engine.command(MigCommand.POSTCOPY_RAM_DISCARD, encodeRamDiscard({ blockName: block, ranges }), t);
}

export function listen(r: Rig, t = 3): void {
  r.engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), t);
}

export function run(r: Rig, t = 4): void {
  r.engine.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0), t);
}

/** A 4 KiB data page whose bytes say which page it is. */
export function pageData(offset: number): Uint8Array {
  const d = new Uint8Array(4096);
  new DataView(d.buffer).setUint32(0, offset / 4096 + 1, true);
  d[4095] = 0xaa;
  return d;
}

/** The state transitions journaled so far, as 'machine:from->to'. */
export function transitions(sink: ArraySink): string[] {
  const names = ['postcopy', 'migration', 'faultThread', 'preemptThread'];
  return sink.records
    .filter((r) => r.kind === EventKind.FX_STATE)
    .map((r) => {
      const p = unpack(r.payload!) as { from: string; to: string };
      return `${names[r.a]}:${p.from}->${p.to}`;
    });
}

export function kinds(records: EventRecord[]): string[] {
  return records.map((r) => EVENT_KIND_NAMES[r.kind]);
}
