/** The upstream bugs and races the machines must not reproduce (reference sections 1, 2, 9). */
import test from 'ava';
import fc from 'fast-check';
import {
  initial,
  migrationStatusMachine,
  postcopyMachine,
  postcopyStateValue,
  preemptThreadMachine,
  preemptThreadStatus,
  stateName,
  step,
} from '../../machines/index.js';
import type { MigrationStatusEvent, PreemptThreadEvent } from '../../machines/index.js';
import { WrongStateError } from '../../src/errors.js';
import { assertProperty, fcParams } from '../../src/testing/properties.js';
import { chooseEvent, guidedRuns, run } from './drive.js';
import { preemptThreadModel } from '../../src/testing/referenceTables.js';

const preemptAt = (events: PreemptThreadEvent[]) => run(preemptThreadMachine, initial(preemptThreadMachine).snapshot, events);
const migrationAt = (events: MigrationStatusEvent[]) =>
  run(migrationStatusMachine, initial(migrationStatusMachine).snapshot, events);

test('preempt thread: EOS with requested pages outstanding keeps it running until the count is 0', (t) => {
  let snapshot = preemptAt([{ type: 'START' }, { type: 'CHANNEL_CONNECTED' }]);
  snapshot = step(preemptThreadMachine, snapshot, { type: 'EOS', outstanding: 3 }).snapshot;
  t.is(stateName(snapshot), 'CREATED.draining');
  t.is(preemptThreadStatus(snapshot), 'CREATED');
  for (const outstanding of [2, 1]) {
    const next = step(preemptThreadMachine, snapshot, { type: 'OUTSTANDING_CHANGED', outstanding });
    t.is(stateName(next.snapshot), 'CREATED.draining');
    t.deepEqual(next.actions, []);
    snapshot = next.snapshot;
  }
  const last = step(preemptThreadMachine, snapshot, { type: 'OUTSTANDING_CHANGED', outstanding: 0 });
  t.is(preemptThreadStatus(last.snapshot), 'QUIT');
  t.deepEqual(last.actions, [{ type: 'signalPreemptQuit' }]);
});

test('preempt thread: QUIT from cleanup with pages outstanding waits too, and cleanup cannot skip the wait', (t) => {
  const draining = step(preemptThreadMachine, preemptAt([{ type: 'START' }, { type: 'CHANNEL_CONNECTED' }]), {
    type: 'QUIT',
    outstanding: 1,
  }).snapshot;
  t.is(stateName(draining), 'CREATED.draining');
  t.throws(() => step(preemptThreadMachine, draining, { type: 'CLEANUP' }), { instanceOf: WrongStateError });
  t.is(stateName(step(preemptThreadMachine, draining, { type: 'QUIT', outstanding: 1 }).snapshot), 'CREATED.draining');
  t.is(stateName(step(preemptThreadMachine, draining, { type: 'QUIT', outstanding: 0 }).snapshot), 'QUIT');
});

test('preempt thread: it leaves CREATED only on a zero count, an ABORT, or a load error once stopping', (t) => {
  t.notThrows(() =>
    assertProperty(
      fc.property(guidedRuns(preemptThreadModel), (choices) => {
        let snapshot = initial(preemptThreadMachine).snapshot;
        for (const choice of choices) {
          const event = chooseEvent(preemptThreadModel, stateName(snapshot), choice);
          let next;
          try {
            next = step(preemptThreadMachine, snapshot, event).snapshot;
          } catch (error) {
            if (error instanceof WrongStateError) continue;
            throw error;
          }
          const leftCreated = preemptThreadStatus(snapshot) === 'CREATED' && preemptThreadStatus(next) !== 'CREATED';
          const allowed =
            event.type === 'ABORT' ||
            ('outstanding' in event && event.outstanding === 0) ||
            (event.type === 'LOAD_ERROR' && stateName(snapshot) === 'CREATED.draining');
          if (leftCreated && !allowed) {
            throw new Error(`left ${stateName(snapshot)} on ${JSON.stringify(event)}`);
          }
          snapshot = next;
        }
      }),
      fcParams(),
    ),
  );
});

test('preempt thread: a preempt channel that connects before the thread exists is not waited for again', (t) => {
  const early = preemptAt([{ type: 'CHANNEL_CONNECTED' }]);
  t.is(stateName(early), 'NONE.channelReady');
  t.is(preemptThreadStatus(early), 'NONE');
  t.is(stateName(step(preemptThreadMachine, early, { type: 'START' }).snapshot), 'CREATED.loading');
  // And the usual order still waits for it.
  t.is(stateName(preemptAt([{ type: 'START' }])), 'CREATED.waitingForChannel');
});

test('migration: a break during postcopy-recover goes back to postcopy-paused, and recovery can be tried again', (t) => {
  const recovering = migrationAt([{ type: 'START' }, { type: 'POSTCOPY_START' }, { type: 'CHANNEL_BROKEN' }, { type: 'RECOVER' }]);
  t.is(stateName(recovering), 'postcopy-recover');
  for (const event of [{ type: 'CHANNEL_BROKEN' }, { type: 'STREAM_ERROR', error: 'ECONNRESET' }] as MigrationStatusEvent[]) {
    const back = step(migrationStatusMachine, recovering, event);
    t.is(stateName(back.snapshot), 'postcopy-paused');
    t.deepEqual(back.actions, [{ type: 'pauseIncoming' }]);
    const again = run(migrationStatusMachine, back.snapshot, [{ type: 'RECOVER' }, { type: 'RESUMED' }]);
    t.is(stateName(again), 'postcopy-active');
  }
});

test('migration: any stream error during postcopy pauses, not only EIO', (t) => {
  const active = migrationAt([{ type: 'START' }, { type: 'POSTCOPY_START' }]);
  for (const error of ['EIO', 'EPIPE', 'ECONNRESET', 'ETIMEDOUT', 'Illegal RAM offset', 'Non-same host page detected']) {
    const next = step(migrationStatusMachine, active, { type: 'STREAM_ERROR', error });
    t.is(stateName(next.snapshot), 'postcopy-paused', error);
    t.deepEqual(next.actions, [{ type: 'pauseIncoming' }]);
  }
  t.notThrows(() =>
    assertProperty(
      fc.property(fc.string(), (error) => {
        const next = step(migrationStatusMachine, active, { type: 'STREAM_ERROR', error });
        if (stateName(next.snapshot) !== 'postcopy-paused') throw new Error(`'${error}' -> ${stateName(next.snapshot)}`);
      }),
      fcParams(),
    ),
  );
});

test('postcopy: ADVISE without host support goes back to NONE and fails the migration with the reason', (t) => {
  const none = initial(postcopyMachine).snapshot;
  const next = step(postcopyMachine, none, { type: 'ADVISE', supported: false, reason: 'userfaultfd: ENOSYS' });
  t.is(stateName(next.snapshot), 'NONE');
  t.is(postcopyStateValue(next.snapshot), 0);
  t.deepEqual(next.actions, [{ type: 'failNoHostSupport', params: { reason: 'userfaultfd: ENOSYS' } }]);
  t.false(next.actions.some((a) => a.type === 'emptyAllBlocks'));
});

test('postcopy: a refused LISTEN leaves the state as it was (QEMU stores LISTENING before checking)', (t) => {
  const none = initial(postcopyMachine).snapshot;
  t.throws(() => step(postcopyMachine, none, { type: 'LISTEN' }), { instanceOf: WrongStateError });
  t.is(stateName(none), 'NONE');
  // The untouched snapshot still takes ADVISE, as it would if LISTEN had never come.
  t.is(stateName(step(postcopyMachine, none, { type: 'ADVISE', supported: true }).snapshot), 'ADVISE');
});
