/**
 * Model-based tests: every machine against its reference table
 * (referenceTables.ts), exhaustively for every (reachable state, event label) pair,
 * and on random event sequences with fast-check.
 */
import test from 'ava';
import fc from 'fast-check';
import type { AnyStateMachine, EventFromLogic, SnapshotFrom } from 'xstate';
import {
  faultThreadMachine,
  initial,
  migrationStatusMachine,
  postcopyMachine,
  postcopyStateValue,
  preemptThreadMachine,
  stateName,
} from '../../machines/index.js';
import { assertProperty, fcParams } from '../../src/testing/properties.js';
import { chooseEvent, guidedRuns, pathsInTable, stepBoth } from './drive.js';
import {
  faultThreadModel,
  migrationStatusModel,
  POSTCOPY_NUMBERS,
  postcopyModel,
  preemptThreadModel,
  type ReferenceModel,
} from '../../src/testing/referenceTables.js';

interface Case<M extends AnyStateMachine> {
  readonly title: string;
  readonly machine: M;
  readonly model: ReferenceModel<EventFromLogic<M>>;
  readonly start: () => SnapshotFrom<M>;
}

function makeCase<M extends AnyStateMachine>(c: Case<M>): Case<AnyStateMachine> {
  return c as unknown as Case<AnyStateMachine>;
}

const cases: Case<AnyStateMachine>[] = [
  makeCase({
    title: 'postcopy',
    machine: postcopyMachine,
    model: postcopyModel(false),
    start: () => initial(postcopyMachine).snapshot,
  }),
  makeCase({
    title: 'postcopy with preempt',
    machine: postcopyMachine,
    model: postcopyModel(true),
    start: () => initial(postcopyMachine, { preempt: true }).snapshot,
  }),
  makeCase({
    title: 'fault thread',
    machine: faultThreadMachine,
    model: faultThreadModel,
    start: () => initial(faultThreadMachine).snapshot,
  }),
  makeCase({
    title: 'preempt thread',
    machine: preemptThreadMachine,
    model: preemptThreadModel,
    start: () => initial(preemptThreadMachine).snapshot,
  }),
  makeCase({
    title: 'migration status',
    machine: migrationStatusMachine,
    model: migrationStatusModel,
    start: () => initial(migrationStatusMachine).snapshot,
  }),
];

for (const { title, machine, model, start } of cases) {
  test(`${title}: the samples cover every label of the table, each under its own label`, (t) => {
    for (const [label, event] of Object.entries(model.samples)) t.is(model.label(event), label);
    const tableLabels = new Set(Object.values(model.table).flatMap((row) => Object.keys(row)));
    for (const label of tableLabels) t.true(label in model.samples, label);
  });

  test(`${title}: starts in the table's initial state and reaches every state of the table`, (t) => {
    t.is(stateName(start()), model.initial);
    t.deepEqual([...pathsInTable(model.table, model.initial).keys()].sort(), Object.keys(model.table).sort());
  });

  test(`${title}: every state answers every event exactly as the table says`, (t) => {
    const table = model.table;
    let checked = 0;
    for (const [state, path] of pathsInTable(table, model.initial)) {
      let reached = { snapshot: start(), modelState: model.initial };
      for (const label of path) {
        reached = stepBoth(machine, model, table, reached.snapshot, reached.modelState, model.samples[label]!);
      }
      t.is(stateName(reached.snapshot), state);
      for (const event of Object.values(model.samples)) {
        stepBoth(machine, model, table, reached.snapshot, state, event);
        checked += 1;
      }
    }
    t.is(checked, Object.keys(table).length * Object.keys(model.samples).length);
  });

  test(`${title}: random event sequences follow the table`, (t) => {
    // fc.assert throws (with seed and path) on the first sequence where machine and table disagree.
    t.notThrows(() =>
      assertProperty(
        fc.property(guidedRuns(model), (choices) => {
          let current = { snapshot: start(), modelState: model.initial };
          for (const choice of choices) {
            const event = chooseEvent(model, current.modelState, choice);
            current = stepBoth(machine, model, model.table, current.snapshot, current.modelState, event);
          }
        }),
        fcParams(),
      ),
    );
  });
}

test('postcopy: every state maps to the QEMU PostcopyState number', (t) => {
  const model = postcopyModel(false);
  for (const [state, path] of pathsInTable(model.table, model.initial)) {
    let reached = { snapshot: initial(postcopyMachine).snapshot, modelState: model.initial };
    for (const label of path) {
      reached = stepBoth(postcopyMachine, model, model.table, reached.snapshot, reached.modelState, model.samples[label]!);
    }
    t.true(state in POSTCOPY_NUMBERS, state);
    t.is(postcopyStateValue(reached.snapshot) as number, POSTCOPY_NUMBERS[state]!, state);
  }
});
