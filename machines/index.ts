/**
 * The lifecycle machines' public surface, listed name by name on purpose: anything
 * not here (e.g. the `effect` placeholder) is an implementation detail.
 */
export { postcopyMachine } from './postcopyMachine.js';
export type { PostcopyMachine, PostcopyEvent, PostcopyEffect, PostcopyContext, PostcopyInput, CleanupReason } from './postcopyMachine.js';

export { faultThreadMachine } from './faultThreadMachine.js';
export type { FaultThreadMachine, FaultThreadEvent, FaultThreadEffect, FaultThreadContext } from './faultThreadMachine.js';

export { preemptThreadMachine, PREEMPT_THREAD_STATUSES } from './preemptThreadMachine.js';
export type { PreemptThreadMachine, PreemptThreadEvent, PreemptThreadEffect, PreemptThreadStatus } from './preemptThreadMachine.js';

export { migrationStatusMachine, MIGRATION_STATUSES } from './migrationStatusMachine.js';
export type { MigrationStatusMachine, MigrationStatusEvent, MigrationStatusEffect, MigrationStatus } from './migrationStatusMachine.js';

export {
  initial,
  accepts,
  step,
  effectTypes,
  stateName,
  postcopyStateValue,
  isPostcopyRunning,
  preemptThreadStatus,
  persist,
  restore,
} from './step.js';
export type { Effect, EffectOf, StateNameOf, TopStateOf, Stepped, PersistedSnapshot } from './step.js';

export { PostcopyState, POSTCOPY_STATE_NAMES } from './postcopyState.js';
export type { PostcopyStateName, PostcopyStateValue } from './postcopyState.js';
