import test from 'ava';
import { initial, preemptThreadMachine, preemptThreadStatus, stateName, step } from '../../machines/index.js';
import type { PreemptThreadEvent } from '../../machines/index.js';
import { assertRefused, run } from './drive.js';

const START: PreemptThreadEvent = { type: 'START' };
const CONNECTED: PreemptThreadEvent = { type: 'CHANNEL_CONNECTED' };
const LOAD_ERROR: PreemptThreadEvent = { type: 'LOAD_ERROR' };
const CLEANUP: PreemptThreadEvent = { type: 'CLEANUP' };
const at = (events: PreemptThreadEvent[]) => run(preemptThreadMachine, initial(preemptThreadMachine).snapshot, events);

test('the whole life: NONE -> CREATED (waiting, loading, paused, loading) -> QUIT -> NONE', (t) => {
  const seen: string[] = [];
  let snapshot = initial(preemptThreadMachine).snapshot;
  const effects: string[][] = [];
  for (const event of [START, CONNECTED, LOAD_ERROR, CONNECTED, { type: 'RESUME' }, { type: 'EOS', outstanding: 0 }, CLEANUP] as PreemptThreadEvent[]) {
    seen.push(`${preemptThreadStatus(snapshot)} ${stateName(snapshot)}`);
    const next = step(preemptThreadMachine, snapshot, event);
    effects.push(next.actions.map((a) => a.type));
    snapshot = next.snapshot;
  }
  seen.push(`${preemptThreadStatus(snapshot)} ${stateName(snapshot)}`);
  t.deepEqual(seen, [
    'NONE NONE.idle',
    'CREATED CREATED.waitingForChannel',
    'CREATED CREATED.loading',
    'CREATED CREATED.paused',
    'CREATED CREATED.paused',
    'CREATED CREATED.loading',
    'QUIT QUIT',
    'NONE NONE.idle',
  ]);
  t.deepEqual(effects, [[], [], [], [], [], ['signalPreemptQuit'], ['shutdownPreemptChannel', 'joinPreemptThread']]);
});

test('QUIT with nothing outstanding stops the thread from any CREATED substate', (t) => {
  for (const before of [[START], [START, CONNECTED], [START, CONNECTED, LOAD_ERROR]]) {
    const next = step(preemptThreadMachine, at(before), { type: 'QUIT', outstanding: 0 });
    t.is(stateName(next.snapshot), 'QUIT');
    t.deepEqual(next.actions, [{ type: 'signalPreemptQuit' }]);
  }
});

test('ABORT (cleanup after a failure) stops the thread even with pages outstanding', (t) => {
  for (const before of [[START], [START, CONNECTED], [START, CONNECTED, LOAD_ERROR], [START, CONNECTED, { type: 'EOS', outstanding: 9 }]] as PreemptThreadEvent[][]) {
    const next = step(preemptThreadMachine, at(before), { type: 'ABORT' });
    t.is(stateName(next.snapshot), 'QUIT');
    t.deepEqual(next.actions, [{ type: 'signalPreemptQuit' }]);
  }
});

test('once stopping was asked for, a load error ends the thread instead of pausing it', (t) => {
  const draining = at([START, CONNECTED, { type: 'QUIT', outstanding: 4 }]);
  t.is(stateName(draining), 'CREATED.draining');
  const next = step(preemptThreadMachine, draining, LOAD_ERROR);
  t.is(stateName(next.snapshot), 'QUIT');
  t.deepEqual(next.actions, [{ type: 'signalPreemptQuit' }]);
});

test('refused events name the event and the current state, and change nothing', (t) => {
  const refuse = (events: PreemptThreadEvent[], event: PreemptThreadEvent, message: string) =>
    assertRefused(t, preemptThreadMachine, at(events), event, message);
  refuse([], CLEANUP, 'CLEANUP in wrong preemptThread state (NONE.idle)');
  refuse([], { type: 'QUIT', outstanding: 0 }, 'QUIT in wrong preemptThread state (NONE.idle)');
  refuse([CONNECTED], CONNECTED, 'CHANNEL_CONNECTED in wrong preemptThread state (NONE.channelReady)');
  refuse([START], { type: 'EOS', outstanding: 0 }, 'EOS in wrong preemptThread state (CREATED.waitingForChannel)');
  refuse([START], LOAD_ERROR, 'LOAD_ERROR in wrong preemptThread state (CREATED.waitingForChannel)');
  refuse([START, CONNECTED], START, 'START in wrong preemptThread state (CREATED.loading)');
  refuse([START, CONNECTED], CONNECTED, 'CHANNEL_CONNECTED in wrong preemptThread state (CREATED.loading)');
  refuse([START, CONNECTED], CLEANUP, 'CLEANUP in wrong preemptThread state (CREATED.loading)');
  refuse([START, CONNECTED], { type: 'OUTSTANDING_CHANGED', outstanding: 0 }, 'OUTSTANDING_CHANGED in wrong preemptThread state (CREATED.loading)');
  refuse([START, CONNECTED, LOAD_ERROR], { type: 'EOS', outstanding: 0 }, 'EOS in wrong preemptThread state (CREATED.paused)');
  refuse([START, CONNECTED, { type: 'EOS', outstanding: 1 }], CLEANUP, 'CLEANUP in wrong preemptThread state (CREATED.draining)');
  refuse([START, { type: 'ABORT' }], { type: 'ABORT' }, 'ABORT in wrong preemptThread state (QUIT)');
  refuse([START, { type: 'ABORT' }], START, 'START in wrong preemptThread state (QUIT)');
});
