/**
 * Every error the engine raises on purpose. Each names what was wrong and where
 * (state, block, offset, channel, journal sequence number), so a user can act on it
 * without reading the source. `code` is stable and machine-readable.
 */

/** Why a page was refused (PageError), as QEMU's own messages name it. */
export type PageErrorCode = 'BAD_CHANNEL' | 'BAD_RESIZE' | 'ILLEGAL_OFFSET' | 'NONZERO_ZERO_PAGE' | 'NON_SAME_HOST_PAGE' | 'OUT_OF_ORDER';

/** Every error code, one per error class (PageError has one per reason): a new code must be added here. */
export type ErrorCode =
  | 'RAM_BLOCK'
  | 'UNKNOWN_BLOCK'
  | 'BAD_RANGE'
  | 'BITMAP_BOUNDS'
  | 'DECODE'
  | 'ENCODE'
  | 'WRONG_STATE'
  | 'NO_HOST_SUPPORT'
  | 'RESIZE_DURING_POSTCOPY'
  | PageErrorCode
  | 'FAULT_OUTSIDE_RAM'
  | 'BACKEND'
  | 'JOURNAL'
  | 'NOT_A_TRACE'
  | 'NOT_A_REGULAR_FILE'
  | 'RECEIVE_REFUSED'
  | 'USAGE'
  | 'BAD_MACHINE_SNAPSHOT'
  | 'WIRE'
  // Raised as a plain PostcopyError by the engine: vCPU identities given after LISTEN, a command
  // the engine does not know, a block whose page size disagrees with the backend's.
  | 'VCPUS_LATE'
  | 'UNKNOWN_COMMAND'
  | 'PAGE_SIZE_MISMATCH'
  // The engine's configuration and its backend disagree (blocks, vCPU thread ids): refused at construction.
  | 'CONFIG_MISMATCH'
  // The project's own migrate transport: a frame that does not decode.
  | 'BAD_FRAME'
  // Driving a real QEMU (src/io/qemu): QMP refusals, lost QMP connections, launch failures,
  // a migration that did not reach the expected status.
  | 'QMP'
  | 'QMP_CONNECTION'
  | 'QEMU_LAUNCH'
  | 'MIGRATION_DRIVE'
  // Replay's verifying backend asked for guest memory, which a replay does not have.
  | 'REPLAY';

/** Base of every typed error: a stable `code` plus the message. */
export class PostcopyError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * The engine's configuration disagrees with its backend: a block the backend lays out
 * differently (or not at all), or vCPU thread ids the backend's vCPUs will not have.
 * Raised by the Destination constructor, before anything runs; `describeGuest` builds
 * both from one description so that they agree.
 */
export class ConfigMismatchError extends PostcopyError {
  constructor(readonly what: 'blocks' | 'vcpuTids', message: string) {
    super('CONFIG_MISMATCH', message);
  }
}

// ---------------------------------------------------------------------------
// Data plane: RAM blocks, bitmaps, discard

/** A RAM block whose length or page size is unusable. */
export class RamBlockError extends PostcopyError {
  constructor(readonly block: string, message: string) {
    super('RAM_BLOCK', message);
  }
}

/** A name that matches no RAM block. */
export class UnknownBlockError extends PostcopyError {
  constructor(readonly block: string, readonly context: string) {
    super('UNKNOWN_BLOCK', `${context}: unknown RAM block '${block}'`);
  }
}

/** A byte range that is out of a block's bounds or not aligned as required. */
export class BadRangeError extends PostcopyError {
  constructor(
    readonly block: string,
    readonly start: number,
    readonly length: number,
    message: string,
  ) {
    super('BAD_RANGE', message);
  }
}

/** A bit index or range outside a bitmap. */
export class BitmapBoundsError extends PostcopyError {
  constructor(readonly index: number, readonly size: number) {
    super('BITMAP_BOUNDS', `bitmap index ${index} is outside the bitmap of ${size} bits`);
  }
}

// ---------------------------------------------------------------------------
// Wire codecs (reference section 8)

/** A wire payload that does not decode: truncated, wrong version, bad size or end mark. */
export class DecodeError extends PostcopyError {
  constructor(
    /** Which format was being decoded, e.g. 'RAM_DISCARD', 'RECV_BITMAP blob'. */
    readonly format: string,
    /** Byte offset in the payload where decoding failed. */
    readonly at: number,
    readonly reason: string,
  ) {
    super('DECODE', `${format}: ${reason} (at byte ${at})`);
  }
}

/** A value that cannot be encoded (name too long, length out of range). */
export class EncodeError extends PostcopyError {
  constructor(readonly format: string, readonly reason: string) {
    super('ENCODE', `${format}: ${reason}`);
  }
}

// ---------------------------------------------------------------------------
// Lifecycle (reference sections 1, 2, 9)

/** A command received in a state that does not accept it. Nothing was changed. */
export class WrongStateError extends PostcopyError {
  constructor(
    /** The machine that refused, e.g. 'postcopy', 'migration', 'faultThread'. */
    readonly machine: string,
    readonly command: string,
    readonly state: string,
  ) {
    super('WRONG_STATE', `${command} in wrong ${machine} state (${state})`);
  }
}

/** ADVISE found the host unable to do postcopy; the state went back to NONE. */
export class HostSupportError extends PostcopyError {
  constructor(readonly reason: string) {
    super('NO_HOST_SUPPORT', `postcopy is not supported on this host: ${reason}`);
  }
}

/** A RAM block resized while postcopy cannot tolerate it (DISCARD or LISTENING). */
export class ResizeDuringPostcopyError extends PostcopyError {
  constructor(readonly block: string, readonly state: number) {
    super('RESIZE_DURING_POSTCOPY', `RAM block '${block}' resized during postcopy state: ${state}`);
  }
}

// ---------------------------------------------------------------------------
// Page arrival (reference section 4)

/** A page that cannot be accepted: bad offset, mixed host pages, non-zero zero page. */
export class PageError extends PostcopyError {
  constructor(
    code: PageErrorCode,
    readonly block: string,
    readonly offset: number,
    readonly channel: number,
    message: string,
  ) {
    super(code, `${message} (block '${block}', offset 0x${offset.toString(16)}, channel ${channel})`);
  }
}

/** A fault at an address outside every RAM block: the fault thread exits. */
export class FaultOutsideRamError extends PostcopyError {
  constructor(readonly address: number) {
    super('FAULT_OUTSIDE_RAM', `fault at 0x${address.toString(16)} is outside every RAM block`);
  }
}

// ---------------------------------------------------------------------------
// Backends

/** The backend refused an operation (bad address, kernel error other than EEXIST/EAGAIN). */
export class BackendError extends PostcopyError {
  constructor(readonly operation: string, readonly errno: string, message: string) {
    super('BACKEND', `${operation}: ${message}${errno ? ` (${errno})` : ''}`);
  }
}

// ---------------------------------------------------------------------------
// Journal and replay

/** A journal that cannot be read past a point; the prefix before `seq` stays usable. */
export class JournalError extends PostcopyError {
  constructor(
    readonly file: string,
    /** First sequence number that could not be read, or -1 when the file itself is unusable. */
    readonly seq: number,
    readonly reason: string,
  ) {
    super('JOURNAL', `${file}: ${reason}${seq >= 0 ? ` at sequence number ${seq}` : ''}`);
  }
}

// ---------------------------------------------------------------------------
// QEMU trace import

/** A file that is not a QEMU log-backend trace at all. */
export class NotATraceError extends PostcopyError {
  constructor(readonly file: string, readonly reason: string) {
    super('NOT_A_TRACE', `${file} is not a QEMU trace log: ${reason}`);
  }
}

/** A bad command-line argument or option. */
export class UsageError extends PostcopyError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

// ---------------------------------------------------------------------------
// Lifecycle machines (machines/step.ts)

/** A persisted machine snapshot (from the journal) that does not restore into that machine. */
export class MachineSnapshotError extends PostcopyError {
  constructor(
    /** The machine it was to be restored into, e.g. 'postcopy'. */
    readonly machine: string,
    readonly reason: string,
  ) {
    super('BAD_MACHINE_SNAPSHOT', `cannot restore a ${machine} snapshot: ${reason}`);
  }
}

// ---------------------------------------------------------------------------
// QEMU migration stream codec (src/engine/qemuWire)

/** What was wrong with a migration stream; stable, for callers that branch on it. */
export type WireErrorReason = 'bad-magic' | 'bad-version' | 'unsupported' | 'cut' | 'malformed';

/**
 * A QEMU migration stream (main, preempt channel or return path) that the streaming
 * decoders of src/engine/qemuWire cannot go on with. Thrown by `push()` at the first byte
 * that cannot be decoded (the decoder then refuses further input), and by `end()` when the
 * stream stops inside an item ('cut': `offset` is where the bytes stopped, and
 * `lastItemEnd` where the last complete item ended, the point a recovery resumes from).
 */
export class WireError extends PostcopyError {
  constructor(
    /** Which stream: 'main stream', 'preempt channel', 'return path'. */
    readonly stream: string,
    readonly reason: WireErrorReason,
    /** Byte offset in that stream (counted from its first byte) of what was wrong. */
    readonly offset: number,
    /** What was found; for 'cut', the item the bytes stopped inside. */
    readonly detail: string,
    /** End offset of the last complete item before the error (0 when none). */
    readonly lastItemEnd: number = 0,
  ) {
    super(
      'WIRE',
      reason === 'cut' ? `${stream} cut at byte ${offset} inside ${detail}` : `${stream}: ${detail} (at byte ${offset})`,
    );
  }
}

// ---------------------------------------------------------------------------
// Journal validation (readers never change a journal; see docs/journal.md)

/**
 * A journal whose meta or schema is not what this engine writes: a key of the wrong type,
 * a missing or reshaped table. `where` names the key (`meta.blocks[0].length`) or the
 * table (`table events`).
 */
export class JournalFormatError extends JournalError {
  constructor(file: string, readonly where: string, reason: string, seq = -1) {
    super(file, seq, `${where}: ${reason}`);
  }
}

/**
 * A crash tail (`<journal>-tail`) that cannot be read whole: cut, overwritten, with a header
 * that does not add up or an event that is not one. `seq` is the first sequence number
 * that cannot be read; every event before it is readable. The tail is left as it was.
 */
export class JournalTailError extends JournalError {
  constructor(file: string, readonly tailFile: string, seq: number, reason: string) {
    super(file, seq, `its crash tail ${tailFile} is damaged: ${reason}`);
  }
}

/** An input that is not a regular file (a FIFO, a device, a directory): refused before reading. */
export class NotARegularFileError extends PostcopyError {
  constructor(readonly file: string, readonly what: string) {
    super('NOT_A_REGULAR_FILE', `${file} is ${what}, not a regular file`);
  }
}

// ---------------------------------------------------------------------------
// `postcopy receive` (src/io/qemu/qemuReceiver.ts)

/**
 * `receive` refused its peer before taking anything from it: not a QEMU migration stream
 * (`reason` 'not-qemu', with the WireError's message), or a MEM_SIZE beyond --max-memory
 * ('too-large', refused before any guest memory was allocated). Exit status 2.
 */
export class ReceiveRefusedError extends PostcopyError {
  constructor(
    readonly reason: 'not-qemu' | 'too-large' | 'unsupported',
    readonly detail: string,
  ) {
    super('RECEIVE_REFUSED', `refused the incoming migration (${reason}): ${detail}`);
  }
}
