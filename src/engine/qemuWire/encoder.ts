/**
 * Encoders of everything a QEMU source and destination send (the inverse of the decoders
 * in this folder). Pages are never copied: a page record is a small header returned (or
 * written into a caller's buffer) for the caller to send followed by the page itself
 * (writev header + page view); PACKAGED and RECV_BITMAP likewise come as pieces around the
 * caller's device state or bitmap. Bad values throw EncodeError (src/errors.ts).
 */
import { EncodeError } from '../../errors.js';
import { MigCommand, QEMU_VM_COMMAND, RECV_BITMAP_END_MARK, RpMessage, TARGET_PAGE_SIZE } from '../constants.js';
import {
  encodeAdvise,
  encodeBlockName,
  encodeCommandFrame,
  encodeRamDiscard,
  encodeRecvBitmapRequest,
  encodeResumeAck,
  encodeReturnPathFrame,
  encodeReqPages,
  encodeReqPagesId,
  type Advise,
  type RamDiscard,
  putBe32,
  putBe64,
} from '../wire.js';
import {
  assertNever,
  RamFlag,
  SectionType,
  STREAM_MAGIC,
  STREAM_VERSION,
  type MainItem,
  type PreemptItem,
  type RamBlockInfo,
  type ReturnPathItem,
} from './items.js';

const FORMAT = 'QEMU migration stream';
const MAX_U32 = 0xffff_ffff;
const END_MARK_HI = Number(RECV_BITMAP_END_MARK >> 32n);
const END_MARK_LO = Number(RECV_BITMAP_END_MARK & 0xffff_ffffn);

function checkU32(what: string, value: number): void {
  if (!(Number.isInteger(value) && value >= 0 && value <= MAX_U32)) throw new EncodeError(FORMAT, `${what} ${String(value)} is not a 32-bit unsigned integer`);
}

function checkSafe(what: string, value: number): void {
  if (!(Number.isInteger(value) && value >= 0 && value <= Number.MAX_SAFE_INTEGER)) throw new EncodeError(FORMAT, `${what} ${String(value)} is not a safe non-negative integer`);
}

/** A name with its byte-length prefix, as sections, blocks and records carry it. */
function lengthPrefixed(name: string): Uint8Array {
  const bytes = encodeBlockName(FORMAT, name);
  const out = new Uint8Array(1 + bytes.length);
  out[0] = bytes.length;
  out.set(bytes, 1);
  return out;
}

// ---------------------------------------------------------------------------
// Stream framing

/** "QEVM", version 3: the first 8 bytes of a first (not resumed) main connection. */
export function streamHeader(): Uint8Array {
  const out = new Uint8Array(8);
  putBe32(out, 0, STREAM_MAGIC);
  putBe32(out, 4, STREAM_VERSION);
  return out;
}

/** CONFIGURATION: be32 length + machine type name (e.g. "pc-i440fx-7.2"). */
export function configuration(machineType: string): Uint8Array {
  const name = encodeBlockName(FORMAT, machineType);
  const out = new Uint8Array(5 + name.length);
  out[0] = SectionType.CONFIGURATION;
  putBe32(out, 1, name.length);
  out.set(name, 5);
  return out;
}

/** SECTION_START (or SECTION_FULL): id, idstr, instance id, version id; section data follows. */
export function sectionStart(sectionId: number, idstr: string, instanceId: number, versionId: number, full = false): Uint8Array {
  checkU32('section id', sectionId);
  checkU32('instance id', instanceId);
  checkU32('version id', versionId);
  const name = lengthPrefixed(idstr);
  const out = new Uint8Array(13 + name.length);
  out[0] = full ? SectionType.SECTION_FULL : SectionType.SECTION_START;
  putBe32(out, 1, sectionId);
  out.set(name, 5);
  putBe32(out, 5 + name.length, instanceId);
  putBe32(out, 9 + name.length, versionId);
  return out;
}

function sectionIdItem(type: number, sectionId: number): Uint8Array {
  checkU32('section id', sectionId);
  const out = new Uint8Array(5);
  out[0] = type;
  putBe32(out, 1, sectionId);
  return out;
}

/** SECTION_PART: section data follows. */
export function sectionPart(sectionId: number): Uint8Array {
  return sectionIdItem(SectionType.SECTION_PART, sectionId);
}

/** SECTION_END: the last data of a section follows. */
export function sectionEnd(sectionId: number): Uint8Array {
  return sectionIdItem(SectionType.SECTION_END, sectionId);
}

/** SECTION_FOOTER: after every section's data. */
export function sectionFooter(sectionId: number): Uint8Array {
  return sectionIdItem(SectionType.SECTION_FOOTER, sectionId);
}

/** EOF: the last byte of a main stream. */
export function endOfStream(): Uint8Array {
  return Uint8Array.of(SectionType.EOF);
}

// ---------------------------------------------------------------------------
// RAM section data

/**
 * MEM_SIZE: the total of the used lengths, then each block; a block's page size is written
 * when set (the source sets it, after ADVISE, for blocks whose page size is not the host's).
 */
export function memSize(blocks: readonly RamBlockInfo[]): Uint8Array {
  let total = 0;
  const parts: Uint8Array[] = [];
  for (const block of blocks) {
    checkSafe(`used length of '${block.name}'`, block.usedLength);
    if (block.usedLength === 0 || block.usedLength % TARGET_PAGE_SIZE !== 0) throw new EncodeError(FORMAT, `used length of '${block.name}' is not a positive multiple of ${TARGET_PAGE_SIZE}`);
    const name = lengthPrefixed(block.name);
    const part = new Uint8Array(name.length + (block.pageSize === undefined ? 8 : 16));
    part.set(name);
    putBe64(part, name.length, block.usedLength);
    if (block.pageSize !== undefined) {
      checkSafe(`page size of '${block.name}'`, block.pageSize);
      putBe64(part, name.length + 8, block.pageSize);
    }
    parts.push(part);
    total += block.usedLength;
  }
  if (total % TARGET_PAGE_SIZE !== 0 || total === 0) throw new EncodeError(FORMAT, 'MEM_SIZE needs at least one block');
  checkSafe('MEM_SIZE total', total);
  const out = new Uint8Array(8 + parts.reduce((n, p) => n + p.length, 0));
  putBe64(out, 0, total + RamFlag.MEM_SIZE);
  let at = 8;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** EOS: the end of one section's RAM data (a footer follows), or of the preempt channel. */
export function endOfSection(): Uint8Array {
  const out = new Uint8Array(8);
  out[7] = RamFlag.EOS;
  return out;
}

const nameCache = new Map<string, Uint8Array>();

/** The length-prefixed bytes of a block name, encoded once per name (records name blocks often). */
function blockNameBytes(name: string): Uint8Array {
  let bytes = nameCache.get(name);
  if (bytes === undefined) {
    bytes = lengthPrefixed(name);
    if (nameCache.size < 1024) nameCache.set(name, bytes);
  }
  return bytes;
}

/** Bytes of a PAGE/ZERO record header: 8, plus 1 + name length unless CONTINUE. */
export function ramRecordHeaderLength(block: string | null): number {
  return block === null ? 8 : 8 + blockNameBytes(block).length;
}

/**
 * Writes the header of a PAGE (or ZERO) record into `out` at `at` and returns the bytes
 * written. `block` null means CONTINUE (same block as the previous record). A PAGE header is
 * followed by the 4096 page bytes (the caller sends them from its own memory); a ZERO
 * header by the fill byte 0 (`zeroPageRecord` writes both).
 */
export function writeRamRecordHeader(out: Uint8Array, at: number, type: 'page' | 'zero', pageOffset: number, block: string | null): number {
  checkSafe('page offset', pageOffset);
  if (pageOffset % TARGET_PAGE_SIZE !== 0) throw new EncodeError(FORMAT, `page offset ${pageOffset} is not a multiple of ${TARGET_PAGE_SIZE}`);
  const flags = (type === 'page' ? RamFlag.PAGE : RamFlag.ZERO) | (block === null ? RamFlag.CONTINUE : 0);
  putBe64(out, at, pageOffset + flags);
  if (block === null) return 8;
  const name = blockNameBytes(block);
  out.set(name, at + 8);
  return 8 + name.length;
}

/** The header of a PAGE record (send the page bytes right after it). */
export function pageRecordHeader(pageOffset: number, block: string | null): Uint8Array {
  const out = new Uint8Array(ramRecordHeaderLength(block));
  writeRamRecordHeader(out, 0, 'page', pageOffset, block);
  return out;
}

/** A whole ZERO record (fill byte 0). */
export function zeroPageRecord(pageOffset: number, block: string | null): Uint8Array {
  const out = new Uint8Array(ramRecordHeaderLength(block) + 1);
  writeRamRecordHeader(out, 0, 'zero', pageOffset, block);
  return out;
}

/**
 * A sender's memory of the last block it named on one channel, so that a record names
 * its block only when it changes (else CONTINUE), as QEMU's source does. One per channel.
 */
export class RamRecordEncoder {
  private last: string | null = null;

  /** The header of a PAGE record of `block` at `pageOffset`; send the page after it. */
  page(block: string, pageOffset: number): Uint8Array {
    const header = pageRecordHeader(pageOffset, block === this.last ? null : block);
    this.last = block;
    return header;
  }

  /** A whole ZERO record. */
  zero(block: string, pageOffset: number): Uint8Array {
    const record = zeroPageRecord(pageOffset, block === this.last ? null : block);
    this.last = block;
    return record;
  }

  /** Name the block again in the next record (e.g. on a new connection). */
  forget(): void {
    this.last = null;
  }
}

// ---------------------------------------------------------------------------
// Commands

export const openReturnPath = (): Uint8Array => encodeCommandFrame(MigCommand.OPEN_RETURN_PATH);
export const postcopyListen = (): Uint8Array => encodeCommandFrame(MigCommand.POSTCOPY_LISTEN);
export const postcopyRun = (): Uint8Array => encodeCommandFrame(MigCommand.POSTCOPY_RUN);
export const postcopyResume = (): Uint8Array => encodeCommandFrame(MigCommand.POSTCOPY_RESUME);
/** QEMU 10.x: sent just before the discards. */
export const switchoverStart = (): Uint8Array => encodeCommandFrame(MigCommand.SWITCHOVER_START);

export function ping(value: number): Uint8Array {
  checkU32('PING value', value);
  const payload = new Uint8Array(4);
  putBe32(payload, 0, value);
  return encodeCommandFrame(MigCommand.PING, payload);
}

export const postcopyAdvise = (advise: Advise): Uint8Array => encodeCommandFrame(MigCommand.POSTCOPY_ADVISE, encodeAdvise(advise));
export const ramDiscard = (discard: RamDiscard): Uint8Array => encodeCommandFrame(MigCommand.POSTCOPY_RAM_DISCARD, encodeRamDiscard(discard));
export const recvBitmapRequest = (blockName: string): Uint8Array => encodeCommandFrame(MigCommand.RECV_BITMAP, encodeRecvBitmapRequest(blockName));

/**
 * PACKAGED around `deviceState` (the SECTION_FULL items of the devices): returns three
 * pieces to send in order, [command + L + LISTEN, deviceState itself, PING + RUN].
 */
export function packaged(deviceState: Uint8Array, pingValue: number): [Uint8Array, Uint8Array, Uint8Array] {
  checkU32('PING value', pingValue);
  const length = 5 + deviceState.length + 9 + 5;
  checkU32('PACKAGED length', length);
  const head = new Uint8Array(9 + 5);
  head.set([QEMU_VM_COMMAND, 0, MigCommand.PACKAGED, 0, 4]);
  putBe32(head, 5, length);
  head.set([QEMU_VM_COMMAND, 0, MigCommand.POSTCOPY_LISTEN, 0, 0], 9);
  const tail = new Uint8Array(9 + 5);
  tail.set(ping(pingValue));
  tail.set([QEMU_VM_COMMAND, 0, MigCommand.POSTCOPY_RUN, 0, 0], 9);
  return [head, deviceState, tail];
}

// ---------------------------------------------------------------------------
// Return path

export function shut(status: number): Uint8Array {
  checkU32('SHUT status', status);
  const payload = new Uint8Array(4);
  putBe32(payload, 0, status);
  return encodeReturnPathFrame(RpMessage.SHUT, payload);
}

export function pong(value: number): Uint8Array {
  checkU32('PONG value', value);
  const payload = new Uint8Array(4);
  putBe32(payload, 0, value);
  return encodeReturnPathFrame(RpMessage.PONG, payload);
}

/** REQ_PAGES_ID (block named) or, with `block` null, REQ_PAGES (same block as the last request). */
export function pageRequest(block: string | null, start: number, length: number): Uint8Array {
  return block === null
    ? encodeReturnPathFrame(RpMessage.REQ_PAGES, encodeReqPages(start, length))
    : encodeReturnPathFrame(RpMessage.REQ_PAGES_ID, encodeReqPagesId(block, start, length));
}

export const resumeAck = (): Uint8Array => encodeReturnPathFrame(RpMessage.RESUME_ACK, encodeResumeAck());
/** QEMU 10.x, with the switchover-ack capability. */
export const switchoverAck = (): Uint8Array => encodeReturnPathFrame(RpMessage.SWITCHOVER_ACK);

/**
 * RECV_BITMAP for `blockName` with its blob: returns [frame + be64 N, the bitmap itself
 * (N bytes of little-endian 64-bit words), be64 end mark].
 */
export function recvBitmap(blockName: string, bitmap: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  if (bitmap.length % 8 !== 0) throw new EncodeError(FORMAT, `RECV_BITMAP of ${bitmap.length} bytes is not whole 64-bit words`);
  const frame = encodeReturnPathFrame(RpMessage.RECV_BITMAP, encodeRecvBitmapRequest(blockName));
  const head = new Uint8Array(frame.length + 8);
  head.set(frame);
  putBe64(head, frame.length, bitmap.length);
  const mark = new Uint8Array(8);
  putBe32(mark, 0, END_MARK_HI);
  putBe32(mark, 4, END_MARK_LO);
  return [head, bitmap, mark];
}

// ---------------------------------------------------------------------------
// Items back to bytes (the decoders' inverse; offsets are ignored)

/**
 * The pieces that encode `items` of a main stream, in order. A 'packaged' item must be
 * followed by the four items the decoder hands out after it (listen, device-state, ping,
 * run, all inPackage); PAGE data is passed through, not copied.
 */
export function encodeMainItems(items: readonly MainItem[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    switch (item.kind) {
      case 'header':
        if (item.version !== STREAM_VERSION) throw new EncodeError(FORMAT, `stream version ${item.version}, only ${STREAM_VERSION} exists`);
        out.push(streamHeader());
        break;
      case 'configuration':
        out.push(configuration(item.machineType));
        break;
      case 'section-start':
      case 'section-full':
        out.push(sectionStart(item.sectionId, item.idstr, item.instanceId, item.versionId, item.kind === 'section-full'));
        break;
      case 'section-part':
        out.push(sectionPart(item.sectionId));
        break;
      case 'section-end':
        out.push(sectionEnd(item.sectionId));
        break;
      case 'section-footer':
        out.push(sectionFooter(item.sectionId));
        break;
      case 'mem-size':
        out.push(memSize(item.blocks));
        break;
      case 'page':
      case 'zero-page':
      case 'eos':
        out.push(...encodeRamItem(item));
        break;
      case 'open-return-path':
        out.push(openReturnPath());
        break;
      case 'ping':
      case 'listen':
      case 'run':
        if (item.inPackage) throw new EncodeError(FORMAT, `${item.kind} marked inPackage outside a PACKAGED`);
        out.push(item.kind === 'ping' ? ping(item.value) : item.kind === 'listen' ? postcopyListen() : postcopyRun());
        break;
      case 'advise':
        out.push(postcopyAdvise(item.advise));
        break;
      case 'ram-discard':
        out.push(ramDiscard(item.discard));
        break;
      case 'packaged': {
        const [listen, state, pingItem, run] = [items[i + 1], items[i + 2], items[i + 3], items[i + 4]];
        if (listen?.kind !== 'listen' || state?.kind !== 'device-state' || pingItem?.kind !== 'ping' || run?.kind !== 'run') {
          throw new EncodeError(FORMAT, 'a packaged item must be followed by listen, device-state, ping and run');
        }
        const pieces = packaged(state.bytes, pingItem.value);
        const length = pieces[0].length - 9 + pieces[1].length + pieces[2].length;
        if (length !== item.length) throw new EncodeError(FORMAT, `packaged length ${item.length} does not match its content (${length} bytes)`);
        out.push(...pieces);
        i += 4;
        break;
      }
      case 'device-state':
        throw new EncodeError(FORMAT, 'device-state outside a PACKAGED');
      case 'postcopy-resume':
        out.push(postcopyResume());
        break;
      case 'recv-bitmap-request':
        out.push(recvBitmapRequest(item.blockName));
        break;
      case 'switchover-start':
        out.push(switchoverStart());
        break;
      case 'eof':
        out.push(endOfStream());
        break;
      default:
        assertNever(item, 'main stream item');
    }
  }
  return out;
}

/** The pieces of one RAM item (main stream section data or preempt channel). */
export function encodeRamItem(item: PreemptItem): Uint8Array[] {
  switch (item.kind) {
    case 'page':
      if (item.data.length !== TARGET_PAGE_SIZE) throw new EncodeError(FORMAT, `page data of ${item.data.length} bytes, expected ${TARGET_PAGE_SIZE}`);
      return [pageRecordHeader(item.pageOffset, item.continued ? null : item.block), item.data];
    case 'zero-page':
      if (item.fill !== 0) throw new EncodeError(FORMAT, `ZERO fill byte ${item.fill}: only 0 is valid`);
      return [zeroPageRecord(item.pageOffset, item.continued ? null : item.block)];
    case 'eos':
      return [endOfSection()];
    default:
      return assertNever(item, 'RAM item');
  }
}

/** The pieces that encode return-path items (REQ_PAGES for requests not `named`). */
export function encodeReturnPathItems(items: readonly ReturnPathItem[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const item of items) {
    switch (item.kind) {
      case 'shut':
        out.push(shut(item.status));
        break;
      case 'pong':
        out.push(pong(item.value));
        break;
      case 'page-request':
        out.push(pageRequest(item.named ? item.block : null, item.start, item.length));
        break;
      case 'recv-bitmap':
        out.push(...recvBitmap(item.blockName, item.bitmap));
        break;
      case 'resume-ack':
        if (item.value !== 1) throw new EncodeError(FORMAT, `RESUME_ACK value ${item.value}: only 1 is valid`);
        out.push(resumeAck());
        break;
      case 'switchover-ack':
        out.push(switchoverAck());
        break;
      default:
        assertNever(item, 'return-path item');
    }
  }
  return out;
}
