/**
 * Property: for any sequence of faults, pages, breaks and recoveries driven into an
 * engine, the analysis of its journal says what the engine itself knows at the end —
 * status, outstanding requests, request and page counters, both blocktime reports.
 */
import test from 'ava';
import fc from 'fast-check';
import { MigCommand } from '../../src/engine/constants.js';
import { Destination } from '../../src/engine/destination.js';
import { encodeAdvise, hostPageSizeSummary } from '../../src/engine/wire.js';
import { PostcopyError } from '../../src/errors.js';
import { MockBackend } from '../../src/io/backends/mockBackend.js';
import { JournalWriter } from '../../src/journal/journalWriter.js';
import { assertProperty, fcParams } from '../../src/testing/properties.js';
import { analyze, tmpPath } from './helpers.js';

const PAGES = 16;
const VCPU_TIDS = [101, 102, 103];
const MS = 1e6;

type Op =
  | { op: 'fault'; page: number; thread: number; within: number }
  | { op: 'page'; page: number; zero: boolean; channel: number }
  | { op: 'break' }
  | { op: 'recover' }
  | { op: 'wait' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('fault' as const), page: fc.nat(PAGES - 1), thread: fc.nat(VCPU_TIDS.length), within: fc.nat(4095) }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('page' as const), page: fc.nat(PAGES - 1), zero: fc.boolean(), channel: fc.nat(1) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'break' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'recover' as const }) },
  { weight: 2, arbitrary: fc.constant({ op: 'wait' as const }) },
);

test('the analysis of an engine journal agrees with the engine at the end, whatever happened', (t) => {
  // fast-check's failure message carries the seed and the path to replay it (FC_SEED).
  t.notThrows(() => assertProperty(
    fc.property(fc.array(opArb, { maxLength: 60 }), fc.boolean(), fc.boolean(), (ops, preempt, finish) => {
      const path = tmpPath('prop.db');
      const backend = new MockBackend([{ name: 'pc.ram', length: PAGES * 4096, hostPageSize: 4096 }], { vcpuTids: VCPU_TIDS });
      const blocks = [{ name: 'pc.ram', length: PAGES * 4096 }];
      const host = backend.hostAddress(0);
      const writer = JournalWriter.create(path, {
        engineVersion: 'test',
        source: 'engine',
        created: new Date(0).toISOString(),
        timeOriginNs: 0,
        blocks: [{ ...blocks[0]!, hostPageSize: 4096, hostAddress: host }],
        vcpuTids: VCPU_TIDS,
        capabilities: preempt ? ['preempt'] : [],
        blocktimeMode: 'both',
      }, { segmentEvents: 64 });
      const engine = new Destination({ blocks, vcpuTids: VCPU_TIDS, preempt }, backend, { send: () => true }, writer);
      let t = 1 * MS;
      const attempt = (fn: () => void): void => {
        try {
          fn();
        } catch (err) {
          if (!(err instanceof PostcopyError)) throw err; // refused: journaled as FX_ERROR
        }
      };
      engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary([4096]), targetPageSize: 4096 }), t);
      engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), (t += MS));
      engine.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0), (t += MS));
      if (preempt) engine.channelConnected(1, t);
      const data = new Uint8Array(4096);
      for (const o of ops) {
        t += 0.3 * MS;
        if (o.op === 'fault') attempt(() => engine.fault(host + o.page * 4096 + o.within, o.thread < VCPU_TIDS.length ? VCPU_TIDS[o.thread]! : 999, t));
        else if (o.op === 'page') attempt(() => engine.page(preempt ? o.channel : 0, 0, o.page * 4096, o.zero, data, 0, t));
        else if (o.op === 'break') attempt(() => engine.channelBroken(0, 'cut', t));
        else if (o.op === 'recover') {
          attempt(() => engine.channelConnected(0, t));
          attempt(() => engine.command(MigCommand.POSTCOPY_RESUME, new Uint8Array(0), t));
        } else t += 2 * MS;
      }
      if (finish) attempt(() => engine.endOfStream(0, (t += MS)));
      writer.close();

      const a = analyze(path);
      const s = engine.stats;
      const bt = engine.blocktime.report();
      const open = a.blocktime.exact.stillBlocked;
      const close = (x: number, y: number): boolean => Math.abs(x - y) < 1e-6;
      const outstanding = [...engine.requested.entries()].sort((x, y) => x[1] - y[1] || x[0] - y[0]).map(([key, since]) => [key, since / 1e6]);
      return (
        a.status === engine.stateOf(1) &&
        a.postcopyState === engine.stateOf(0) &&
        JSON.stringify(a.requests.outstanding.map((r) => [r.offset, r.requestedAtMs])) === JSON.stringify(outstanding) &&
        a.requests.count === s.requests &&
        a.requests.resent === s.resends &&
        a.faults.count === s.faults &&
        a.pages.placed === s.hostPagesPlaced &&
        a.pages.zero === s.zeroPlaced &&
        a.pages.byChannel['0'] === s.placedByChannel[0] &&
        a.pages.byChannel['1'] === s.placedByChannel[1] &&
        a.errors.filter((e) => e.code !== 'MIGRATION_FAILED').length === s.errors &&
        a.blocktime.qemu.totalMs === bt.qemu.totalMs &&
        JSON.stringify(a.blocktime.qemu.perVcpuMs) === JSON.stringify(bt.qemu.perVcpuMs) &&
        // The engine counts closed waits; the analysis also runs each open wait to the end of the journal.
        close(a.blocktime.exact.totalMs - (open.length === VCPU_TIDS.length ? a.durationMs - Math.max(...open.map((o) => o.sinceMs)) : 0), bt.exact.totalNs / 1e6) &&
        a.blocktime.exact.perVcpuMs.every((ms, v) => close(ms - (open.some((o) => o.vcpu === v) ? a.durationMs - open.find((o) => o.vcpu === v)!.sinceMs : 0), bt.exact.perVcpuBlockedNs[v]! / 1e6)) &&
        open.length === bt.exact.blockedNow &&
        JSON.stringify(a.blocktime.exact.perVcpuFaults) === JSON.stringify(bt.exact.perVcpuFaults)
      );
    }),
    fcParams(),
  ));
});
