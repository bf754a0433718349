import test from 'ava';
import { faultThreadMachine, initial, stateName, step } from '../../machines/index.js';
import type { FaultThreadEvent } from '../../machines/index.js';
import { assertRefused, run } from './drive.js';

const START: FaultThreadEvent = { type: 'START' };
const QUIT: FaultThreadEvent = { type: 'QUIT' };
const RESUME: FaultThreadEvent = { type: 'RESUME' };
const at = (events: FaultThreadEvent[]) => run(faultThreadMachine, initial(faultThreadMachine).snapshot, events);

test('starts not started, and START runs it', (t) => {
  const first = initial(faultThreadMachine);
  t.is(stateName(first.snapshot), 'notStarted');
  t.deepEqual(first.actions, []);
  const next = step(faultThreadMachine, first.snapshot, START);
  t.is(stateName(next.snapshot), 'running');
  t.deepEqual(next.actions, []);
});

test('a lost return path pauses; RESUME continues and forgets the last block named', (t) => {
  const paused = step(faultThreadMachine, at([START]), { type: 'RETURN_PATH_LOST' });
  t.is(stateName(paused.snapshot), 'paused.returnPathLost');
  t.true(paused.snapshot.matches('paused'));
  t.deepEqual(paused.actions, []);
  const resumed = step(faultThreadMachine, paused.snapshot, RESUME);
  t.is(stateName(resumed.snapshot), 'running');
  t.deepEqual(resumed.actions, [{ type: 'forgetLastBlock' }]);
});

test('a request that cannot be sent pauses; RESUME sends it again', (t) => {
  const paused = step(faultThreadMachine, at([START]), { type: 'REQUEST_FAILED' });
  t.is(stateName(paused.snapshot), 'paused.requestFailed');
  const resumed = step(faultThreadMachine, paused.snapshot, RESUME);
  t.is(stateName(resumed.snapshot), 'running');
  t.deepEqual(resumed.actions, [{ type: 'retryRequest' }]);
});

test('a message that is not a page fault is logged and the thread keeps running', (t) => {
  const next = step(faultThreadMachine, at([START]), { type: 'NON_FAULT_MESSAGE' });
  t.is(stateName(next.snapshot), 'running');
  t.deepEqual(next.actions, [{ type: 'logNonFaultMessage' }]);
});

test('a fault outside every RAM block ends the thread with that address as its error', (t) => {
  const address = 0x7fff_1234_5000;
  const next = step(faultThreadMachine, at([START]), { type: 'FAULT_OUTSIDE_RAM', address });
  t.is(stateName(next.snapshot), 'exited');
  t.is(next.snapshot.status, 'done');
  t.deepEqual(next.snapshot.context.exitError, { code: 'FAULT_OUTSIDE_RAM', address });
  t.deepEqual(next.actions, [{ type: 'reportFaultOutsideRam', params: { address } }]);
});

test('QUIT from running or either pause: quitting (quit signalled, joined), then EXITED: exited without error', (t) => {
  for (const before of [[START], [START, { type: 'RETURN_PATH_LOST' }], [START, { type: 'REQUEST_FAILED' }]] as FaultThreadEvent[][]) {
    const quitting = step(faultThreadMachine, at(before), QUIT);
    t.is(stateName(quitting.snapshot), 'quitting');
    t.deepEqual(quitting.actions, [{ type: 'signalFaultThreadQuit' }, { type: 'joinFaultThread' }]);
    const exited = step(faultThreadMachine, quitting.snapshot, { type: 'EXITED' });
    t.is(stateName(exited.snapshot), 'exited');
    t.is(exited.snapshot.context.exitError, null);
  }
});

test('refused events name the event and the current state, and change nothing', (t) => {
  const refuse = (events: FaultThreadEvent[], event: FaultThreadEvent, message: string) =>
    assertRefused(t, faultThreadMachine, at(events), event, message);
  refuse([], QUIT, 'QUIT in wrong faultThread state (notStarted)');
  refuse([], { type: 'FAULT_OUTSIDE_RAM', address: 1 }, 'FAULT_OUTSIDE_RAM in wrong faultThread state (notStarted)');
  refuse([START], START, 'START in wrong faultThread state (running)');
  refuse([START], RESUME, 'RESUME in wrong faultThread state (running)');
  refuse([START], { type: 'EXITED' }, 'EXITED in wrong faultThread state (running)');
  refuse([START, { type: 'RETURN_PATH_LOST' }], { type: 'REQUEST_FAILED' }, 'REQUEST_FAILED in wrong faultThread state (paused.returnPathLost)');
  refuse([START, { type: 'REQUEST_FAILED' }], { type: 'NON_FAULT_MESSAGE' }, 'NON_FAULT_MESSAGE in wrong faultThread state (paused.requestFailed)');
  refuse([START, QUIT], RESUME, 'RESUME in wrong faultThread state (quitting)');
  refuse([START, QUIT, { type: 'EXITED' }], QUIT, 'QUIT in wrong faultThread state (exited)');
  refuse([START, { type: 'FAULT_OUTSIDE_RAM', address: 2 }], QUIT, 'QUIT in wrong faultThread state (exited)');
});
