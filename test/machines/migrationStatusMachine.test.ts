import test from 'ava';
import { initial, MIGRATION_STATUSES, migrationStatusMachine, stateName, step } from '../../machines/index.js';
import type { MigrationStatusEvent } from '../../machines/index.js';
import { assertRefused, run } from './drive.js';

const START: MigrationStatusEvent = { type: 'START' };
const POSTCOPY: MigrationStatusEvent = { type: 'POSTCOPY_START' };
const BROKEN: MigrationStatusEvent = { type: 'CHANNEL_BROKEN' };
const RECOVER: MigrationStatusEvent = { type: 'RECOVER' };
const RESUMED: MigrationStatusEvent = { type: 'RESUMED' };
const COMPLETE: MigrationStatusEvent = { type: 'COMPLETE' };
const at = (events: MigrationStatusEvent[]) => run(migrationStatusMachine, initial(migrationStatusMachine).snapshot, events);

test("the states are exactly QEMU's status strings", (t) => {
  t.deepEqual(Object.keys(migrationStatusMachine.root.states).sort(), [...MIGRATION_STATUSES].sort());
  t.deepEqual(
    [...MIGRATION_STATUSES].sort(),
    ['active', 'completed', 'failed', 'postcopy-active', 'postcopy-paused', 'postcopy-recover', 'setup'],
  );
  t.is(stateName(initial(migrationStatusMachine).snapshot), 'setup');
});

test('precopy only: setup -> active -> completed', (t) => {
  const done = at([START, COMPLETE]);
  t.is(stateName(done), 'completed');
  t.is(done.status, 'done');
});

test('postcopy: active -> postcopy-active -> completed', (t) => {
  t.is(stateName(at([START, POSTCOPY])), 'postcopy-active');
  t.is(stateName(at([START, POSTCOPY, COMPLETE])), 'completed');
});

test('recovery: paused -> recover (bitmaps sent) -> active (ack, pages re-sent, threads resume)', (t) => {
  const paused = step(migrationStatusMachine, at([START, POSTCOPY]), BROKEN);
  t.is(stateName(paused.snapshot), 'postcopy-paused');
  t.deepEqual(paused.actions, [{ type: 'pauseIncoming' }]);
  const recovering = step(migrationStatusMachine, paused.snapshot, RECOVER);
  t.is(stateName(recovering.snapshot), 'postcopy-recover');
  t.deepEqual(recovering.actions, [{ type: 'sendReceivedBitmaps' }]);
  const resumed = step(migrationStatusMachine, recovering.snapshot, RESUMED);
  t.is(stateName(resumed.snapshot), 'postcopy-active');
  t.deepEqual(resumed.actions.map((a) => a.type), ['sendResumeAck', 'resendRequestedPages', 'resumeThreads']);
});

test('a further break while paused is accepted and changes nothing', (t) => {
  const paused = at([START, POSTCOPY, BROKEN]);
  for (const event of [BROKEN, { type: 'STREAM_ERROR', error: 'EIO' }] as MigrationStatusEvent[]) {
    const next = step(migrationStatusMachine, paused, event);
    t.is(stateName(next.snapshot), 'postcopy-paused');
    t.deepEqual(next.actions, []);
  }
});

test('before postcopy a stream error or a broken channel fails the migration, with the reason', (t) => {
  const cases: [MigrationStatusEvent[], MigrationStatusEvent, string][] = [
    [[], { type: 'STREAM_ERROR', error: 'EIO' }, 'stream error: EIO'],
    [[START], { type: 'STREAM_ERROR', error: 'bad flags' }, 'stream error: bad flags'],
    [[START], BROKEN, 'channel broken'],
  ];
  for (const [before, event, reason] of cases) {
    const next = step(migrationStatusMachine, at(before), event);
    t.is(stateName(next.snapshot), 'failed');
    t.deepEqual(next.actions, [{ type: 'reportFailure', params: { reason } }]);
  }
});

test('FAIL ends the migration from every state that is not final', (t) => {
  const befores: MigrationStatusEvent[][] = [[], [START], [START, POSTCOPY], [START, POSTCOPY, BROKEN], [START, POSTCOPY, BROKEN, RECOVER]];
  for (const before of befores) {
    const next = step(migrationStatusMachine, at(before), { type: 'FAIL', reason: 'cancelled' });
    t.is(stateName(next.snapshot), 'failed');
    t.is(next.snapshot.status, 'done');
    t.deepEqual(next.actions, [{ type: 'reportFailure', params: { reason: 'cancelled' } }]);
  }
});

test('refused events name the event and the current state, and change nothing', (t) => {
  const refuse = (events: MigrationStatusEvent[], event: MigrationStatusEvent, message: string) =>
    assertRefused(t, migrationStatusMachine, at(events), event, message);
  refuse([], POSTCOPY, 'POSTCOPY_START in wrong migration state (setup)');
  refuse([], COMPLETE, 'COMPLETE in wrong migration state (setup)');
  refuse([START], RECOVER, 'RECOVER in wrong migration state (active)');
  refuse([START, POSTCOPY], RECOVER, 'RECOVER in wrong migration state (postcopy-active)');
  refuse([START, POSTCOPY], RESUMED, 'RESUMED in wrong migration state (postcopy-active)');
  refuse([START, POSTCOPY, BROKEN], RESUMED, 'RESUMED in wrong migration state (postcopy-paused)');
  refuse([START, POSTCOPY, BROKEN], COMPLETE, 'COMPLETE in wrong migration state (postcopy-paused)');
  refuse([START, POSTCOPY, BROKEN, RECOVER], COMPLETE, 'COMPLETE in wrong migration state (postcopy-recover)');
  refuse([START, POSTCOPY, BROKEN, RECOVER], RECOVER, 'RECOVER in wrong migration state (postcopy-recover)');
  refuse([START, COMPLETE], BROKEN, 'CHANNEL_BROKEN in wrong migration state (completed)');
  refuse([{ type: 'FAIL', reason: 'x' }], START, 'START in wrong migration state (failed)');
});
