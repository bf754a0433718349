/**
 * Stepping the lifecycle machines without actors, for the engine and for replay.
 * Everything here is pure: a step returns the next snapshot and the effects the
 * transition asks for, as plain data, and executes nothing. A refused event throws
 * `WrongStateError` and the caller keeps its old snapshot.
 *
 * Built on XState 5's `initialTransition` / `transition`, which return
 * `[nextSnapshot, actions]`.
 */
import {
  initialTransition,
  transition,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  type EventFromLogic,
  type InputFrom,
  type SnapshotFrom,
  type StateValue,
} from 'xstate';
import { MachineSnapshotError, WrongStateError } from '../src/errors.js';
import { PostcopyState, type PostcopyStateName, type PostcopyStateValue } from './postcopyState.js';
import type { EffectOf } from './effect.js';
import type { PostcopyMachine } from './postcopyMachine.js';
import type { PreemptThreadMachine, PreemptThreadStatus } from './preemptThreadMachine.js';

export type { Effect, EffectOf, StateNameOf, TopStateOf } from './effect.js';

/** The result of a step: the next snapshot and the machine's typed effects, in the order to execute them. */
export interface Stepped<TMachine extends AnyStateMachine> {
  readonly snapshot: SnapshotFrom<TMachine>;
  readonly actions: readonly EffectOf<TMachine>[];
}

/** The JSON-safe form of a snapshot that the journal stores (XState's persisted snapshot). */
export interface PersistedSnapshot {
  readonly status: string;
  readonly value: StateValue;
  readonly context: Readonly<Record<string, unknown>>;
  readonly [key: string]: unknown;
}

/** Pure: the machine's initial snapshot (and initial effects, none in ours) for this input. */
export function initial<TMachine extends AnyStateMachine>(
  machine: TMachine,
  input?: InputFrom<TMachine>,
): Stepped<TMachine> {
  const [snapshot, actions] = (initialTransition as (m: TMachine, i?: unknown) => [SnapshotFrom<TMachine>, unknown[]])(
    machine,
    input,
  );
  return { snapshot, actions: actions.map(toEffect<TMachine>) };
}

/**
 * Pure: whether the current state takes this event, guards included. A taken event
 * may still change nothing (a self-transition); XState's own `snapshot.can` would
 * call a self-transition without effects refused, so this asks for the enabled
 * transitions instead.
 */
export function accepts<TMachine extends AnyStateMachine>(
  machine: TMachine,
  snapshot: SnapshotFrom<TMachine>,
  event: EventFromLogic<TMachine>,
): boolean {
  if ((snapshot as AnyMachineSnapshot).status !== 'active') return false;
  return machine.getTransitionData(snapshot, event).length > 0;
}

/**
 * Pure: the next snapshot and the effects it asks for. Throws WrongStateError
 * (naming the machine, the event and the current state) when the state does not take
 * the event; the given snapshot is never modified.
 */
export function step<TMachine extends AnyStateMachine>(
  machine: TMachine,
  snapshot: SnapshotFrom<TMachine>,
  event: EventFromLogic<TMachine>,
): Stepped<TMachine> {
  if (!accepts(machine, snapshot, event)) {
    throw new WrongStateError(machine.id, event.type, stateName(snapshot));
  }
  const [next, actions] = transition(machine, snapshot, event);
  return { snapshot: next, actions: (actions as unknown[]).map(toEffect<TMachine>) };
}

/**
 * Pure: an XState executable action reduced to its name and params. XState hands
 * actions over untyped; the type is the machine's own effect union, since every action
 * a transition names is one of its `setup({ actions })` (XState refuses others).
 */
function toEffect<TMachine extends AnyStateMachine>(action: unknown): EffectOf<TMachine> {
  const { type, params } = action as { type: string; params?: Record<string, unknown> };
  return (params === undefined ? { type } : { type, params: { ...params } }) as EffectOf<TMachine>;
}

/** Pure: the names of every effect the machine can ask for, read off its `setup({ actions })`. */
export function effectTypes<TMachine extends AnyStateMachine>(machine: TMachine): EffectOf<TMachine>['type'][] {
  return Object.keys(machine.implementations.actions) as EffectOf<TMachine>['type'][];
}

/** Pure: the state as one dotted name: 'LISTENING', 'CREATED.loading'. (No machine here is parallel.) */
export function stateName(snapshot: { readonly value: StateValue }): string {
  return flattenStateValue(snapshot.value);
}

function flattenStateValue(value: StateValue): string {
  if (typeof value === 'string') return value;
  const entries = Object.entries(value);
  if (entries.length !== 1) {
    throw new TypeError(`expected one active state, got ${JSON.stringify(value)}`);
  }
  const [key, child] = entries[0]!;
  return child === undefined ? key : `${key}.${flattenStateValue(child)}`;
}

/** Pure: QEMU's number for the postcopy state, 0 (NONE) .. 5 (END). */
export function postcopyStateValue(snapshot: SnapshotFrom<PostcopyMachine>): PostcopyStateValue {
  return PostcopyState[stateName(snapshot) as PostcopyStateName];
}

/** Pure: "postcopy is running" (LISTENING <= state < END): every page insert must then be atomic. */
export function isPostcopyRunning(snapshot: SnapshotFrom<PostcopyMachine>): boolean {
  const value = postcopyStateValue(snapshot);
  return value >= PostcopyState.LISTENING && value < PostcopyState.END;
}

/** Pure: QEMU's status of the preempt thread, the top-level state: NONE, CREATED or QUIT. */
export function preemptThreadStatus(snapshot: SnapshotFrom<PreemptThreadMachine>): PreemptThreadStatus {
  return stateName(snapshot).split('.')[0] as PreemptThreadStatus;
}

/** Pure: the snapshot as plain JSON-safe data (no undefined fields), for the journal. */
export function persist<TMachine extends AnyStateMachine>(
  machine: TMachine,
  snapshot: SnapshotFrom<TMachine>,
): PersistedSnapshot {
  const persisted = machine.getPersistedSnapshot(snapshot) as unknown as Record<string, unknown>;
  const defined = Object.entries(persisted).filter(([, value]) => value !== undefined);
  return Object.fromEntries(defined) as unknown as PersistedSnapshot;
}

/**
 * Pure: the snapshot that `persist` stored, rebuilt against this machine. Throws
 * MachineSnapshotError when the data is not a snapshot of this machine: unknown or
 * incomplete state value, status that does not match the state, spawned children.
 */
export function restore<TMachine extends AnyStateMachine>(machine: TMachine, persisted: unknown): SnapshotFrom<TMachine> {
  const fail = (reason: string): never => {
    throw new MachineSnapshotError(machine.id, reason);
  };
  if (!isPlainObject(persisted)) return fail('not an object');
  const { value, context = {}, status, children = {} } = persisted;
  if (typeof value !== 'string' && !isPlainObject(value)) return fail('no state value');
  if (!isPlainObject(context)) return fail('context is not an object');
  if (!isPlainObject(children) || Object.keys(children).length > 0) return fail('it has child actors');
  let snapshot: AnyMachineSnapshot;
  try {
    snapshot = machine.resolveState({ value: value as StateValue, context });
  } catch (error) {
    return fail(`state ${JSON.stringify(value)}: ${(error as Error).message}`);
  }
  // resolveState completes a partial value with initial substates; a journal must not be "repaired".
  if (JSON.stringify(snapshot.value) !== JSON.stringify(value)) {
    return fail(`state ${JSON.stringify(value)} is not a complete state of this machine`);
  }
  if (snapshot.status !== status) return fail(`status '${String(status)}' does not match state ${stateName(snapshot)}`);
  return snapshot as SnapshotFrom<TMachine>;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
