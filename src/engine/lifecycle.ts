import type { AnyMachineSnapshot, AnyStateMachine, EventFromLogic, InputFrom, SnapshotFrom } from 'xstate';
import {
  faultThreadMachine,
  migrationStatusMachine,
  persist,
  postcopyMachine,
  postcopyStateValue,
  preemptThreadMachine,
  restore,
  stateName,
  step,
  initial,
  accepts,
  type EffectOf,
  type PersistedSnapshot,
  type StateNameOf,
  type TopStateOf,
} from '../../machines/index.js';
import { MachineId, type MachineIdValue } from './events.js';

/** Called for every state change: machine, old state, new state, event type, time. */
export type TransitionListener = (machine: MachineIdValue, from: string, to: string, event: string, t: number) => void;

/** The persisted snapshots of the four machines, in MachineId order (JSON-safe). */
export type LifecycleSnapshot = PersistedSnapshot[];

/** The four machines, indexed by MachineId. */
const MACHINES = [postcopyMachine, migrationStatusMachine, faultThreadMachine, preemptThreadMachine] as const;

/** The machine behind a MachineId. */
export type MachineOf<Id extends MachineIdValue> = (typeof MACHINES)[Id];
/** The events that machine takes, e.g. `{ type: 'FAIL'; reason: string }`. */
export type EventOf<Id extends MachineIdValue> = EventFromLogic<MachineOf<Id>>;
type EffectsById = { readonly [Id in MachineIdValue]: EffectOf<MachineOf<Id>> };
/** The effects that machine asks for (through a map, so that any machine's effects are a LifecycleEffect). */
export type EffectFrom<Id extends MachineIdValue> = EffectsById[Id];
/** That machine's states as dotted names, e.g. 'postcopy-paused' or 'CREATED.draining'. */
export type StateOf<Id extends MachineIdValue> = StateNameOf<MachineOf<Id>>;
/** That machine's top-level states, e.g. 'paused' for either of the fault thread's pauses. */
export type TopStateFrom<Id extends MachineIdValue> = TopStateOf<MachineOf<Id>>;

/** Every effect of every machine: what the engine's handler table must cover. */
export type LifecycleEffect = EffectFrom<MachineIdValue>;
/** The params each effect type carries (undefined for most). */
export type EffectParams = { readonly [E in LifecycleEffect as E['type']]: E['params'] };


/**
 * One machine's current snapshot, with its state names cached: the per-page and
 * per-fault paths compare them, and a string compare of a cached name costs nothing.
 */
class MachineCell<M extends AnyStateMachine> {
  snapshot: SnapshotFrom<M>;
  name!: StateNameOf<M>;
  top!: TopStateOf<M>;
  /** In a final state: it takes no more events. */
  done = false;

  constructor(
    readonly machine: M,
    input?: InputFrom<M>,
  ) {
    this.snapshot = initial(machine, input).snapshot;
    this.cacheNames();
  }

  accepts(event: EventFromLogic<M>): boolean {
    return accepts(this.machine, this.snapshot, event);
  }

  /** Throws WrongStateError when the event is refused; changes nothing. */
  check(event: EventFromLogic<M>): void {
    if (!this.accepts(event)) step(this.machine, this.snapshot, event);
  }

  /** Pure: the effects the transition would ask for; the snapshot stays as it is. */
  plan(event: EventFromLogic<M>): readonly EffectOf<M>[] {
    return step(this.machine, this.snapshot, event).actions;
  }

  /** Steps and keeps the next snapshot; returns the effects the transition asks for. */
  step(event: EventFromLogic<M>): readonly EffectOf<M>[] {
    const next = step(this.machine, this.snapshot, event);
    this.snapshot = next.snapshot;
    this.cacheNames();
    return next.actions;
  }

  persist(): PersistedSnapshot {
    return persist(this.machine, this.snapshot);
  }

  restore(persisted: unknown): void {
    this.snapshot = restore(this.machine, persisted);
    this.cacheNames();
  }

  private cacheNames(): void {
    // stateName spells every state of the machine, which is what StateNameOf derives.
    this.name = stateName(this.snapshot) as StateNameOf<M>;
    const dot = this.name.indexOf('.');
    this.top = (dot < 0 ? this.name : this.name.slice(0, dot)) as TopStateOf<M>;
    this.done = (this.snapshot as AnyMachineSnapshot).status === 'done';
  }
}

/**
 * The effects of machine `Id`, typed through EffectsById. They are the same type
 * (EffectFrom<Id> is EffectOf<MachineOf<Id>> for every Id), but TypeScript does not see
 * through the map for a generic Id; through the map, any machine's effects are a
 * LifecycleEffect, which is what the engine's handler table takes.
 */
function effectsOf<Id extends MachineIdValue>(effects: readonly EffectOf<MachineOf<Id>>[]): readonly EffectFrom<Id>[] {
  return effects as readonly EffectFrom<Id>[];
}

type Cells = { readonly [Id in MachineIdValue]: MachineCell<MachineOf<Id>> };

/**
 * The four lifecycle machines of one destination, stepped with XState's pure transition
 * (no actors): postcopy state, migration status, fault thread, preempt thread. Every
 * state change is reported to the listener (the engine journals it as FX_STATE); `send`
 * returns the effects the transition asks for, and the engine carries them out. Events,
 * effects and state names are typed per machine.
 */
export class Lifecycle {
  private readonly cells: Cells;
  /** The cells in MachineId order, for what treats them alike (snapshots, names by number). */
  private readonly list: readonly MachineCell<AnyStateMachine>[];
  /** The PostcopyState number, cached: the per-page path reads it. */
  private postcopyValue = 0;

  constructor(
    private readonly onTransition: TransitionListener,
    preempt: boolean,
  ) {
    this.cells = {
      [MachineId.POSTCOPY]: new MachineCell(postcopyMachine, { preempt }),
      [MachineId.MIGRATION]: new MachineCell(migrationStatusMachine),
      [MachineId.FAULT_THREAD]: new MachineCell(faultThreadMachine),
      [MachineId.PREEMPT_THREAD]: new MachineCell(preemptThreadMachine),
    };
    this.list = MACHINES.map((_, id) => this.cells[id as MachineIdValue]);
    this.postcopyValue = postcopyStateValue(this.cells[MachineId.POSTCOPY].snapshot);
  }

  /** Pure: throws WrongStateError when `machine` would refuse `event`; changes nothing. */
  check<Id extends MachineIdValue>(machine: Id, event: EventOf<Id>): void {
    this.cell(machine).check(event);
  }

  /** Pure: the effects `machine` would ask for if it took `event` now; throws WrongStateError when refused. Changes nothing. */
  plan<Id extends MachineIdValue>(machine: Id, event: EventOf<Id>): readonly EffectFrom<Id>[] {
    return effectsOf<Id>(this.cell(machine).plan(event));
  }

  /** Whether `machine` takes `event` now. Pure. */
  accepts<Id extends MachineIdValue>(machine: Id, event: EventOf<Id>): boolean {
    return this.cell(machine).accepts(event);
  }

  /**
   * Steps `machine` and returns the effects the transition asks for, in order, for the
   * caller to carry out; throws WrongStateError (changing nothing) when the state refuses
   * the event. A state change is reported before the effects are returned.
   */
  send<Id extends MachineIdValue>(machine: Id, event: EventOf<Id>, t: number): readonly EffectFrom<Id>[] {
    const cell = this.cell(machine);
    const from = cell.name;
    const effects = cell.step(event);
    if (machine === MachineId.POSTCOPY) this.postcopyValue = postcopyStateValue(this.cells[MachineId.POSTCOPY].snapshot);
    if (from !== cell.name) this.onTransition(machine, from, cell.name, event.type, t);
    return effectsOf<Id>(effects);
  }

  /** Whether `machine` is in exactly this state, e.g. `is(MachineId.MIGRATION, 'postcopy-paused')`. Cheap. */
  is<Id extends MachineIdValue>(machine: Id, state: StateOf<Id>): boolean {
    return this.cell(machine).name === state;
  }

  /** Whether `machine` is in this top-level state or one of its substates, e.g. the fault thread 'paused'. Cheap. */
  isIn<Id extends MachineIdValue>(machine: Id, state: TopStateFrom<Id>): boolean {
    return this.cell(machine).top === state;
  }

  /** Whether `machine` reached a final state (e.g. the migration completed or failed). Cheap. */
  isDone(machine: MachineIdValue): boolean {
    return this.cell(machine).done;
  }

  /** Current state name of a machine, e.g. 'LISTENING', 'postcopy-paused', 'CREATED.loading'. */
  stateName(machine: number): string {
    const cell = this.list[machine];
    if (cell === undefined) throw new RangeError(`no machine ${machine}`);
    return cell.name;
  }

  /** The numeric PostcopyState (0..5). */
  postcopyState(): number {
    return this.postcopyValue;
  }

  /** JSON-safe persisted snapshots (pure). */
  snapshot(): LifecycleSnapshot {
    return this.list.map((cell) => cell.persist());
  }

  /** Restores every machine from persisted snapshots (XState's resolveState). */
  restore(s: LifecycleSnapshot): void {
    this.list.forEach((cell, id) => cell.restore(s[id]));
    this.postcopyValue = postcopyStateValue(this.cells[MachineId.POSTCOPY].snapshot);
  }

  private cell<Id extends MachineIdValue>(machine: Id): Cells[Id] {
    return this.cells[machine];
  }
}
