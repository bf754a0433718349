/**
 * The fault thread ("fault-default", reference section 2): notStarted -> running
 * <-> paused -> quitting -> exited.
 *
 * `paused` has two substates because the two ways in differ on the way out:
 *   paused.returnPathLost  the return path broke; on RESUME forget the last block named
 *                          (so the next request names its block again)
 *   paused.requestFailed   a page request could not be sent; on RESUME send it again
 * A fault outside every RAM block ends the thread at once: -> exited, with the
 * faulting address kept in the context (`exitError`).
 *
 * Events:
 *   START                            the postcopy machine's startFaultThread ran
 *   RETURN_PATH_LOST                 running -> paused.returnPathLost
 *   REQUEST_FAILED                   running -> paused.requestFailed
 *   RESUME                           recovery finished: paused.* -> running
 *   NON_FAULT_MESSAGE                a userfault message that is not a page fault: logged, keeps running
 *   FAULT_OUTSIDE_RAM { address }    running -> exited with an error
 *   QUIT                             cleanup: running or paused -> quitting
 *   EXITED                           the thread has returned and been joined: quitting -> exited
 * `exited` is final; cleanup must not QUIT a thread that already exited (check with
 * `accepts` from step.ts).
 *
 * Effects: forgetLastBlock, retryRequest, logNonFaultMessage,
 * reportFaultOutsideRam { address }, signalFaultThreadQuit (set the quit flag and
 * signal the quit event fd), joinFaultThread.
 */
import { assign, setup } from 'xstate';
import { effect, type EffectOf } from './effect.js';

export type FaultThreadEvent =
  | { type: 'START' }
  | { type: 'RETURN_PATH_LOST' }
  | { type: 'REQUEST_FAILED' }
  | { type: 'RESUME' }
  | { type: 'NON_FAULT_MESSAGE' }
  | { type: 'FAULT_OUTSIDE_RAM'; address: number }
  | { type: 'QUIT' }
  | { type: 'EXITED' };

export interface FaultThreadContext {
  /** Why the thread exited on its own, or null (not exited, or quit normally). */
  readonly exitError: { readonly code: 'FAULT_OUTSIDE_RAM'; readonly address: number } | null;
}

/** Pure: the QUIT transition, the same from running and from either pause. */
function quitTransition() {
  return { target: '#faultThread.quitting', actions: ['signalFaultThreadQuit', 'joinFaultThread'] } as const;
}

export const faultThreadMachine = setup({
  types: {
    context: {} as FaultThreadContext,
    events: {} as FaultThreadEvent,
  },
  actions: {
    forgetLastBlock: effect(),
    retryRequest: effect(),
    logNonFaultMessage: effect(),
    reportFaultOutsideRam: effect<{ address: number }>(),
    signalFaultThreadQuit: effect(),
    joinFaultThread: effect(),
  },
}).createMachine({
  id: 'faultThread',
  initial: 'notStarted',
  context: { exitError: null },
  states: {
    notStarted: {
      on: { START: 'running' },
    },
    running: {
      on: {
        RETURN_PATH_LOST: 'paused.returnPathLost',
        REQUEST_FAILED: 'paused.requestFailed',
        NON_FAULT_MESSAGE: { actions: ['logNonFaultMessage'] },
        FAULT_OUTSIDE_RAM: {
          target: 'exited',
          actions: [
            assign({
              exitError: ({ event }) => ({
                code: 'FAULT_OUTSIDE_RAM' as const,
                address: event.address,
              }),
            }),
            {
              type: 'reportFaultOutsideRam',
              params: ({ event }) => ({ address: event.address }),
            },
          ],
        },
        QUIT: quitTransition(),
      },
    },
    paused: {
      initial: 'returnPathLost',
      on: { QUIT: quitTransition() },
      states: {
        returnPathLost: {
          on: { RESUME: { target: '#faultThread.running', actions: ['forgetLastBlock'] } },
        },
        requestFailed: {
          on: { RESUME: { target: '#faultThread.running', actions: ['retryRequest'] } },
        },
      },
    },
    quitting: {
      on: { EXITED: 'exited' },
    },
    exited: { type: 'final' },
  },
});

export type FaultThreadMachine = typeof faultThreadMachine;

/** The effects this machine asks for, one member per action name (derived from `setup`). */
export type FaultThreadEffect = EffectOf<FaultThreadMachine>;
