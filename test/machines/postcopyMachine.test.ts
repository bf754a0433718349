import test from 'ava';
import { initial, isPostcopyRunning, postcopyMachine, postcopyStateValue, stateName, step } from '../../machines/index.js';
import type { PostcopyEvent } from '../../machines/index.js';
import { assertRefused, effectTypes, run } from './drive.js';

const ADVISE: PostcopyEvent = { type: 'ADVISE', supported: true };
const DISCARD: PostcopyEvent = { type: 'RAM_DISCARD' };
const LISTEN: PostcopyEvent = { type: 'LISTEN' };
const RUN: PostcopyEvent = { type: 'RUN' };
const EOS: PostcopyEvent = { type: 'EOS' };
const FAIL: PostcopyEvent = { type: 'FAIL', reason: 'load error' };
const LISTEN_EFFECTS = ['openUserfault', 'startFaultThread', 'registerBlocks', 'allocateTempPages'];

const start = (preempt = false) => initial(postcopyMachine, { preempt }).snapshot;
const at = (events: PostcopyEvent[], preempt = false) => run(postcopyMachine, start(preempt), events);

test('starts in NONE (0) with no effects, preempt off unless asked for', (t) => {
  const first = initial(postcopyMachine);
  t.is(stateName(first.snapshot), 'NONE');
  t.is(postcopyStateValue(first.snapshot), 0);
  t.deepEqual(first.actions, []);
  t.false(first.snapshot.context.preempt);
  t.true(start(true).context.preempt);
});

test('ADVISE with host support: NONE -> ADVISE, empties every block', (t) => {
  const next = step(postcopyMachine, start(), ADVISE);
  t.is(stateName(next.snapshot), 'ADVISE');
  t.is(postcopyStateValue(next.snapshot), 1);
  t.deepEqual(next.actions, [{ type: 'emptyAllBlocks' }]);
});

test('the first RAM_DISCARD (from ADVISE) disables huge pages first; later ones only discard', (t) => {
  const first = step(postcopyMachine, at([ADVISE]), DISCARD);
  t.is(stateName(first.snapshot), 'DISCARD');
  t.is(postcopyStateValue(first.snapshot), 2);
  t.deepEqual(first.actions, [{ type: 'prepareFirstDiscard' }, { type: 'discardRanges' }]);
  const second = step(postcopyMachine, first.snapshot, DISCARD);
  t.is(stateName(second.snapshot), 'DISCARD');
  t.deepEqual(second.actions, [{ type: 'discardRanges' }]);
});

test('LISTEN from ADVISE does the first-discard preparation, then opens, starts, registers, allocates', (t) => {
  const next = step(postcopyMachine, at([ADVISE]), LISTEN);
  t.is(stateName(next.snapshot), 'LISTENING');
  t.is(postcopyStateValue(next.snapshot), 3);
  t.deepEqual(next.actions.map((a) => a.type), ['prepareFirstDiscard', ...LISTEN_EFFECTS]);
});

test('LISTEN from DISCARD skips the preparation already done by the first discard', (t) => {
  t.deepEqual(effectTypes(postcopyMachine, at([ADVISE, DISCARD]), LISTEN), LISTEN_EFFECTS);
});

test('LISTEN starts the preempt thread last, only with the preempt capability', (t) => {
  t.deepEqual(effectTypes(postcopyMachine, at([ADVISE, DISCARD], true), LISTEN), [...LISTEN_EFFECTS, 'startPreemptThread']);
  t.deepEqual(effectTypes(postcopyMachine, at([ADVISE], true), LISTEN), [
    'prepareFirstDiscard',
    ...LISTEN_EFFECTS,
    'startPreemptThread',
  ]);
  t.false(effectTypes(postcopyMachine, at([ADVISE, DISCARD], false), LISTEN).includes('startPreemptThread'));
});

test('RUN: LISTENING -> RUNNING, the vCPUs start', (t) => {
  const next = step(postcopyMachine, at([ADVISE, LISTEN]), RUN);
  t.is(stateName(next.snapshot), 'RUNNING');
  t.is(postcopyStateValue(next.snapshot), 4);
  t.deepEqual(next.actions, [{ type: 'startVcpus' }]);
});

test('the end of the stream, from LISTENING or RUNNING: -> END with cleanup', (t) => {
  for (const before of [[ADVISE, LISTEN], [ADVISE, LISTEN, RUN]]) {
    const next = step(postcopyMachine, at(before), EOS);
    t.is(stateName(next.snapshot), 'END');
    t.is(postcopyStateValue(next.snapshot), 5);
    t.is(next.snapshot.status, 'done');
    t.deepEqual(next.actions, [{ type: 'cleanup', params: { reason: 'end' } }]);
  }
});

test('FAIL once postcopy began: -> END with a failure cleanup', (t) => {
  for (const before of [[ADVISE], [ADVISE, DISCARD], [ADVISE, LISTEN], [ADVISE, LISTEN, RUN]]) {
    const next = step(postcopyMachine, at(before), FAIL);
    t.is(stateName(next.snapshot), 'END');
    t.deepEqual(next.actions, [{ type: 'cleanup', params: { reason: 'failure' } }]);
  }
});

test('"postcopy is running" exactly from LISTENING up to, not including, END', (t) => {
  const running = [[], [ADVISE], [ADVISE, DISCARD], [ADVISE, LISTEN], [ADVISE, LISTEN, RUN], [ADVISE, LISTEN, EOS]].map(
    (events) => isPostcopyRunning(at(events)),
  );
  t.deepEqual(running, [false, false, false, true, true, false]);
});

test('refused commands name the command and the current state, and change nothing', (t) => {
  const refuse = (events: PostcopyEvent[], event: PostcopyEvent, message: string) =>
    assertRefused(t, postcopyMachine, at(events), event, message);
  refuse([ADVISE, LISTEN, RUN], LISTEN, 'LISTEN in wrong postcopy state (RUNNING)');
  refuse([], LISTEN, 'LISTEN in wrong postcopy state (NONE)');
  refuse([ADVISE], ADVISE, 'ADVISE in wrong postcopy state (ADVISE)');
  refuse([ADVISE, DISCARD], { type: 'ADVISE', supported: false, reason: 'x' }, 'ADVISE in wrong postcopy state (DISCARD)');
  refuse([], DISCARD, 'RAM_DISCARD in wrong postcopy state (NONE)');
  refuse([ADVISE, LISTEN], DISCARD, 'RAM_DISCARD in wrong postcopy state (LISTENING)');
  refuse([ADVISE, DISCARD], RUN, 'RUN in wrong postcopy state (DISCARD)');
  refuse([ADVISE, LISTEN, RUN], RUN, 'RUN in wrong postcopy state (RUNNING)');
  refuse([ADVISE], EOS, 'EOS in wrong postcopy state (ADVISE)');
  refuse([], FAIL, 'FAIL in wrong postcopy state (NONE)');
  for (const event of [ADVISE, DISCARD, LISTEN, RUN, EOS, FAIL]) {
    refuse([ADVISE, LISTEN, EOS], event, `${event.type} in wrong postcopy state (END)`);
  }
});
