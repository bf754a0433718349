import test from 'ava';
import {
  accepts,
  initial,
  migrationStatusMachine,
  postcopyMachine,
  preemptThreadMachine,
  stateName,
  step,
} from '../../machines/index.js';
import type { PostcopyEvent } from '../../machines/index.js';
import { WrongStateError } from '../../src/errors.js';
import { run } from './drive.js';

const postcopyIn = (events: PostcopyEvent[]) =>
  run(postcopyMachine, initial(postcopyMachine).snapshot, events);

test('a self-transition with effects is accepted and told apart from a refused event', (t) => {
  const discard = postcopyIn([{ type: 'ADVISE', supported: true }, { type: 'RAM_DISCARD' }]);
  t.true(accepts(postcopyMachine, discard, { type: 'RAM_DISCARD' }));
  const again = step(postcopyMachine, discard, { type: 'RAM_DISCARD' });
  t.is(stateName(again.snapshot), 'DISCARD');
  t.deepEqual(again.actions, [{ type: 'discardRanges' }]);
  t.false(accepts(postcopyMachine, discard, { type: 'RUN' }));
  t.throws(() => step(postcopyMachine, discard, { type: 'RUN' }), {
    instanceOf: WrongStateError,
    message: 'RUN in wrong postcopy state (DISCARD)',
  });
});

test('a self-transition without effects is accepted, though XState snapshot.can() calls it refused', (t) => {
  const paused = run(migrationStatusMachine, initial(migrationStatusMachine).snapshot, [
    { type: 'START' },
    { type: 'POSTCOPY_START' },
    { type: 'CHANNEL_BROKEN' },
  ]);
  const event = { type: 'CHANNEL_BROKEN' } as const;
  // This is why `accepts` asks for the enabled transitions instead of using can().
  t.false(paused.can(event));
  t.true(accepts(migrationStatusMachine, paused, event));
  const next = step(migrationStatusMachine, paused, event);
  t.is(stateName(next.snapshot), 'postcopy-paused');
  t.deepEqual(next.actions, []);
});

test('a guard that picks no branch means refused, one that picks a targetless branch means accepted', (t) => {
  const loading = run(preemptThreadMachine, initial(preemptThreadMachine).snapshot, [{ type: 'START' }, { type: 'CHANNEL_CONNECTED' }]);
  t.false(accepts(preemptThreadMachine, loading, { type: 'OUTSTANDING_CHANGED', outstanding: 5 }));
  const draining = step(preemptThreadMachine, loading, { type: 'EOS', outstanding: 5 }).snapshot;
  t.true(accepts(preemptThreadMachine, draining, { type: 'OUTSTANDING_CHANGED', outstanding: 5 }));
});

test('a final state accepts nothing', (t) => {
  const end = postcopyIn([{ type: 'ADVISE', supported: true }, { type: 'LISTEN' }, { type: 'EOS' }]);
  t.is(end.status, 'done');
  for (const type of ['RUN', 'EOS', 'LISTEN', 'RAM_DISCARD'] as const) t.false(accepts(postcopyMachine, end, { type }));
});

test('step leaves the snapshot it was given as it was', (t) => {
  const advise = postcopyIn([{ type: 'ADVISE', supported: true }]);
  const before = JSON.stringify(advise);
  const next = step(postcopyMachine, advise, { type: 'LISTEN' });
  t.not(next.snapshot, advise);
  t.is(stateName(advise), 'ADVISE');
  t.is(JSON.stringify(advise), before);
});

test('effects are plain JSON data: type and params only, params omitted when none', (t) => {
  const listen = step(postcopyMachine, postcopyIn([{ type: 'ADVISE', supported: true }]), { type: 'LISTEN' });
  const end = step(postcopyMachine, listen.snapshot, { type: 'FAIL', reason: 'x' });
  for (const effect of [...listen.actions, ...end.actions]) {
    t.deepEqual(JSON.parse(JSON.stringify(effect)), effect);
    t.true(Object.keys(effect).every((key) => key === 'type' || key === 'params'));
  }
  t.false('params' in listen.actions[0]!);
  t.deepEqual(end.actions[0], { type: 'cleanup', params: { reason: 'failure' } });
});

test('stateName: plain for top-level states, dotted for nested ones', (t) => {
  t.is(stateName({ value: 'LISTENING' }), 'LISTENING');
  t.is(stateName({ value: { CREATED: 'loading' } }), 'CREATED.loading');
  t.is(stateName({ value: { a: { b: 'c' } } }), 'a.b.c');
  t.is(stateName(initial(preemptThreadMachine).snapshot), 'NONE.idle');
  t.throws(() => stateName({ value: { a: 'x', b: 'y' } }), { instanceOf: TypeError });
});
