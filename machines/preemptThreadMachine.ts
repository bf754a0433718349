/**
 * The preempt thread ("fault-fast", reference section 2), only with the preempt
 * capability. Top-level states are QEMU's status values NONE, CREATED, QUIT
 * (`preemptThreadStatus`); the substates say what the thread is doing:
 *
 *   NONE.idle                    no thread, no preempt channel yet
 *   NONE.channelReady            the preempt channel connected before the thread was
 *                                created (upstream race: it may even beat the main
 *                                channel); START then goes straight to loading
 *   CREATED.waitingForChannel    created at LISTEN, the channel is not there yet
 *   CREATED.loading              loading urgent pages from the channel
 *   CREATED.paused               a load error while it should still run: waits for recovery
 *   CREATED.draining             asked to stop (EOS or QUIT) while requested pages are
 *                                still outstanding: keeps loading until the count is 0
 *                                (upstream bug: it exited at once and lost those pages)
 *   QUIT                         the thread has been told to stop / has stopped
 *
 * Events (`outstanding` = the requested set's page count when the event happens):
 *   START                          the postcopy machine's startPreemptThread ran
 *   CHANNEL_CONNECTED              the preempt channel connected
 *   LOAD_ERROR                     loading failed; pauses (or, once stopping, ends the thread)
 *   RESUME                         recovery finished: paused -> loading
 *   EOS { outstanding }            end of the preempt stream
 *   QUIT { outstanding }           cleanup at END asks the thread to stop
 *   OUTSTANDING_CHANGED { outstanding }  the count changed while draining
 *   ABORT                          cleanup after a failure: the outstanding pages will
 *                                  never come, stop now
 *   CLEANUP                        QUIT -> NONE once the thread is told to stop
 * CLEANUP is refused while CREATED: send QUIT (or ABORT) first, so that the count is
 * always consulted before the thread can go.
 *
 * Effects: signalPreemptQuit (status := QUIT, so the thread stops at its next check;
 * harmless if it already stopped by itself), shutdownPreemptChannel, joinPreemptThread.
 */
import { setup } from 'xstate';
import { effect, type EffectOf } from './effect.js';

export type PreemptThreadEvent =
  | { type: 'START' }
  | { type: 'CHANNEL_CONNECTED' }
  | { type: 'LOAD_ERROR' }
  | { type: 'RESUME' }
  | { type: 'EOS'; outstanding: number }
  | { type: 'QUIT'; outstanding: number }
  | { type: 'OUTSTANDING_CHANGED'; outstanding: number }
  | { type: 'ABORT' }
  | { type: 'CLEANUP' };

/** QEMU's preempt thread status values. */
export const PREEMPT_THREAD_STATUSES = ['NONE', 'CREATED', 'QUIT'] as const;
export type PreemptThreadStatus = (typeof PREEMPT_THREAD_STATUSES)[number];

const TO_QUIT = { target: '#preemptThread.QUIT', actions: ['signalPreemptQuit'] } as const;

/** Pure: stop when no requested page is outstanding, else drain first. */
function stopWhenDrained() {
  return [{ guard: 'noneOutstanding', ...TO_QUIT }, { target: '#preemptThread.CREATED.draining' }] as const;
}

/** Pure: while draining, stop once the count is 0, else stay (accepted, no change). */
function stopOnceDrained() {
  return [{ guard: 'noneOutstanding', ...TO_QUIT }, {}] as const;
}

export const preemptThreadMachine = setup({
  types: {
    events: {} as PreemptThreadEvent,
  },
  actions: {
    signalPreemptQuit: effect(),
    shutdownPreemptChannel: effect(),
    joinPreemptThread: effect(),
  },
  guards: {
    noneOutstanding: ({ event }) => 'outstanding' in event && event.outstanding === 0,
  },
}).createMachine({
  id: 'preemptThread',
  initial: 'NONE',
  states: {
    NONE: {
      initial: 'idle',
      states: {
        idle: {
          on: {
            CHANNEL_CONNECTED: 'channelReady',
            START: '#preemptThread.CREATED.waitingForChannel',
          },
        },
        channelReady: {
          on: { START: '#preemptThread.CREATED.loading' },
        },
      },
    },
    CREATED: {
      initial: 'waitingForChannel',
      on: {
        QUIT: stopWhenDrained(),
        ABORT: TO_QUIT,
      },
      states: {
        waitingForChannel: {
          on: { CHANNEL_CONNECTED: 'loading' },
        },
        loading: {
          on: {
            LOAD_ERROR: 'paused',
            EOS: stopWhenDrained(),
          },
        },
        paused: {
          on: {
            RESUME: 'loading',
            // Recovery connects a new preempt channel before it resumes the thread.
            CHANNEL_CONNECTED: {},
          },
        },
        draining: {
          on: {
            QUIT: stopOnceDrained(),
            EOS: stopOnceDrained(),
            OUTSTANDING_CHANGED: stopOnceDrained(),
            // Stopping was asked for, so an error ends the thread instead of pausing it.
            LOAD_ERROR: TO_QUIT,
            // Draining from a pause or before the channel came: it still may come or resume.
            CHANNEL_CONNECTED: {},
            RESUME: {},
          },
        },
      },
    },
    QUIT: {
      on: {
        CLEANUP: { target: 'NONE', actions: ['shutdownPreemptChannel', 'joinPreemptThread'] },
      },
    },
  },
});

export type PreemptThreadMachine = typeof preemptThreadMachine;

/** The effects this machine asks for, one member per action name (derived from `setup`). */
export type PreemptThreadEffect = EffectOf<PreemptThreadMachine>;
