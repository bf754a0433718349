/** Helpers for driving a machine through `step` in tests. */
import type { ExecutionContext } from 'ava';
import fc from 'fast-check';
import type { AnyStateMachine, EventFromLogic, SnapshotFrom } from 'xstate';
import { WrongStateError } from '../../src/errors.js';
import { persist, stateName, step } from '../../machines/index.js';
import type { ReferenceModel, Table } from '../../src/testing/referenceTables.js';

/** Steps every event in turn (each must be accepted) and returns the last snapshot. */
export function run<M extends AnyStateMachine>(
  machine: M,
  snapshot: SnapshotFrom<M>,
  events: readonly EventFromLogic<M>[],
): SnapshotFrom<M> {
  return events.reduce<SnapshotFrom<M>>((current, event) => step(machine, current, event).snapshot, snapshot);
}

/** The effect types of one step. */
export function effectTypes<M extends AnyStateMachine>(
  machine: M,
  snapshot: SnapshotFrom<M>,
  event: EventFromLogic<M>,
): string[] {
  return step(machine, snapshot, event).actions.map((a) => a.type);
}

/**
 * Asserts that the event is refused with the exact WrongStateError, and that the
 * snapshot the caller keeps is untouched.
 */
export function assertRefused<M extends AnyStateMachine>(
  t: ExecutionContext,
  machine: M,
  snapshot: SnapshotFrom<M>,
  event: EventFromLogic<M>,
  expectedMessage: string,
): void {
  const before = JSON.stringify(persist(machine, snapshot));
  const error = t.throws(() => step(machine, snapshot, event), { instanceOf: WrongStateError });
  t.is(error?.message, expectedMessage);
  t.is(error?.machine, machine.id);
  t.is(error?.command, event.type);
  t.is(error?.state, stateName(snapshot));
  t.is(JSON.stringify(persist(machine, snapshot)), before);
}

/** Shortest label path from the table's initial state to every state it can reach (BFS). */
export function pathsInTable(table: Table, initial: string): Map<string, string[]> {
  const paths = new Map<string, string[]>([[initial, []]]);
  const queue = [initial];
  for (let state = queue.shift(); state !== undefined; state = queue.shift()) {
    for (const [label, [next]] of Object.entries(table[state] ?? {})) {
      if (!paths.has(next)) {
        paths.set(next, [...paths.get(state)!, label]);
        queue.push(next);
      }
    }
  }
  return paths;
}

/**
 * Steps one event on both the machine and the table and asserts they agree: same next
 * state and effects when the table allows it, a WrongStateError that changes nothing
 * when it does not. Returns the snapshot and table state to continue from.
 */
export function stepBoth<M extends AnyStateMachine>(
  machine: M,
  model: ReferenceModel<EventFromLogic<M>>,
  table: Table,
  snapshot: SnapshotFrom<M>,
  modelState: string,
  event: EventFromLogic<M>,
): { snapshot: SnapshotFrom<M>; modelState: string } {
  const row = table[modelState]?.[model.label(event)];
  const before = JSON.stringify(persist(machine, snapshot));
  let outcome: ReturnType<typeof step<M>> | WrongStateError;
  try {
    outcome = step(machine, snapshot, event);
  } catch (error) {
    if (!(error instanceof WrongStateError)) throw error;
    outcome = error;
  }
  const where = `${machine.id} in ${modelState}, event ${JSON.stringify(event)}`;
  if (JSON.stringify(persist(machine, snapshot)) !== before) throw new Error(`${where}: step modified its input`);
  if (row === undefined) {
    if (!(outcome instanceof WrongStateError)) {
      throw new Error(`${where}: the table refuses it but the machine went to ${stateName(outcome.snapshot)}`);
    }
    const expected = `${event.type} in wrong ${machine.id} state (${modelState})`;
    if (outcome.message !== expected) throw new Error(`${where}: message '${outcome.message}', expected '${expected}'`);
    return { snapshot, modelState };
  }
  if (outcome instanceof WrongStateError) throw new Error(`${where}: the table allows it but the machine refused`);
  const [next, effects] = row;
  const got = stateName(outcome.snapshot);
  if (got !== next) throw new Error(`${where}: machine went to ${got}, table says ${next}`);
  const gotEffects = outcome.actions.map((a) => a.type).join(',');
  if (gotEffects !== effects.join(',')) throw new Error(`${where}: effects [${gotEffects}], table says [${effects.join(',')}]`);
  return { snapshot: outcome.snapshot, modelState: next };
}

/**
 * One step of a random run: either the random event as is, or (guided) an event the
 * reference table says the current state accepts, so that runs reach deep states
 * (e.g. a break during postcopy-recover) instead of mostly bouncing off refusals.
 */
export interface GuidedEvent<TEvent> {
  readonly guided: boolean;
  readonly pick: number;
  readonly event: TEvent;
}

/** Random runs of up to `maxLength` steps, half of them guided. */
export function guidedRuns<TEvent extends { type: string }>(
  model: ReferenceModel<TEvent>,
  maxLength = 40,
): fc.Arbitrary<GuidedEvent<TEvent>[]> {
  return fc.array(fc.record({ guided: fc.boolean(), pick: fc.nat(), event: model.events }), { maxLength, size: 'max' });
}

/** Pure: the event to send in `state` for this step (see GuidedEvent). */
export function chooseEvent<TEvent extends { type: string }>(
  model: ReferenceModel<TEvent>,
  state: string,
  choice: GuidedEvent<TEvent>,
): TEvent {
  const row = model.table[state] ?? {};
  const labels = Object.keys(row);
  if (!choice.guided || labels.length === 0) return choice.event;
  // Half the guided picks avoid final states, or runs mostly end at the first FAIL.
  const live = labels.filter((label) => Object.keys(model.table[row[label]![0]] ?? {}).length > 0);
  const pool = choice.pick % 2 === 0 && live.length > 0 ? live : labels;
  const label = pool[Math.floor(choice.pick / 2) % pool.length]!;
  // Keep the random payload when it already has the chosen label.
  return model.label(choice.event) === label ? choice.event : model.samples[label]!;
}
