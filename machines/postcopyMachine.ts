/**
 * The incoming PostcopyState (reference section 1): NONE -> ADVISE -> DISCARD ->
 * LISTENING -> RUNNING -> END. State names are exactly the keys of `PostcopyState`
 * in machines/postcopyState.ts, so a snapshot maps to QEMU's number (see
 * `postcopyStateValue` in step.ts).
 *
 * Pure data plus guards: the machine only names the effects each command asks for
 * (vocabulary below); the engine executes them.
 *
 * Events are the command names. ADVISE carries the host-support probe's verdict,
 * because the probe is I/O and runs before the machine is stepped:
 *   { type: 'ADVISE', supported: true }                   NONE -> ADVISE
 *   { type: 'ADVISE', supported: false, reason: '...' }   NONE -> NONE, migration fails
 * EOS is the loader reaching the end of the stream; FAIL is any failure once postcopy
 * has begun. A command in a state not listed is refused (WrongStateError from `step`):
 * unlike QEMU, which stores LISTENING before checking, nothing changes.
 *
 * Effects (action types), in the order a transition asks for them:
 *   emptyAllBlocks       every block's pages "not received"; postcopy_length := used_length
 *   failNoHostSupport    { reason }: the probe said no; the migration fails
 *   prepareFirstDiscard  disable huge pages on every block (first discard, or LISTEN from ADVISE)
 *   discardRanges        apply this RAM_DISCARD command's ranges
 *   openUserfault        open the userfault fd
 *   startFaultThread     start the fault thread and wait until it is ready
 *   registerBlocks       register every block with the userfault fd (MISSING mode)
 *   allocateTempPages    one temp host page per channel, and the zero page
 *   startPreemptThread   only when the machine was started with { preempt: true }
 *   startVcpus           the guest runs
 *   cleanup              { reason: 'end' | 'failure' }: reference section 6
 */
import { setup } from 'xstate';
import { effect, type EffectOf } from './effect.js';

export type PostcopyEvent =
  | { type: 'ADVISE'; supported: true }
  | { type: 'ADVISE'; supported: false; reason: string }
  | { type: 'RAM_DISCARD' }
  | { type: 'LISTEN' }
  | { type: 'RUN' }
  | { type: 'EOS' }
  | { type: 'FAIL'; reason: string };

export interface PostcopyContext {
  /** The postcopy-preempt capability: LISTEN then also starts the preempt thread. */
  readonly preempt: boolean;
}

export interface PostcopyInput {
  readonly preempt?: boolean;
}

export type CleanupReason = 'end' | 'failure';

/** LISTEN's effects, in the reference's order, without the preempt thread. */
const LISTEN_EFFECTS = ['openUserfault', 'startFaultThread', 'registerBlocks', 'allocateTempPages'] as const;

/** Pure: the transitions of LISTEN, with the first-discard preparation first when coming from ADVISE. */
function listenTransitions(fromAdvise: boolean) {
  const before = fromAdvise ? (['prepareFirstDiscard'] as const) : ([] as const);
  return [
    { guard: 'preemptEnabled', target: 'LISTENING', actions: [...before, ...LISTEN_EFFECTS, 'startPreemptThread'] },
    { target: 'LISTENING', actions: [...before, ...LISTEN_EFFECTS] },
  ] as const;
}

/** Pure: the transition of FAIL: to END, cleaning up whatever postcopy had set up. */
function failTransition() {
  return { target: 'END', actions: [{ type: 'cleanup', params: { reason: 'failure' } }] } as const;
}

export const postcopyMachine = setup({
  types: {
    context: {} as PostcopyContext,
    events: {} as PostcopyEvent,
    input: {} as PostcopyInput | undefined,
  },
  actions: {
    emptyAllBlocks: effect(),
    failNoHostSupport: effect<{ reason: string }>(),
    prepareFirstDiscard: effect(),
    discardRanges: effect(),
    openUserfault: effect(),
    startFaultThread: effect(),
    registerBlocks: effect(),
    allocateTempPages: effect(),
    startPreemptThread: effect(),
    startVcpus: effect(),
    cleanup: effect<{ reason: CleanupReason }>(),
  },
  guards: {
    hostSupported: ({ event }) => event.type === 'ADVISE' && event.supported,
    preemptEnabled: ({ context }) => context.preempt,
  },
}).createMachine({
  id: 'postcopy',
  initial: 'NONE',
  context: ({ input }) => ({ preempt: input?.preempt ?? false }),
  states: {
    NONE: {
      on: {
        ADVISE: [
          { guard: 'hostSupported', target: 'ADVISE', actions: ['emptyAllBlocks'] },
          {
            // The probe failed: QEMU stored ADVISE, then puts NONE back.
            target: 'NONE',
            actions: [
              {
                type: 'failNoHostSupport',
                // Only unsupported ADVISEs get here; the test on `supported` is for the type checker.
                params: ({ event }) => ({ reason: event.supported ? 'unsupported' : event.reason }),
              },
            ],
          },
        ],
      },
    },
    ADVISE: {
      on: {
        RAM_DISCARD: { target: 'DISCARD', actions: ['prepareFirstDiscard', 'discardRanges'] },
        LISTEN: listenTransitions(true),
        FAIL: failTransition(),
      },
    },
    DISCARD: {
      on: {
        // Later discards: a self-transition that only applies the ranges.
        RAM_DISCARD: { actions: ['discardRanges'] },
        LISTEN: listenTransitions(false),
        FAIL: failTransition(),
      },
    },
    LISTENING: {
      on: {
        RUN: { target: 'RUNNING', actions: ['startVcpus'] },
        EOS: { target: 'END', actions: [{ type: 'cleanup', params: { reason: 'end' } }] },
        FAIL: failTransition(),
      },
    },
    RUNNING: {
      on: {
        EOS: { target: 'END', actions: [{ type: 'cleanup', params: { reason: 'end' } }] },
        FAIL: failTransition(),
      },
    },
    END: { type: 'final' },
  },
});

export type PostcopyMachine = typeof postcopyMachine;

/** The effects this machine asks for, one member per action name (derived from `setup`). */
export type PostcopyEffect = EffectOf<PostcopyMachine>;
