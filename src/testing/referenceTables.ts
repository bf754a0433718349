/**
 * The lifecycle rules written out a second time, independently of the machines, as
 * plain tables: state -> event label -> [next state, effect types in order]. A label
 * is the event type, plus the guard-relevant part of its payload where the machine
 * branches on it (e.g. 'EOS(0)' vs 'EOS(n)'). A missing entry means "refused".
 * The model-based tests hold every machine to these tables.
 */
import fc from 'fast-check';
import type { FaultThreadEvent, MigrationStatusEvent, PostcopyEvent, PreemptThreadEvent } from '../../machines/index.js';

export type Row = readonly [next: string, effects: readonly string[]];
export type Table = Readonly<Record<string, Readonly<Record<string, Row>>>>;

export interface ReferenceModel<TEvent extends { type: string }> {
  readonly initial: string;
  readonly table: Table;
  /** The table's label for a concrete event. */
  readonly label: (event: TEvent) => string;
  /** One concrete event per label, for exhaustive checks. */
  readonly samples: Readonly<Record<string, TEvent>>;
  /** Random events covering every label. */
  readonly events: fc.Arbitrary<TEvent>;
}

// ---------------------------------------------------------------------------
// postcopy (reference section 1)

/** QEMU's numbers, written out again rather than imported. */
export const POSTCOPY_NUMBERS: Readonly<Record<string, number>> = {
  NONE: 0,
  ADVISE: 1,
  DISCARD: 2,
  LISTENING: 3,
  RUNNING: 4,
  END: 5,
};

/** The postcopy table; LISTEN's effects depend on the preempt capability. */
export function postcopyTable(preempt: boolean): Table {
  const listen = ['openUserfault', 'startFaultThread', 'registerBlocks', 'allocateTempPages'];
  if (preempt) listen.push('startPreemptThread');
  const fail: Row = ['END', ['cleanup']];
  return {
    NONE: {
      'ADVISE(supported)': ['ADVISE', ['emptyAllBlocks']],
      'ADVISE(unsupported)': ['NONE', ['failNoHostSupport']],
    },
    ADVISE: {
      RAM_DISCARD: ['DISCARD', ['prepareFirstDiscard', 'discardRanges']],
      LISTEN: ['LISTENING', ['prepareFirstDiscard', ...listen]],
      FAIL: fail,
    },
    DISCARD: {
      RAM_DISCARD: ['DISCARD', ['discardRanges']],
      LISTEN: ['LISTENING', listen],
      FAIL: fail,
    },
    LISTENING: {
      RUN: ['RUNNING', ['startVcpus']],
      EOS: ['END', ['cleanup']],
      FAIL: fail,
    },
    RUNNING: {
      EOS: ['END', ['cleanup']],
      FAIL: fail,
    },
    END: {},
  };
}

const postcopySamples: Record<string, PostcopyEvent> = {
  'ADVISE(supported)': { type: 'ADVISE', supported: true },
  'ADVISE(unsupported)': { type: 'ADVISE', supported: false, reason: 'no userfaultfd' },
  RAM_DISCARD: { type: 'RAM_DISCARD' },
  LISTEN: { type: 'LISTEN' },
  RUN: { type: 'RUN' },
  EOS: { type: 'EOS' },
  FAIL: { type: 'FAIL', reason: 'test failure' },
};

export function postcopyModel(preempt: boolean): ReferenceModel<PostcopyEvent> {
  return {
    initial: 'NONE',
    table: postcopyTable(preempt),
    label: (e) => (e.type === 'ADVISE' ? (e.supported ? 'ADVISE(supported)' : 'ADVISE(unsupported)') : e.type),
    samples: postcopySamples,
    events: fc.oneof(
      fc.constantFrom(...Object.values(postcopySamples).filter((e) => e.type !== 'FAIL' && e.type !== 'ADVISE')),
      fc.string().map((reason): PostcopyEvent => ({ type: 'ADVISE', supported: false, reason })),
      fc.constant<PostcopyEvent>({ type: 'ADVISE', supported: true }),
      fc.string().map((reason): PostcopyEvent => ({ type: 'FAIL', reason })),
    ),
  };
}

// ---------------------------------------------------------------------------
// fault thread (reference section 2)

const quitFault: Row = ['quitting', ['signalFaultThreadQuit', 'joinFaultThread']];

export const faultThreadTable: Table = {
  notStarted: { START: ['running', []] },
  running: {
    RETURN_PATH_LOST: ['paused.returnPathLost', []],
    REQUEST_FAILED: ['paused.requestFailed', []],
    NON_FAULT_MESSAGE: ['running', ['logNonFaultMessage']],
    FAULT_OUTSIDE_RAM: ['exited', ['reportFaultOutsideRam']],
    QUIT: quitFault,
  },
  'paused.returnPathLost': { RESUME: ['running', ['forgetLastBlock']], QUIT: quitFault },
  'paused.requestFailed': { RESUME: ['running', ['retryRequest']], QUIT: quitFault },
  quitting: { EXITED: ['exited', []] },
  exited: {},
};

const faultSamples: Record<string, FaultThreadEvent> = {
  START: { type: 'START' },
  RETURN_PATH_LOST: { type: 'RETURN_PATH_LOST' },
  REQUEST_FAILED: { type: 'REQUEST_FAILED' },
  RESUME: { type: 'RESUME' },
  NON_FAULT_MESSAGE: { type: 'NON_FAULT_MESSAGE' },
  FAULT_OUTSIDE_RAM: { type: 'FAULT_OUTSIDE_RAM', address: 0x7f00_dead_b000 },
  QUIT: { type: 'QUIT' },
  EXITED: { type: 'EXITED' },
};

export const faultThreadModel: ReferenceModel<FaultThreadEvent> = {
  initial: 'notStarted',
  table: faultThreadTable,
  label: (e) => e.type,
  samples: faultSamples,
  events: fc.oneof(
    fc.constantFrom(...Object.values(faultSamples).filter((e) => e.type !== 'FAULT_OUTSIDE_RAM')),
    fc.nat({ max: 2 ** 47 }).map((address): FaultThreadEvent => ({ type: 'FAULT_OUTSIDE_RAM', address })),
  ),
};

// ---------------------------------------------------------------------------
// preempt thread (reference section 2)

const toQuit: Row = ['QUIT', ['signalPreemptQuit']];
const toDraining: Row = ['CREATED.draining', []];

export const preemptThreadTable: Table = {
  'NONE.idle': {
    CHANNEL_CONNECTED: ['NONE.channelReady', []],
    START: ['CREATED.waitingForChannel', []],
  },
  'NONE.channelReady': { START: ['CREATED.loading', []] },
  'CREATED.waitingForChannel': {
    CHANNEL_CONNECTED: ['CREATED.loading', []],
    'QUIT(0)': toQuit,
    'QUIT(n)': toDraining,
    ABORT: toQuit,
  },
  'CREATED.loading': {
    LOAD_ERROR: ['CREATED.paused', []],
    'EOS(0)': toQuit,
    'EOS(n)': toDraining,
    'QUIT(0)': toQuit,
    'QUIT(n)': toDraining,
    ABORT: toQuit,
  },
  'CREATED.paused': {
    RESUME: ['CREATED.loading', []],
    CHANNEL_CONNECTED: ['CREATED.paused', []],
    'QUIT(0)': toQuit,
    'QUIT(n)': toDraining,
    ABORT: toQuit,
  },
  'CREATED.draining': {
    'QUIT(0)': toQuit,
    'QUIT(n)': toDraining,
    'EOS(0)': toQuit,
    'EOS(n)': toDraining,
    'OUTSTANDING_CHANGED(0)': toQuit,
    'OUTSTANDING_CHANGED(n)': toDraining,
    LOAD_ERROR: toQuit,
    CHANNEL_CONNECTED: toDraining,
    RESUME: toDraining,
    ABORT: toQuit,
  },
  QUIT: { CLEANUP: ['NONE.idle', ['shutdownPreemptChannel', 'joinPreemptThread']] },
};

const preemptSamples: Record<string, PreemptThreadEvent> = {
  START: { type: 'START' },
  CHANNEL_CONNECTED: { type: 'CHANNEL_CONNECTED' },
  LOAD_ERROR: { type: 'LOAD_ERROR' },
  RESUME: { type: 'RESUME' },
  'EOS(0)': { type: 'EOS', outstanding: 0 },
  'EOS(n)': { type: 'EOS', outstanding: 3 },
  'QUIT(0)': { type: 'QUIT', outstanding: 0 },
  'QUIT(n)': { type: 'QUIT', outstanding: 1 },
  'OUTSTANDING_CHANGED(0)': { type: 'OUTSTANDING_CHANGED', outstanding: 0 },
  'OUTSTANDING_CHANGED(n)': { type: 'OUTSTANDING_CHANGED', outstanding: 2 },
  ABORT: { type: 'ABORT' },
  CLEANUP: { type: 'CLEANUP' },
};

const outstandingCount = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 1 << 20 }));

export const preemptThreadModel: ReferenceModel<PreemptThreadEvent> = {
  initial: 'NONE.idle',
  table: preemptThreadTable,
  label: (e) => ('outstanding' in e ? `${e.type}(${e.outstanding === 0 ? '0' : 'n'})` : e.type),
  samples: preemptSamples,
  events: fc.oneof(
    fc.constantFrom<PreemptThreadEvent>(
      { type: 'START' },
      { type: 'CHANNEL_CONNECTED' },
      { type: 'LOAD_ERROR' },
      { type: 'RESUME' },
      { type: 'ABORT' },
      { type: 'CLEANUP' },
    ),
    fc
      .tuple(fc.constantFrom('EOS' as const, 'QUIT' as const, 'OUTSTANDING_CHANGED' as const), outstandingCount)
      .map(([type, outstanding]): PreemptThreadEvent => ({ type, outstanding })),
  ),
};

// ---------------------------------------------------------------------------
// migration status (reference section 9)

const failed: Row = ['failed', ['reportFailure']];
const paused: Row = ['postcopy-paused', ['pauseIncoming']];

export const migrationStatusTable: Table = {
  setup: { START: ['active', []], STREAM_ERROR: failed, CHANNEL_BROKEN: failed, FAIL: failed },
  active: {
    POSTCOPY_START: ['postcopy-active', []],
    COMPLETE: ['completed', []],
    STREAM_ERROR: failed,
    CHANNEL_BROKEN: failed,
    FAIL: failed,
  },
  'postcopy-active': { COMPLETE: ['completed', []], STREAM_ERROR: paused, CHANNEL_BROKEN: paused, FAIL: failed },
  'postcopy-paused': {
    RECOVER: ['postcopy-recover', ['sendReceivedBitmaps']],
    STREAM_ERROR: ['postcopy-paused', []],
    CHANNEL_BROKEN: ['postcopy-paused', []],
    FAIL: failed,
  },
  'postcopy-recover': {
    RESUMED: ['postcopy-active', ['sendResumeAck', 'resendRequestedPages', 'resumeThreads']],
    STREAM_ERROR: paused,
    CHANNEL_BROKEN: paused,
    FAIL: failed,
  },
  completed: {},
  failed: {},
};

const migrationSamples: Record<string, MigrationStatusEvent> = {
  START: { type: 'START' },
  POSTCOPY_START: { type: 'POSTCOPY_START' },
  COMPLETE: { type: 'COMPLETE' },
  STREAM_ERROR: { type: 'STREAM_ERROR', error: 'EPIPE' },
  CHANNEL_BROKEN: { type: 'CHANNEL_BROKEN' },
  RECOVER: { type: 'RECOVER' },
  RESUMED: { type: 'RESUMED' },
  FAIL: { type: 'FAIL', reason: 'cancelled' },
};

export const migrationStatusModel: ReferenceModel<MigrationStatusEvent> = {
  initial: 'setup',
  table: migrationStatusTable,
  label: (e) => e.type,
  samples: migrationSamples,
  events: fc.oneof(
    fc.constantFrom<MigrationStatusEvent>(
      { type: 'START' },
      { type: 'POSTCOPY_START' },
      { type: 'COMPLETE' },
      { type: 'CHANNEL_BROKEN' },
      { type: 'RECOVER' },
      { type: 'RESUMED' },
    ),
    fc
      .constantFrom('EIO', 'EPIPE', 'ECONNRESET', 'ETIMEDOUT', 'bad page flags')
      .map((error): MigrationStatusEvent => ({ type: 'STREAM_ERROR', error })),
    fc.string().map((reason): MigrationStatusEvent => ({ type: 'FAIL', reason })),
  ),
};
