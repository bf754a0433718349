import type { AnyStateMachine } from 'xstate';
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
  type PersistedSnapshot,
} from '../../machines/index.js';
import { MachineId, type MachineIdValue } from './events.js';

/** Called for every state change: machine, old state, new state, event type, time. */
export type TransitionListener = (machine: MachineIdValue, from: string, to: string, event: string, t: number) => void;

/** The persisted snapshots of the four machines, in MachineId order (JSON-safe). */
export type LifecycleSnapshot = PersistedSnapshot[];

/** A lifecycle event: `type` plus whatever fields the machine's guards read. */
export interface LifecycleEvent {
  type: string;
  [field: string]: unknown;
}

const MACHINES: readonly AnyStateMachine[] = [postcopyMachine, migrationStatusMachine, faultThreadMachine, preemptThreadMachine];

/**
 * The four lifecycle machines of one destination, stepped with XState's pure transition
 * (no actors): postcopy state, migration status, fault thread, preempt thread. Every
 * state change is reported to the listener (the engine journals it as FX_STATE). The
 * engine carries out effects itself; the machines are the authority on what is allowed.
 */
export class Lifecycle {
  private readonly snaps: unknown[];
  /** State names and the PostcopyState number, cached: the per-page path reads them. */
  private readonly names: string[];
  private postcopyValue = 0;

  constructor(private readonly onTransition: TransitionListener, preempt: boolean) {
    this.snaps = MACHINES.map((m, id) => initial(m, id === MachineId.POSTCOPY ? { preempt } : undefined).snapshot);
    this.names = this.snaps.map((s) => stateName(s as never));
    this.postcopyValue = postcopyStateValue(this.snaps[MachineId.POSTCOPY] as never);
  }

  /** Pure: throws WrongStateError when `machine` would refuse `event`; changes nothing. */
  check(machine: MachineIdValue, event: LifecycleEvent): void {
    const m = MACHINES[machine]!;
    if (!accepts(m, this.snaps[machine] as never, event as never)) step(m, this.snaps[machine] as never, event as never);
  }

  /** Whether `machine` takes `event` now. Pure. */
  accepts(machine: MachineIdValue, event: LifecycleEvent): boolean {
    return accepts(MACHINES[machine]!, this.snaps[machine] as never, event as never);
  }

  /** Steps `machine`; throws WrongStateError (changing nothing) when the state refuses the event. */
  send(machine: MachineIdValue, event: LifecycleEvent, t: number): void {
    const m = MACHINES[machine]!;
    const before = this.snaps[machine] as never;
    const next = step(m, before, event as never).snapshot;
    this.snaps[machine] = next;
    const from = this.names[machine]!;
    const to = stateName(next as never);
    this.names[machine] = to;
    if (machine === MachineId.POSTCOPY) this.postcopyValue = postcopyStateValue(next as never);
    if (from !== to) this.onTransition(machine, from, to, event.type, t);
  }

  /** The migration status leaves 'setup' at the first command of the stream. */
  ensureStarted(t: number): void {
    if (this.stateName(MachineId.MIGRATION) === 'setup') this.send(MachineId.MIGRATION, { type: 'START' }, t);
  }

  /** Current state name of a machine, e.g. 'LISTENING', 'postcopy-paused', 'CREATED.loading'. */
  stateName(machine: number): string {
    return this.names[machine]!;
  }

  /** The numeric PostcopyState (0..5). */
  postcopyState(): number {
    return this.postcopyValue;
  }

  /** JSON-safe persisted snapshots (pure). */
  snapshot(): LifecycleSnapshot {
    return MACHINES.map((m, id) => persist(m, this.snaps[id] as never));
  }

  /** Restores every machine from persisted snapshots (XState's resolveState). */
  restore(s: LifecycleSnapshot): void {
    MACHINES.forEach((m, id) => {
      this.snaps[id] = restore(m, s[id]);
      this.names[id] = stateName(this.snaps[id] as never);
    });
    this.postcopyValue = postcopyStateValue(this.snaps[MachineId.POSTCOPY] as never);
  }
}
