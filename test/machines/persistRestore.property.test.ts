/**
 * persist / restore: the journal stores a machine's snapshot (JSON, msgpackr) and
 * replay continues from it; the continuation must be identical.
 */
import test from 'ava';
import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import type { AnyStateMachine, EventFromLogic, SnapshotFrom } from 'xstate';
import {
  faultThreadMachine,
  initial,
  migrationStatusMachine,
  persist,
  postcopyMachine,
  preemptThreadMachine,
  restore,
  stateName,
  step,
} from '../../machines/index.js';
import { MachineSnapshotError, WrongStateError } from '../../src/errors.js';
import { assertProperty, fcParams } from '../../src/testing/properties.js';
import { chooseEvent, guidedRuns, run } from './drive.js';
import {
  faultThreadModel,
  migrationStatusModel,
  postcopyModel,
  preemptThreadModel,
  type ReferenceModel,
} from '../../src/testing/referenceTables.js';

/** What one step did, as comparable text: the new state and effects, or the refusal. */
function outcome<M extends AnyStateMachine>(machine: M, snapshot: SnapshotFrom<M>, event: EventFromLogic<M>) {
  try {
    const next = step(machine, snapshot, event);
    return { snapshot: next.snapshot, trace: `${stateName(next.snapshot)} ${JSON.stringify(next.actions)}` };
  } catch (error) {
    if (!(error instanceof WrongStateError)) throw error;
    return { snapshot, trace: `refused: ${error.message}` };
  }
}

const roundTrips = {
  json: (data: unknown) => JSON.parse(JSON.stringify(data)) as unknown,
  msgpackr: (data: unknown) => unpack(pack(data)) as unknown,
};

interface Case {
  readonly title: string;
  readonly machine: AnyStateMachine;
  readonly start: () => SnapshotFrom<AnyStateMachine>;
  readonly model: ReferenceModel<EventFromLogic<AnyStateMachine>>;
}

const cases: Case[] = [
  { title: 'postcopy', machine: postcopyMachine, start: () => initial(postcopyMachine, { preempt: true }).snapshot, model: postcopyModel(true) },
  { title: 'fault thread', machine: faultThreadMachine, start: () => initial(faultThreadMachine).snapshot, model: faultThreadModel },
  { title: 'preempt thread', machine: preemptThreadMachine, start: () => initial(preemptThreadMachine).snapshot, model: preemptThreadModel },
  { title: 'migration status', machine: migrationStatusMachine, start: () => initial(migrationStatusMachine).snapshot, model: migrationStatusModel },
] as unknown as Case[];

for (const { title, machine, start, model } of cases) {
  for (const [encoding, roundTrip] of Object.entries(roundTrips)) {
    test(`${title}: a snapshot restored from ${encoding} at any point continues identically`, (t) => {
      t.notThrows(() =>
        assertProperty(
          fc.property(guidedRuns(model, 30), fc.nat(), (choices, cutSeed) => {
            const cut = cutSeed % (choices.length + 1);
            let straight = start();
            let restored = start();
            for (const [index, choice] of choices.entries()) {
              const event = chooseEvent(model, stateName(straight), choice);
              if (index === cut) {
                const stored = roundTrip(persist(machine, restored));
                restored = restore(machine, stored);
                if (JSON.stringify(persist(machine, restored)) !== JSON.stringify(stored)) {
                  throw new Error(`restore(persist) differs at ${index}`);
                }
              }
              const a = outcome(machine, straight, event);
              const b = outcome(machine, restored, event);
              if (a.trace !== b.trace) throw new Error(`step ${index}: '${a.trace}' vs '${b.trace}'`);
              straight = a.snapshot;
              restored = b.snapshot;
            }
            if (JSON.stringify(persist(machine, straight)) !== JSON.stringify(persist(machine, restored))) {
              throw new Error('final snapshots differ');
            }
          }),
          fcParams(),
        ),
      );
    });
  }
}

test('the persisted form is plain data: no functions, no undefined, equal to its JSON round trip', (t) => {
  const exited = run(faultThreadMachine, initial(faultThreadMachine).snapshot, [
    { type: 'START' },
    { type: 'FAULT_OUTSIDE_RAM', address: 0x1000 },
  ]);
  const persisted = persist(faultThreadMachine, exited);
  t.deepEqual(JSON.parse(JSON.stringify(persisted)), persisted);
  t.deepEqual(unpack(pack(persisted)), persisted);
  t.is(persisted.value, 'exited');
  t.is(persisted.status, 'done');
  t.deepEqual(persisted.context, { exitError: { code: 'FAULT_OUTSIDE_RAM', address: 0x1000 } });
  const back = restore(faultThreadMachine, roundTrips.json(persisted));
  t.is(stateName(back), 'exited');
  t.deepEqual(back.context, persisted.context);
});

test('postcopy keeps its preempt capability across a restore', (t) => {
  const advise = run(postcopyMachine, initial(postcopyMachine, { preempt: true }).snapshot, [{ type: 'ADVISE', supported: true }]);
  const back = restore(postcopyMachine, roundTrips.msgpackr(persist(postcopyMachine, advise)));
  t.true(back.context.preempt);
  t.true(step(postcopyMachine, back, { type: 'LISTEN' }).actions.some((a) => a.type === 'startPreemptThread'));
});

test('restore refuses what is not a snapshot of that machine, naming the machine and the reason', (t) => {
  const good = persist(preemptThreadMachine, initial(preemptThreadMachine).snapshot);
  const refuse = (data: unknown, reason: RegExp) => {
    const error = t.throws(() => restore(preemptThreadMachine, data), { instanceOf: MachineSnapshotError });
    t.is(error?.machine, 'preemptThread');
    t.regex(error?.message ?? '', /^cannot restore a preemptThread snapshot: /);
    t.regex(error?.message ?? '', reason);
  };
  refuse(null, /not an object/);
  refuse([good], /not an object/);
  refuse({ ...good, value: 42 }, /no state value/);
  refuse({ ...good, value: 'BOGUS' }, /BOGUS/);
  refuse({ ...good, value: { CREATED: 'sleeping' } }, /sleeping/);
  // A partial value would be silently completed with initial substates: refuse it.
  refuse({ ...good, value: 'CREATED' }, /not a complete state/);
  refuse({ ...good, status: 'done' }, /status 'done' does not match state NONE.idle/);
  refuse({ ...good, context: 'x' }, /context is not an object/);
  refuse({ ...good, children: { child: {} } }, /child actors/);
  // Another machine's snapshot.
  refuse(persist(postcopyMachine, initial(postcopyMachine).snapshot), /NONE/);
});
