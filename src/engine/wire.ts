/**
 * QEMU wire formats (reference section 8), byte-compatible with QEMU 7.2: the command
 * frame, the return-path frame, and the payloads of ADVISE, RAM_DISCARD, RECV_BITMAP
 * (request), REQ_PAGES, REQ_PAGES_ID and RESUME_ACK. The receive-bitmap blob lives in
 * receiveBitmap.ts.
 *
 * Contract shared by every codec here:
 * - encoders validate their input and throw `EncodeError`, else return a new Uint8Array;
 * - decoders take exactly one payload (or frame) and either return a plain object or
 *   throw `DecodeError` naming the format, the byte offset and what was wrong. They never
 *   return a partial result: trailing bytes are an error too;
 * - encoder and decoder accept exactly the same set of values, so whenever a decode
 *   succeeds, encoding its result gives back the very same bytes.
 *
 * be64 fields are JavaScript numbers, written as two 32-bit halves (no BigInt: REQ_PAGES
 * is encoded once per fault). Values at or above 2^53 cannot be held exactly, so the
 * encoders refuse them and the decoders reject them rather than lose precision.
 */
import { MigCommand, QEMU_VM_COMMAND, RpMessage } from './constants.js';
import { DecodeError, EncodeError } from '../errors.js';

// ---------------------------------------------------------------------------
// Decoded shapes

/** POSTCOPY_ADVISE payload. */
export interface Advise {
  /** Bitwise OR of every RAM block's host page size (see `hostPageSizeSummary`). */
  hostPageSizeSummary: number;
  targetPageSize: number;
}

/** POSTCOPY_RAM_DISCARD payload: byte ranges of one block whose pages must be dropped. */
export interface RamDiscard {
  blockName: string;
  /** [start, length] in bytes; at least one range, none of length 0. */
  ranges: Array<[number, number]>;
}

/** REQ_PAGES (blockName null: the last block named) or REQ_PAGES_ID (blockName set). */
export interface PageRequest {
  blockName: string | null;
  start: number;
  length: number;
}

/** A frame's number (command or return-path type) and its payload. */
export interface Frame {
  /** Command number (command frame) or message type (return-path frame). */
  kind: number;
  /** A view into the decoded bytes (not a copy). */
  payload: Uint8Array;
}

/** A return-path message ready to be framed: its type and payload. */
export interface RpPayload {
  type: number;
  payload: Uint8Array;
}

// ---------------------------------------------------------------------------
// Format names: they start every DecodeError/EncodeError message.

export const Format = {
  COMMAND_FRAME: 'command frame',
  RP_FRAME: 'return-path frame',
  ADVISE: 'POSTCOPY_ADVISE',
  RAM_DISCARD: 'POSTCOPY_RAM_DISCARD',
  RECV_BITMAP_REQUEST: 'RECV_BITMAP request',
  REQ_PAGES: 'REQ_PAGES',
  REQ_PAGES_ID: 'REQ_PAGES_ID',
  RESUME_ACK: 'RESUME_ACK',
} as const;

const TWO_32 = 0x1_0000_0000;
/** High halves at or above this put a be64 at or above 2^53. */
const HIGH_HALF_LIMIT = 0x20_0000;
const MAX_U16 = 0xffff;
const MAX_U32 = 0xffff_ffff;
const MAX_NAME_BYTES = 255;
const EMPTY = new Uint8Array(0);
const RESUME_ACK_VALUE = 1;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** Matches a lone surrogate only: in `u` mode a well-formed pair is a single code point. */
const LONE_SURROGATE = /\p{Cs}/u;

// ---------------------------------------------------------------------------
// Writing

/** Checks that `value` is an integer in [min, max]; throws EncodeError naming `what`. */
function checkUint(format: string, what: string, value: number, min: number, max: number): void {
  if (!(Number.isInteger(value) && value >= min && value <= max)) {
    throw new EncodeError(format, `${what} ${String(value)} is not an integer in [${min}, ${max}]`);
  }
}

/** Writes a big-endian 64-bit value known to be a safe non-negative integer. */
export function putBe64(out: Uint8Array, at: number, value: number): void {
  putBe32(out, at, Math.floor(value / TWO_32));
  putBe32(out, at + 4, value % TWO_32);
}

/** Writes a big-endian 32-bit value. */
export function putBe32(out: Uint8Array, at: number, value: number): void {
  out[at] = value >>> 24;
  out[at + 1] = (value >>> 16) & 0xff;
  out[at + 2] = (value >>> 8) & 0xff;
  out[at + 3] = value & 0xff;
}

/** Writes a big-endian 16-bit value. */
export function putBe16(out: Uint8Array, at: number, value: number): void {
  out[at] = value >>> 8;
  out[at + 1] = value & 0xff;
}

/**
 * A RAM block name as it travels in a byte-length field: 1 to 255 bytes of UTF-8, no NUL
 * (QEMU reads it as a C string) and no lone surrogate (it would not survive UTF-8).
 */
export function encodeBlockName(format: string, name: string): Uint8Array {
  if (typeof name !== 'string' || name.length === 0) {
    throw new EncodeError(format, 'block name is empty');
  }
  if (name.includes('\0')) throw new EncodeError(format, `block name '${name.replace(/\0/g, '\\0')}' contains a NUL byte`);
  if (LONE_SURROGATE.test(name)) throw new EncodeError(format, 'block name is not well-formed Unicode (lone surrogate)');
  const bytes = utf8Encoder.encode(name);
  if (bytes.length > MAX_NAME_BYTES) {
    throw new EncodeError(format, `block name '${name}' is ${bytes.length} bytes of UTF-8, at most ${MAX_NAME_BYTES} fit`);
  }
  return bytes;
}

// ---------------------------------------------------------------------------
// Reading

/**
 * A cursor over one payload that throws DecodeError for every way the bytes can be
 * wrong. `finish` rejects trailing bytes, so no caller can forget to.
 */
export class PayloadReader {
  private pos = 0;

  constructor(
    readonly format: string,
    readonly bytes: Uint8Array,
  ) {}

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  fail(at: number, reason: string): never {
    throw new DecodeError(this.format, at, reason);
  }

  private need(n: number, what: string): number {
    const at = this.pos;
    if (n > this.bytes.length - at) {
      this.fail(at, `truncated: ${what} needs ${n} bytes, ${this.bytes.length - at} left`);
    }
    this.pos = at + n;
    return at;
  }

  u8(what: string): number {
    return this.bytes[this.need(1, what)]!;
  }

  be16(what: string): number {
    const at = this.need(2, what);
    const b = this.bytes;
    return (b[at]! << 8) | b[at + 1]!;
  }

  be32(what: string): number {
    const at = this.need(4, what);
    return rawBe32(this.bytes, at);
  }

  /** A be64 below 2^53, as a number. */
  be64(what: string): number {
    const at = this.need(8, what);
    const hi = rawBe32(this.bytes, at);
    const lo = rawBe32(this.bytes, at + 4);
    if (hi >= HIGH_HALF_LIMIT) this.fail(at, `${what} 0x${hex64(hi, lo)} is not below 2^53`);
    return hi * TWO_32 + lo;
  }

  /** `n` bytes as a view into the payload. */
  bytesView(n: number, what: string): Uint8Array {
    const at = this.need(n, what);
    return this.bytes.subarray(at, at + n);
  }

  /** A byte length then that many bytes of block name; the inverse of `encodeBlockName`. */
  blockName(): string {
    const lengthAt = this.pos;
    const n = this.u8('name length');
    if (n === 0) this.fail(lengthAt, 'name length is 0');
    if (n > this.remaining) {
      this.fail(lengthAt, `name length ${n} runs past the end of the payload (${this.remaining} bytes left)`);
    }
    const at = this.pos;
    const raw = this.bytesView(n, 'name');
    if (raw.includes(0)) this.fail(at, 'block name contains a NUL byte');
    try {
      return utf8Decoder.decode(raw);
    } catch {
      return this.fail(at, 'block name is not valid UTF-8');
    }
  }

  /** Rejects trailing bytes after the last field, `last`. */
  finish(last: string): void {
    if (this.remaining !== 0) this.fail(this.pos, `${this.remaining} trailing bytes after the ${last}`);
  }
}

function rawBe32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** 16 hex digits of a 64-bit value given as two 32-bit halves (pure). */
export function hex64(hi: number, lo: number): string {
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}

// ---------------------------------------------------------------------------
// Frames

/** pure: byte QEMU_VM_COMMAND (0x08), be16 command, be16 length, payload. */
export function encodeCommandFrame(command: number, payload: Uint8Array = EMPTY): Uint8Array {
  checkUint(Format.COMMAND_FRAME, 'command', command, 0, MAX_U16);
  checkFramePayload(Format.COMMAND_FRAME, payload);
  const out = new Uint8Array(5 + payload.length);
  out[0] = QEMU_VM_COMMAND;
  putBe16(out, 1, command);
  putBe16(out, 3, payload.length);
  out.set(payload, 5);
  return out;
}

/** pure: one whole command frame; the payload is a view into `bytes`. */
export function decodeCommandFrame(bytes: Uint8Array): Frame {
  const r = new PayloadReader(Format.COMMAND_FRAME, bytes);
  const marker = r.u8('marker');
  if (marker !== QEMU_VM_COMMAND) {
    r.fail(0, `marker byte is 0x${hex2(marker)}, expected 0x${hex2(QEMU_VM_COMMAND)}`);
  }
  const kind = r.be16('command');
  return { kind, payload: framePayload(r) };
}

/** pure: be16 type, be16 length, payload. */
export function encodeReturnPathFrame(type: number, payload: Uint8Array = EMPTY): Uint8Array {
  checkUint(Format.RP_FRAME, 'type', type, 0, MAX_U16);
  checkFramePayload(Format.RP_FRAME, payload);
  const out = new Uint8Array(4 + payload.length);
  putBe16(out, 0, type);
  putBe16(out, 2, payload.length);
  out.set(payload, 4);
  return out;
}

/** pure: one whole return-path frame; the payload is a view into `bytes`. */
export function decodeReturnPathFrame(bytes: Uint8Array): Frame {
  const r = new PayloadReader(Format.RP_FRAME, bytes);
  const kind = r.be16('type');
  return { kind, payload: framePayload(r) };
}

function checkFramePayload(format: string, payload: Uint8Array): void {
  if (!(payload instanceof Uint8Array)) throw new EncodeError(format, 'payload is not a Uint8Array');
  if (payload.length > MAX_U16) {
    throw new EncodeError(format, `payload of ${payload.length} bytes does not fit the 16-bit length field`);
  }
}

function framePayload(r: PayloadReader): Uint8Array {
  const lengthAt = r.offset;
  const length = r.be16('length');
  if (length > r.remaining) r.fail(lengthAt, `truncated: length field says ${length} bytes, ${r.remaining} follow`);
  const payload = r.bytesView(length, 'payload');
  r.finish('payload');
  return payload;
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, '0');
}

// ---------------------------------------------------------------------------
// POSTCOPY_ADVISE

const ADVISE_BYTES = 16;

/** pure: be64 host page size summary, be64 target page size. */
export function encodeAdvise(advise: Advise): Uint8Array {
  checkUint(Format.ADVISE, 'host page size summary', advise.hostPageSizeSummary, 0, Number.MAX_SAFE_INTEGER);
  checkUint(Format.ADVISE, 'target page size', advise.targetPageSize, 0, Number.MAX_SAFE_INTEGER);
  const out = new Uint8Array(ADVISE_BYTES);
  putBe64(out, 0, advise.hostPageSizeSummary);
  putBe64(out, 8, advise.targetPageSize);
  return out;
}

/** pure: exactly 16 bytes. */
export function decodeAdvise(bytes: Uint8Array): Advise {
  const r = new PayloadReader(Format.ADVISE, bytes);
  const hostPageSizeSummary = r.be64('host page size summary');
  const targetPageSize = r.be64('target page size');
  r.finish('target page size');
  return { hostPageSizeSummary, targetPageSize };
}

/**
 * pure: the ADVISE summary, the bitwise OR of every block's host page size. Page sizes are
 * powers of two (RamBlock enforces it), so the OR is the sum of the distinct sizes; summing
 * keeps it right for sizes past 2^31, where `|` would not.
 */
export function hostPageSizeSummary(hostPageSizes: Iterable<number>): number {
  let sum = 0;
  for (const size of new Set(hostPageSizes)) sum += size;
  return sum;
}

// ---------------------------------------------------------------------------
// POSTCOPY_RAM_DISCARD

const DISCARD_VERSION = 0;
const RANGE_BYTES = 16;

/**
 * pure: byte version (0), byte name length, name, byte 0, then be64 start and be64 length
 * per range. At least one range; none may be empty (QEMU never sends either).
 */
export function encodeRamDiscard(discard: RamDiscard): Uint8Array {
  const f = Format.RAM_DISCARD;
  const name = encodeBlockName(f, discard.blockName);
  const ranges = discard.ranges;
  if (!Array.isArray(ranges) || ranges.length === 0) throw new EncodeError(f, 'no ranges');
  const out = new Uint8Array(3 + name.length + RANGE_BYTES * ranges.length);
  out[0] = DISCARD_VERSION;
  out[1] = name.length;
  out.set(name, 2);
  out[2 + name.length] = 0;
  let at = 3 + name.length;
  for (let i = 0; i < ranges.length; i++) {
    const [start, length] = ranges[i]!;
    checkUint(f, `range ${i} start`, start, 0, Number.MAX_SAFE_INTEGER);
    checkUint(f, `range ${i} length`, length, 1, Number.MAX_SAFE_INTEGER);
    putBe64(out, at, start);
    putBe64(out, at + 8, length);
    at += RANGE_BYTES;
  }
  return out;
}

/** pure: the inverse of `encodeRamDiscard`. */
export function decodeRamDiscard(bytes: Uint8Array): RamDiscard {
  const r = new PayloadReader(Format.RAM_DISCARD, bytes);
  const version = r.u8('version');
  if (version !== DISCARD_VERSION) r.fail(0, `version byte is ${version}, expected ${DISCARD_VERSION}`);
  const blockName = r.blockName();
  const terminatorAt = r.offset;
  const terminator = r.u8('name terminator');
  if (terminator !== 0) r.fail(terminatorAt, `byte after the name is ${terminator}, expected 0`);
  if (r.remaining === 0) r.fail(r.offset, 'no ranges');
  if (r.remaining % RANGE_BYTES !== 0) {
    r.fail(r.offset, `${r.remaining} bytes of ranges is not a multiple of ${RANGE_BYTES}`);
  }
  const count = r.remaining / RANGE_BYTES;
  const ranges: Array<[number, number]> = new Array(count);
  for (let i = 0; i < count; i++) {
    const start = r.be64(`range ${i} start`);
    const lengthAt = r.offset;
    const length = r.be64(`range ${i} length`);
    if (length === 0) r.fail(lengthAt, `range ${i} has length 0`);
    ranges[i] = [start, length];
  }
  r.finish('ranges');
  return { blockName, ranges };
}

// ---------------------------------------------------------------------------
// RECV_BITMAP request (command 10): byte name length, name

/** pure: byte name length, name. */
export function encodeRecvBitmapRequest(blockName: string): Uint8Array {
  const name = encodeBlockName(Format.RECV_BITMAP_REQUEST, blockName);
  const out = new Uint8Array(1 + name.length);
  out[0] = name.length;
  out.set(name, 1);
  return out;
}

/** pure: the block name of a RECV_BITMAP request. */
export function decodeRecvBitmapRequest(bytes: Uint8Array): string {
  const r = new PayloadReader(Format.RECV_BITMAP_REQUEST, bytes);
  const name = r.blockName();
  r.finish('name');
  return name;
}

// ---------------------------------------------------------------------------
// REQ_PAGES and REQ_PAGES_ID

const REQ_PAGES_BYTES = 12;

function checkRequest(format: string, start: number, length: number): void {
  checkUint(format, 'start', start, 0, Number.MAX_SAFE_INTEGER);
  checkUint(format, 'length', length, 1, MAX_U32);
}

function putRequest(out: Uint8Array, start: number, length: number): void {
  putBe64(out, 0, start);
  putBe32(out, 8, length);
}

/** pure: be64 start, be32 length (12 bytes). Hot path: one per fault. */
export function encodeReqPages(start: number, length: number): Uint8Array {
  checkRequest(Format.REQ_PAGES, start, length);
  const out = new Uint8Array(REQ_PAGES_BYTES);
  putRequest(out, start, length);
  return out;
}

/** pure: be64 start, be32 length, byte name length, name. */
export function encodeReqPagesId(blockName: string, start: number, length: number): Uint8Array {
  checkRequest(Format.REQ_PAGES_ID, start, length);
  const name = encodeBlockName(Format.REQ_PAGES_ID, blockName);
  const out = new Uint8Array(REQ_PAGES_BYTES + 1 + name.length);
  putRequest(out, start, length);
  out[REQ_PAGES_BYTES] = name.length;
  out.set(name, REQ_PAGES_BYTES + 1);
  return out;
}

function readRequest(r: PayloadReader): { start: number; length: number } {
  const start = r.be64('start');
  const lengthAt = r.offset;
  const length = r.be32('length');
  if (length === 0) r.fail(lengthAt, 'length is 0');
  return { start, length };
}

/** pure: a REQ_PAGES payload; blockName is null (the source uses the last block named). */
export function decodeReqPages(bytes: Uint8Array): PageRequest {
  const r = new PayloadReader(Format.REQ_PAGES, bytes);
  const { start, length } = readRequest(r);
  r.finish('length');
  return { blockName: null, start, length };
}

/** pure: a REQ_PAGES_ID payload. */
export function decodeReqPagesId(bytes: Uint8Array): PageRequest {
  const r = new PayloadReader(Format.REQ_PAGES_ID, bytes);
  const { start, length } = readRequest(r);
  const blockName = r.blockName();
  r.finish('name');
  return { blockName, start, length };
}

/**
 * pure: the page request for a fault (reference section 3). The block is named
 * (REQ_PAGES_ID) only when it differs from `lastBlockName`, the last block named on this
 * return path (null when none was, e.g. after a recovery); otherwise REQ_PAGES.
 */
export function requestPageMessage(
  lastBlockName: string | null,
  blockName: string,
  start: number,
  length: number,
): RpPayload {
  if (blockName === lastBlockName) return { type: RpMessage.REQ_PAGES, payload: encodeReqPages(start, length) };
  return { type: RpMessage.REQ_PAGES_ID, payload: encodeReqPagesId(blockName, start, length) };
}

/**
 * The return path's memory of the last block named, so that each request names its block
 * only when it changes. Owned by whoever sends the requests (the fault path).
 */
export class ReturnPathRequester {
  private last: string | null = null;

  /** The last block named, or null. */
  get lastBlockName(): string | null {
    return this.last;
  }

  /** The request for `length` bytes at `start` of `blockName`; remembers the block once encoded. */
  request(blockName: string, start: number, length: number): RpPayload {
    const message = requestPageMessage(this.last, blockName, start, length);
    this.last = blockName;
    return message;
  }

  /** Forgets the last block (after a recovery), so that the next request names its block. */
  forget(): void {
    this.last = null;
  }
}

/** pure: decodes a REQ_PAGES or REQ_PAGES_ID payload by its return-path type. */
export function decodePageRequest(type: number, payload: Uint8Array): PageRequest {
  if (type === RpMessage.REQ_PAGES) return decodeReqPages(payload);
  if (type === RpMessage.REQ_PAGES_ID) return decodeReqPagesId(payload);
  throw new DecodeError(Format.RP_FRAME, 0, `type ${type} is not REQ_PAGES (${RpMessage.REQ_PAGES}) or REQ_PAGES_ID (${RpMessage.REQ_PAGES_ID})`);
}

// ---------------------------------------------------------------------------
// RESUME_ACK

/** pure: be32 1. */
export function encodeResumeAck(): Uint8Array {
  const out = new Uint8Array(4);
  putBe32(out, 0, RESUME_ACK_VALUE);
  return out;
}

/** pure: accepts only be32 1; returns the value. */
export function decodeResumeAck(bytes: Uint8Array): number {
  const r = new PayloadReader(Format.RESUME_ACK, bytes);
  const value = r.be32('value');
  if (value !== RESUME_ACK_VALUE) r.fail(0, `value is ${value}, expected ${RESUME_ACK_VALUE}`);
  r.finish('value');
  return value;
}

// ---------------------------------------------------------------------------
// Whole commands the engine sends (framed)

/** pure: the framed POSTCOPY_ADVISE command. */
export function adviseCommand(advise: Advise): Uint8Array {
  return encodeCommandFrame(MigCommand.POSTCOPY_ADVISE, encodeAdvise(advise));
}

/** pure: the framed POSTCOPY_RAM_DISCARD command. */
export function ramDiscardCommand(discard: RamDiscard): Uint8Array {
  return encodeCommandFrame(MigCommand.POSTCOPY_RAM_DISCARD, encodeRamDiscard(discard));
}
