/**
 * Every kind of journal record. Inputs are what the world told the engine; effects are
 * what the engine did in answer, each linked to the input that caused it. A record is
 * a fixed tuple of numbers plus an optional payload, so the journal can store records
 * as columns without an object per event:
 *
 *   kind, t (ns), cause (seq of the causing input; -1 for inputs), block (-1: none),
 *   offset, a, b, payload (bytes or null)
 *
 * The meaning of offset/a/b per kind is in FIELD_DOCS below and in docs/journal.md.
 * Adding a kind here without handling it in replay's and the codec's exhaustive
 * switches is a compile error (see `assertNever`).
 */
export const EventKind = {
  // ---- inputs
  /** A command on the main stream. a = command number (MigCommand), payload = command payload. */
  IN_COMMAND: 1,
  /** A target page. block, offset; a = channel; b = 0 data page, 1 zero page (zero byte in payload[0] only when non-zero). */
  IN_PAGE: 2,
  /** A userfault. offset = host address; a = thread id. */
  IN_FAULT: 3,
  /** A channel broke. a = channel; payload = reason (msgpack string). */
  IN_CHANNEL_BROKEN: 4,
  /** A channel (re)connected. a = channel. */
  IN_CHANNEL_CONNECTED: 5,
  /** End of the stream on a channel. a = channel. */
  IN_EOS: 6,
  /** A RAM block resized. block; offset = new used length. */
  IN_RESIZE: 7,
  /** A stream error other than a broken channel (bad data, EIO...). a = channel; payload = reason. */
  IN_STREAM_ERROR: 8,

  // ---- effects
  /** A machine changed state. a = machine (MachineId); payload = { from, to, event }. */
  FX_STATE: 32,
  /** Block registered with the userfault fd (MISSING mode). */
  FX_REGISTER: 33,
  /** Block unregistered. */
  FX_UNREGISTER: 34,
  /** Huge pages turned off (a = 0) or on (a = 1) for a block. */
  FX_HUGEPAGES: 35,
  /** Memory dropped: block, offset, a = length. */
  FX_DISCARD: 36,
  /** Plain (precopy) write of a target page: block, offset, a = length. */
  FX_WRITE: 37,
  /** Atomic copy of a host page: block, offset, a = length, b = outcome (PlaceOutcome). */
  FX_COPY: 38,
  /** Atomic zero placement of a host page: block, offset, a = length, b = outcome. */
  FX_ZERO: 39,
  /** Waiters woken: block, offset, a = length. */
  FX_WAKE: 40,
  /** Page request sent on the return path: block, offset (host page), a = length, b = flags (RequestFlag); payload = the REQ_PAGES(_ID) payload bytes. */
  FX_REQUEST: 41,
  /** Receive bitmap sent: block; payload = the receive-bitmap blob (section 8). */
  FX_RECV_BITMAP: 42,
  /** RESUME_ACK sent; payload = its 4 bytes. */
  FX_RESUME_ACK: 43,
  /** Blocktime reported at cleanup. a = qemu total ms, b = exact total ns; payload = per-vCPU figures. */
  FX_BLOCKTIME: 44,
  /** An input was refused. payload = { code, message }. Nothing else changed. */
  FX_ERROR: 45,
  /** Host support probed at ADVISE: a = 1 supported, 0 refused; payload = the SupportReport. */
  FX_PROBE: 47,
  /** The fault was for a vCPU: a = vCPU index (-1 not a vCPU), b = FaultDisposition; block, offset = host page. */
  FX_FAULT_SEEN: 46,

  // ---- observations (imported QEMU traces, and `postcopy tap` below; an engine never writes them)
  /** QEMU's mark_postcopy_blocktime_begin: offset = fault address, a = vCPU, b = already_received. */
  TR_BLOCKTIME_BEGIN: 64,
  /** QEMU's mark_postcopy_blocktime_end: offset = placed host address, a = affected vCPU count, b = QEMU's running total (ms). */
  TR_BLOCKTIME_END: 65,
  /** Any other trace line worth keeping: payload = { event, line, tid, text }. */
  TR_NOTE: 66,

  // ---- observations of `postcopy tap` (a relay between a QEMU source and destination; time = at the relay)
  /** A connection accepted and forwarded. a = connection id (accept order from 0); payload = { client, upstream } (host:port). */
  TAP_CONN_OPEN: 80,
  /** What a connection turned out to be from its first bytes. a = connection id; b = TapRole. */
  TAP_CONN_ROLE: 81,
  /** One direction of a connection ended (EOF). a = connection id; b = direction (0 source → destination, 1 destination → source); offset = bytes forwarded that way. */
  TAP_CONN_CLOSE: 82,
  /** A socket error ended a connection. a = connection id; b = the side that failed (0 source side, 1 destination side); offset = bytes forwarded source → destination, then; payload = message (msgpack string). */
  TAP_CONN_ERROR: 83,
  /** The tap stopped decoding a direction (bytes it cannot decode, or it fell behind); forwarding went on. a = connection id; b = direction; offset = the byte from which nothing was decoded; payload = reason (msgpack string). */
  TAP_UNDECODED: 84,
  /** PONG on the return path. a = connection id; b = the value (answers the PING of that value). */
  TAP_PONG: 85,
  /** SHUT on the return path: the destination is done. a = connection id; b = status (0 fine). */
  TAP_SHUT: 86,
} as const;
export type EventKindValue = (typeof EventKind)[keyof typeof EventKind];

export const EVENT_KIND_NAMES: Readonly<Record<EventKindValue, string>> = Object.freeze(
  Object.fromEntries(Object.entries(EventKind).map(([k, v]) => [v, k])) as Record<EventKindValue, string>,
);

/** The kinds that are inputs: what replay feeds to a fresh engine. */
export type InputKindValue =
  | typeof EventKind.IN_COMMAND
  | typeof EventKind.IN_PAGE
  | typeof EventKind.IN_FAULT
  | typeof EventKind.IN_CHANNEL_BROKEN
  | typeof EventKind.IN_CHANNEL_CONNECTED
  | typeof EventKind.IN_EOS
  | typeof EventKind.IN_RESIZE
  | typeof EventKind.IN_STREAM_ERROR;

/** Whether a kind is an input (fed to the engine) rather than an effect or an observation. Pure. */
export function isInput(kind: number): kind is InputKindValue {
  return kind < 32;
}

/** Machines whose transitions are journaled as FX_STATE (field a). */
export const MachineId = {
  POSTCOPY: 0,
  MIGRATION: 1,
  FAULT_THREAD: 2,
  PREEMPT_THREAD: 3,
} as const;
export type MachineIdValue = (typeof MachineId)[keyof typeof MachineId];
export const MACHINE_NAMES = ['postcopy', 'migration', 'faultThread', 'preemptThread'] as const;

/** What a connection through `postcopy tap` carries (TAP_CONN_ROLE field b). */
export const TapRole = {
  /** A first main connection ("QEVM" header): migration stream and return path. */
  MAIN: 0,
  /** A preempt channel (RAM records from its first byte). */
  PREEMPT: 1,
  /** The main connection of a resumed migration (no header: RECV_BITMAP commands first). */
  RESUMED_MAIN: 2,
  /** Not a QEMU migration connection (forwarded all the same). */
  OTHER: 3,
} as const;
export type TapRoleValue = (typeof TapRole)[keyof typeof TapRole];
export const TAP_ROLE_NAMES = ['main', 'preempt', 'resumed main', 'not QEMU'] as const;

/** FX_REQUEST flags (field b). */
export const RequestFlag = {
  /** REQ_PAGES_ID: the message names the block. */
  WITH_ID: 1,
  /** The host page was already requested: a re-send, the requested set is unchanged. */
  RESEND: 2,
  /** Re-sent after a recovery (QEMU's page_req_sync). */
  SYNC: 4,
  /** The return path refused the message: not sent (the fault thread pauses). */
  NOT_SENT: 8,
  /** Held while paused; goes out with the re-send at resume. */
  HELD: 16,
} as const;

/** What the engine decided about a fault (FX_FAULT_SEEN field b). */
export const FaultDisposition = {
  /** First request for the host page. */
  REQUESTED: 0,
  /** Already requested: sent again. */
  RESENT: 1,
  /** Already received: a zero page is placed, which only wakes the thread when the page is present (EEXIST) and fills a precopy zero page not written since. */
  ALREADY_RECEIVED: 2,
  /** In a permanently discarded range: a zero page is placed, the source is not asked. */
  DISCARDED_ZERO: 3,
  /** Held in the requested set while postcopy is paused. */
  HELD: 4,
} as const;

/** Exhaustiveness guard for switches over unions: a new case that is not handled fails to compile. */
export function assertNever(x: never, what = 'value'): never {
  throw new Error(`unhandled ${what}: ${JSON.stringify(x)}`);
}

/**
 * Where the engine hands its records. The journal store implements it with columnar
 * segments; benchmarks use a sink that only counts. Returns the record's sequence number.
 */
export interface RecordSink {
  append(
    kind: EventKindValue,
    t: number,
    cause: number,
    block: number,
    offset: number,
    a: number,
    b: number,
    payload: Uint8Array | null,
  ): number;
}

/** A sink that keeps nothing but the count (for benchmarks and throwaway engines). */
export class CountingSink implements RecordSink {
  count = 0;
  append(): number {
    return this.count++;
  }
}

/** One record as plain data (for tests, replay diffs and inspect; never on the hot path). */
export interface EventRecord {
  seq: number;
  kind: EventKindValue;
  t: number;
  cause: number;
  block: number;
  offset: number;
  a: number;
  b: number;
  payload: Uint8Array | null;
}

/** A sink that keeps every record as an object: for tests and small runs only. */
export class ArraySink implements RecordSink {
  readonly records: EventRecord[] = [];
  append(
    kind: EventKindValue,
    t: number,
    cause: number,
    block: number,
    offset: number,
    a: number,
    b: number,
    payload: Uint8Array | null,
  ): number {
    const seq = this.records.length;
    this.records.push({ seq, kind, t, cause, block, offset, a, b, payload });
    return seq;
  }
}
