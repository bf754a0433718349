/**
 * The engine carries out exactly the effects the machines ask for, through its one
 * handler table: every effect of every machine has a handler, and over whole runs the
 * handlers called are exactly the effects the lifecycle's steps returned.
 */
import test from 'ava';
import type { AnyStateMachine } from 'xstate';
import {
  effectTypes,
  faultThreadMachine,
  migrationStatusMachine,
  postcopyMachine,
  preemptThreadMachine,
} from '../../machines/index.js';
import { MigCommand, RpMessage } from '../../src/engine/constants.js';
import type { EffectHandlers } from '../../src/engine/destination.js';
import { EventKind, MachineId, RequestFlag } from '../../src/engine/events.js';
import type { EffectFrom, LifecycleEffect } from '../../src/engine/lifecycle.js';
import type { MachineIdValue } from '../../src/engine/events.js';
import { FaultOutsideRamError, HostSupportError } from '../../src/errors.js';
import { advise, discard, kinds, listen, pageData, rig, run, type Rig } from './harness.js';

const BASE = 0x7f0000000000;
const MACHINES: readonly AnyStateMachine[] = [postcopyMachine, migrationStatusMachine, faultThreadMachine, preemptThreadMachine];

// ---- type level: one table keyed by effect type needs the four machines' effect types
// to be disjoint, and the table's keys to be exactly every machine's effect types.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;
type Overlap<Id extends MachineIdValue> = Id extends MachineIdValue
  ? { [Other in MachineIdValue]: Other extends Id ? never : EffectFrom<Id>['type'] & EffectFrom<Other>['type'] }[MachineIdValue]
  : never;
export type EffectChecks = [
  Assert<Equal<Overlap<MachineIdValue>, never>>,
  Assert<Equal<keyof EffectHandlers, LifecycleEffect['type']>>,
];

interface Spy {
  /** Effect types the handlers were called with, in call order. */
  performed: string[];
  /** Effect types the lifecycle's steps returned, in return order (RESUMED's ack is run ahead of its step: see Destination.resume). */
  asked: string[];
}

/**
 * Records every handler call and every step's returned effects. Reaches into the engine
 * on purpose (a test spy): the handler table's entries and the private lifecycle.
 */
function spy(r: Rig): Spy {
  const s: Spy = { performed: [], asked: [] };
  const table = r.engine.effects as unknown as Record<string, (params: unknown, t: number) => void>;
  for (const type of Object.keys(table)) {
    const handler = table[type]!;
    table[type] = (params, t) => {
      s.performed.push(type);
      handler(params, t);
    };
  }
  const life = (r.engine as unknown as { life: { send: (...args: unknown[]) => readonly LifecycleEffect[] } }).life;
  const send = life.send.bind(life);
  life.send = (...args) => {
    const effects = send(...args);
    s.asked.push(...effects.map((e) => e.type));
    return effects;
  };
  return s;
}

const sorted = (xs: readonly string[]): string[] => [...xs].sort();
const recordsOf = (r: Rig, kind: number) => r.sink.records.filter((x) => x.kind === kind);

test('the handler table has one handler per effect of every machine (names read off the machines)', (t) => {
  const { engine } = rig();
  const fromMachines = MACHINES.flatMap((m) => effectTypes(m));
  t.deepEqual(sorted(Object.keys(engine.effects)), sorted(fromMachines));
  for (const type of fromMachines) t.is(typeof engine.effects[type as LifecycleEffect['type']], 'function', type);
});

test('ADVISE: emptyAllBlocks drops every block once', (t) => {
  const r = rig({ blocks: [{ name: 'a', length: 8 * 4096 }, { name: 'b', length: 4 * 4096 }] });
  const s = spy(r);
  advise(r);
  t.deepEqual(s.performed, ['emptyAllBlocks']);
  t.deepEqual(recordsOf(r, EventKind.FX_DISCARD).map((x) => [x.block, x.offset, x.a]), [[0, 0, 8 * 4096], [1, 0, 4 * 4096]]);
});

test('ADVISE without host support: failNoHostSupport fails the migration (reportFailure) and refuses the command', (t) => {
  const r = rig({}, { supported: 'no userfaultfd' });
  const s = spy(r);
  t.throws(() => advise(r), { instanceOf: HostSupportError });
  t.deepEqual(s.performed, ['failNoHostSupport', 'reportFailure']);
  t.deepEqual(s.asked, s.performed);
});

test('RAM_DISCARD: the first prepares (huge pages off) then discards, later ones only discard', (t) => {
  const r = rig();
  advise(r);
  const s = spy(r);
  discard(r, 'pc.ram', [[0, 4096]]);
  discard(r, 'pc.ram', [[8 * 4096, 2 * 4096]], 3);
  t.deepEqual(s.performed, ['prepareFirstDiscard', 'discardRanges', 'discardRanges']);
  t.is(recordsOf(r, EventKind.FX_HUGEPAGES).length, 1);
  t.deepEqual(recordsOf(r, EventKind.FX_DISCARD).slice(1).map((x) => [x.offset, x.a]), [[0, 4096], [8 * 4096, 2 * 4096]]);
});

test('LISTEN straight from ADVISE performs the first-discard preparation once, then LISTEN\'s own effects in order', (t) => {
  const r = rig({ blocks: [{ name: 'a', length: 8 * 4096 }, { name: 'b', length: 8 * 4096 }] });
  advise(r);
  const s = spy(r);
  const before = r.sink.records.length;
  listen(r);
  t.deepEqual(s.performed, ['prepareFirstDiscard', 'openUserfault', 'startFaultThread', 'registerBlocks', 'allocateTempPages']);
  t.deepEqual(sorted(s.performed), sorted(s.asked));
  const fx = r.sink.records.slice(before + 1); // after the IN_COMMAND
  t.deepEqual(
    kinds(fx),
    ['FX_STATE', 'FX_HUGEPAGES', 'FX_HUGEPAGES', 'FX_STATE', 'FX_REGISTER', 'FX_REGISTER', 'FX_STATE'],
    'postcopy LISTENING, huge pages off per block, fault thread running, blocks registered, migration postcopy-active',
  );
  t.true(r.backend.isRegistered(0) && r.backend.isRegistered(1));
});

test('LISTEN after a discard does not prepare again; with preempt it also starts the preempt thread', (t) => {
  const r = rig({ preempt: true });
  advise(r);
  discard(r, 'pc.ram', [[0, 4096]]);
  const s = spy(r);
  listen(r);
  t.deepEqual(s.performed, ['openUserfault', 'startFaultThread', 'registerBlocks', 'allocateTempPages', 'startPreemptThread']);
  t.is(recordsOf(r, EventKind.FX_HUGEPAGES).length, 1, 'only the first discard turned huge pages off');
  t.is(r.engine.stateOf(MachineId.PREEMPT_THREAD), 'CREATED.waitingForChannel');
});

test('RUN asks for startVcpus and the engine performs it (it has nothing to start itself)', (t) => {
  const r = rig();
  advise(r);
  listen(r);
  const s = spy(r);
  run(r);
  t.deepEqual(s.performed, ['startVcpus']);
});

test('a break pauses (pauseIncoming), a new main channel sends the receive bitmaps, RESUME acks, resumes the threads and re-sends the requests', (t) => {
  const r = rig({ blocks: [{ name: 'a', length: 8 * 4096 }, { name: 'b', length: 8 * 4096 }] });
  advise(r);
  listen(r);
  run(r);
  r.engine.fault(BASE + 3 * 4096, 73001, 10);
  const s = spy(r);
  r.link.up = false;
  r.engine.channelBroken(0, 'reset', 20);
  t.deepEqual(s.performed, ['pauseIncoming']);
  r.link.up = true;
  s.performed.length = 0;
  const beforeRecover = r.sink.records.length;
  r.engine.channelConnected(0, 30);
  t.deepEqual(s.performed, ['sendReceivedBitmaps']);
  t.deepEqual(kinds(r.sink.records.slice(beforeRecover + 1)), ['FX_STATE', 'FX_RECV_BITMAP', 'FX_RECV_BITMAP'], 'recover, then one bitmap per block');
  s.performed.length = 0;
  r.sent.length = 0;
  const beforeResume = r.sink.records.length;
  r.engine.command(MigCommand.POSTCOPY_RESUME, new Uint8Array(0), 40);
  // The journal's order (see Destination.resume): the ack, the status change, the threads, the re-sent requests.
  t.deepEqual(s.performed, ['sendResumeAck', 'resumeThreads', 'forgetLastBlock', 'resendRequestedPages']);
  const fx = r.sink.records.slice(beforeResume + 1);
  t.deepEqual(kinds(fx), ['FX_RESUME_ACK', 'FX_STATE', 'FX_STATE', 'FX_REQUEST']);
  t.is(fx[3]!.b, RequestFlag.SYNC | RequestFlag.WITH_ID, 'the re-sent request names its block again');
  t.deepEqual(r.sent.map(([type]) => type), [RpMessage.RESUME_ACK, RpMessage.REQ_PAGES_ID]);
  t.deepEqual(sorted(s.performed), sorted(['sendResumeAck', 'resendRequestedPages', 'resumeThreads', 'forgetLastBlock']));
});

test('a fault outside RAM: reportFaultOutsideRam refuses it, once', (t) => {
  const r = rig();
  advise(r);
  listen(r);
  const s = spy(r);
  t.throws(() => r.engine.fault(BASE + 64 * 4096, 73001, 6), { instanceOf: FaultOutsideRamError });
  t.deepEqual(s.performed, ['reportFaultOutsideRam']);
  t.is(recordsOf(r, EventKind.FX_ERROR).length, 1);
});

test('the end of postcopy: cleanup quits and joins the threads (their machines\' effects), then the migration completes', (t) => {
  const r = rig({ preempt: true });
  advise(r);
  listen(r);
  r.engine.channelConnected(1, 4);
  run(r, 5);
  r.engine.endOfStream(1, 6);
  const s = spy(r);
  r.engine.endOfStream(0, 7);
  t.deepEqual(s.performed, ['cleanup', 'shutdownPreemptChannel', 'joinPreemptThread', 'signalFaultThreadQuit', 'joinFaultThread']);
  t.deepEqual(s.asked, s.performed);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'completed');
  t.is(r.engine.stateOf(MachineId.FAULT_THREAD), 'exited');
});

test('a failure after LISTEN: cleanup for a failure aborts the preempt thread, then the migration fails (reportFailure)', (t) => {
  const r = rig({ preempt: true, blocks: [{ name: 'pc.ram', length: 16 * 4096 }] });
  advise(r);
  discard(r, 'pc.ram', [[0, 4096]]);
  listen(r);
  const s = spy(r);
  t.throws(() => r.engine.resize(0, 32 * 4096, 9));
  t.deepEqual(s.performed, ['cleanup', 'signalPreemptQuit', 'shutdownPreemptChannel', 'joinPreemptThread', 'signalFaultThreadQuit', 'joinFaultThread', 'reportFailure']);
  t.deepEqual(s.asked, s.performed);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'failed');
});

test('over a whole run with breaks and recoveries, the handlers called are exactly the effects the steps returned', (t) => {
  const r = rig({ preempt: true, blocks: [{ name: 'pc.ram', length: 32 * 4096 }] });
  const s = spy(r);
  advise(r);
  for (let p = 0; p < 8; p++) r.engine.page(0, 0, p * 4096, false, pageData(p * 4096), 0, 2);
  discard(r, 'pc.ram', [[2 * 4096, 4096]], 3);
  listen(r, 4);
  r.engine.channelConnected(1, 5);
  run(r, 6);
  for (const [i, p] of [10, 11, 20].entries()) r.engine.fault(BASE + p * 4096, 73001, 10 + i);
  r.engine.page(1, 0, 10 * 4096, false, pageData(10 * 4096), 0, 20);
  r.link.up = false;
  r.engine.channelBroken(0, 'reset', 30);
  r.engine.channelBroken(1, 'reset', 31);
  r.engine.fault(BASE + 21 * 4096, 73002, 32);
  r.link.up = true;
  r.engine.channelConnected(0, 40);
  r.engine.channelConnected(1, 41);
  r.engine.command(MigCommand.POSTCOPY_RESUME, new Uint8Array(0), 42);
  for (let p = 8; p < 32; p++) if (p !== 10) r.engine.page(p % 2, 0, p * 4096, p % 3 === 0, pageData(p * 4096), 0, 50 + p);
  r.engine.endOfStream(1, 100);
  r.engine.endOfStream(0, 101);
  t.is(r.engine.stateOf(MachineId.MIGRATION), 'completed');
  t.true(s.performed.length > 15);
  t.deepEqual(sorted(s.performed), sorted(s.asked));
});
