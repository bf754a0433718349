/**
 * The destination's migration status (reference section 9), state names exactly as
 * QEMU's `query-migrate` strings: setup, active, postcopy-active, postcopy-paused,
 * postcopy-recover, completed, failed.
 *
 * Two upstream bugs are fixed here on purpose:
 * - a break during postcopy-recover goes back to postcopy-paused (QEMU once stayed
 *   stuck in postcopy-recover);
 * - any stream error during postcopy pauses (QEMU once paused only on EIO and failed,
 *   losing the guest, on anything else). Only an explicit FAIL ends postcopy.
 * Before postcopy a stream error or a broken channel fails the migration: the source
 * still has the whole guest.
 *
 * Events:
 *   START                        setup -> active (the incoming stream is being loaded)
 *   POSTCOPY_START               active -> postcopy-active (LISTEN)
 *   COMPLETE                     active or postcopy-active -> completed
 *   STREAM_ERROR { error }       any error reading the stream (EIO, EPIPE, a decode error, ...)
 *   CHANNEL_BROKEN               a channel closed or hung up
 *   RECOVER                      a new channel is connected: postcopy-paused -> postcopy-recover
 *   RESUMED                      the source sent RESUME: postcopy-recover -> postcopy-active
 *   FAIL { reason }              give up, from any state that is not final
 * In postcopy-paused a further break (e.g. the second channel) is accepted and changes
 * nothing.
 *
 * Effects: pauseIncoming (drop the broken channels, keep the requested set, wait for
 * recovery), sendReceivedBitmaps (one per block), sendResumeAck, resendRequestedPages,
 * resumeThreads, reportFailure { reason }.
 */
import { setup } from 'xstate';
import { effect, type EffectOf } from './effect.js';

export type MigrationStatusEvent =
  | { type: 'START' }
  | { type: 'POSTCOPY_START' }
  | { type: 'COMPLETE' }
  | { type: 'STREAM_ERROR'; error: string }
  | { type: 'CHANNEL_BROKEN' }
  | { type: 'RECOVER' }
  | { type: 'RESUMED' }
  | { type: 'FAIL'; reason: string };

/** Every status this machine can be in, as QEMU spells it. */
export const MIGRATION_STATUSES = [
  'setup',
  'active',
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover',
  'completed',
  'failed',
] as const;
export type MigrationStatus = (typeof MIGRATION_STATUSES)[number];

const PAUSE = { target: '#migration.postcopy-paused', actions: ['pauseIncoming'] } as const;

/** Pure: FAIL's transition: to failed, reporting the reason. */
function failWith() {
  return {
    target: '#migration.failed',
    actions: [{ type: 'reportFailure', params: ({ event }: { event: MigrationStatusEvent }) => ({ reason: failureReason(event) }) }],
  } as const;
}

/** Pure: the human-readable reason a failing event carries. */
function failureReason(event: MigrationStatusEvent): string {
  switch (event.type) {
    case 'FAIL':
      return event.reason;
    case 'STREAM_ERROR':
      return `stream error: ${event.error}`;
    case 'CHANNEL_BROKEN':
      return 'channel broken';
    default:
      return event.type;
  }
}

export const migrationStatusMachine = setup({
  types: {
    events: {} as MigrationStatusEvent,
  },
  actions: {
    pauseIncoming: effect(),
    sendReceivedBitmaps: effect(),
    sendResumeAck: effect(),
    resendRequestedPages: effect(),
    resumeThreads: effect(),
    reportFailure: effect<{ reason: string }>(),
  },
}).createMachine({
  id: 'migration',
  initial: 'setup',
  states: {
    setup: {
      on: { START: 'active', STREAM_ERROR: failWith(), CHANNEL_BROKEN: failWith(), FAIL: failWith() },
    },
    active: {
      on: {
        POSTCOPY_START: 'postcopy-active',
        COMPLETE: 'completed',
        STREAM_ERROR: failWith(),
        CHANNEL_BROKEN: failWith(),
        FAIL: failWith(),
      },
    },
    'postcopy-active': {
      on: { COMPLETE: 'completed', STREAM_ERROR: PAUSE, CHANNEL_BROKEN: PAUSE, FAIL: failWith() },
    },
    'postcopy-paused': {
      on: {
        RECOVER: { target: 'postcopy-recover', actions: ['sendReceivedBitmaps'] },
        STREAM_ERROR: {},
        CHANNEL_BROKEN: {},
        FAIL: failWith(),
      },
    },
    'postcopy-recover': {
      on: {
        RESUMED: { target: 'postcopy-active', actions: ['sendResumeAck', 'resendRequestedPages', 'resumeThreads'] },
        STREAM_ERROR: PAUSE,
        CHANNEL_BROKEN: PAUSE,
        FAIL: failWith(),
      },
    },
    completed: { type: 'final' },
    failed: { type: 'final' },
  },
});

export type MigrationStatusMachine = typeof migrationStatusMachine;

/** The effects this machine asks for, one member per action name (derived from `setup`). */
export type MigrationStatusEffect = EffectOf<MigrationStatusMachine>;
