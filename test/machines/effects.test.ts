import test from 'ava';
import type { AnyStateMachine } from 'xstate';
import {
  effectTypes,
  faultThreadMachine,
  migrationStatusMachine,
  postcopyMachine,
  preemptThreadMachine,
  type FaultThreadEffect,
  type MigrationStatusEffect,
  type PostcopyEffect,
  type PreemptThreadEffect,
} from '../../machines/index.js';

const MACHINES: readonly AnyStateMachine[] = [postcopyMachine, migrationStatusMachine, faultThreadMachine, preemptThreadMachine];

/** Pure: the action types that the machine's transitions name, walking every state node. */
function actionsNamedByTransitions(machine: AnyStateMachine): Set<string> {
  const named = new Set<string>();
  const visit = (node: AnyStateMachine['root']): void => {
    for (const transitions of node.transitions.values()) {
      for (const transition of transitions) {
        for (const action of transition.actions) {
          // XState's built-ins (assign) are functions with a `type` like 'xstate.assign'.
          const type = typeof action === 'string' ? action : (action as { type?: unknown }).type;
          if (typeof type === 'string' && !type.startsWith('xstate.')) named.add(type);
        }
      }
    }
    for (const child of Object.values(node.states)) visit(child);
  };
  visit(machine.root);
  return named;
}

for (const machine of MACHINES) {
  test(`${machine.id}: the declared effects are exactly the actions its transitions name`, (t) => {
    t.deepEqual([...effectTypes(machine)].sort(), [...actionsNamedByTransitions(machine)].sort());
  });
}

test('effect types are unique across the machines (the engine keys one table by them)', (t) => {
  const all = MACHINES.flatMap((m) => effectTypes(m));
  t.is(new Set(all).size, all.length);
});

// Type level: the effect unions are discriminated on `type` and carry exactly the params
// their machine declared (a change to a machine's params fails to compile here).
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;
export type ParamsAreTyped = [
  Assert<Equal<Extract<PostcopyEffect, { type: 'cleanup' }>['params'], Readonly<{ reason: 'end' | 'failure' }>>>,
  Assert<Equal<Extract<PostcopyEffect, { type: 'failNoHostSupport' }>['params'], Readonly<{ reason: string }>>>,
  Assert<Equal<Extract<FaultThreadEffect, { type: 'reportFaultOutsideRam' }>['params'], Readonly<{ address: number }>>>,
  Assert<Equal<Extract<MigrationStatusEffect, { type: 'reportFailure' }>['params'], Readonly<{ reason: string }>>>,
  Assert<Equal<Extract<PreemptThreadEffect, { type: 'joinPreemptThread' }>['params'], undefined>>,
];

