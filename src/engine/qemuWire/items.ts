/**
 * What the QEMU migration-stream decoders hand out, and the numbers of the stream.
 * The stream itself is described in /work/shared/reference/qemu-wire.md (from real
 * captures) and postcopy.md section 8 (payloads); docs/qemu-wire.md describes this codec.
 *
 * Every item carries `offset`: the byte offset of its first byte in its stream, counted
 * from the first byte of that connection (so errors and items can be matched to a capture).
 */
import type { Advise, RamDiscard } from '../wire.js';

/** Section and record type bytes of the main stream (qemu-wire.md "The main stream"). */
export const SectionType = {
  EOF: 0x00,
  SECTION_START: 0x01,
  SECTION_PART: 0x02,
  SECTION_END: 0x03,
  SECTION_FULL: 0x04,
  SUBSECTION: 0x05,
  CONFIGURATION: 0x07,
  COMMAND: 0x08,
  SECTION_FOOTER: 0x7e,
} as const;

/** "QEVM" */
export const STREAM_MAGIC = 0x5145564d;
export const STREAM_VERSION = 3;

/** Low 12 bits of a RAM record's be64 (qemu-wire.md "RAM section data"). */
export const RamFlag = {
  ZERO: 0x02,
  MEM_SIZE: 0x04,
  PAGE: 0x08,
  EOS: 0x10,
  CONTINUE: 0x20,
  XBZRLE: 0x40,
  COMPRESS_PAGE: 0x100,
  MULTIFD_FLUSH: 0x200,
} as const;
export const RAM_FLAG_MASK = 0xfff;

/** The idstr of the one section whose data this codec parses. */
export const RAM_SECTION = 'ram';

// ---------------------------------------------------------------------------
// RAM records: main stream (inside a ram section) and preempt channel

export interface RamBlockInfo {
  name: string;
  usedLength: number;
  /** Present only when the stream carries it (see MemSizeItem). */
  pageSize?: number;
}

/**
 * MEM_SIZE: the RAM size and every block. A block's page size travels only once postcopy
 * was advised and only for blocks whose page size differs from the host's: the ADVISE
 * summary (OR of all page sizes) equal to its target page size means none does (all the
 * 7.2 captures: summary 0x1000, no page size field).
 */
export interface MemSizeItem {
  kind: 'mem-size';
  offset: number;
  totalBytes: number;
  blocks: RamBlockInfo[];
}

/**
 * PAGE: 4096 bytes of a block. `data` is a view into the chunk given to `push()` when the
 * page lay in one chunk (no copy), else into a buffer the decoder assembled it in (one
 * copy, never reused). Either way it stays valid as long as the caller leaves the pushed
 * chunk's memory alone: a caller that reads into a reused buffer must consume the items of
 * one `push()` before reading the next chunk into it.
 */
export interface PageItem {
  kind: 'page';
  offset: number;
  block: string;
  /** Byte offset of the page in its block. */
  pageOffset: number;
  /** The record said CONTINUE (block not named, same as the previous record). */
  continued: boolean;
  data: Uint8Array;
}

/** ZERO: a page filled with `fill` (always 0; anything else is refused). */
export interface ZeroPageItem {
  kind: 'zero-page';
  offset: number;
  block: string;
  pageOffset: number;
  continued: boolean;
  fill: number;
}

/** EOS: the end of one section's RAM data; a footer follows. */
export interface EndOfSectionItem {
  kind: 'eos';
  offset: number;
}

/** What the preempt channel carries: RAM records only, and the EOS that closes it. */
export type PreemptItem = PageItem | ZeroPageItem | EndOfSectionItem;
export type PreemptItemKind = PreemptItem['kind'];

// ---------------------------------------------------------------------------
// Main stream

export interface HeaderItem {
  kind: 'header';
  offset: number;
  version: number;
}

export interface ConfigurationItem {
  kind: 'configuration';
  offset: number;
  machineType: string;
}

/** SECTION_START / SECTION_FULL: a section with its idstr ('ram' is the only one parsed). */
export interface SectionStartItem {
  kind: 'section-start' | 'section-full';
  offset: number;
  sectionId: number;
  idstr: string;
  instanceId: number;
  versionId: number;
}

export interface SectionPartItem {
  kind: 'section-part' | 'section-end';
  offset: number;
  sectionId: number;
  /** The idstr of that section, from its SECTION_START (or the resume state). */
  idstr: string;
}

export interface SectionFooterItem {
  kind: 'section-footer';
  offset: number;
  sectionId: number;
}

/** Commands without payload. `inPackage`: LISTEN and RUN read from inside a PACKAGED. */
export interface BareCommandItem {
  kind: 'open-return-path' | 'listen' | 'run' | 'postcopy-resume' | 'switchover-start';
  offset: number;
  inPackage: boolean;
}

export interface PingItem {
  kind: 'ping';
  offset: number;
  value: number;
  inPackage: boolean;
}

export interface AdviseItem {
  kind: 'advise';
  offset: number;
  advise: Advise;
}

export interface RamDiscardItem {
  kind: 'ram-discard';
  offset: number;
  discard: RamDiscard;
}

/**
 * PACKAGED: the command itself (`length`: the L bytes that follow). The decoder then
 * hands out what the package held, in order: a LISTEN, a device-state, a PING and a RUN.
 */
export interface PackagedItem {
  kind: 'packaged';
  offset: number;
  length: number;
}

/**
 * The device state inside a package (SECTION_FULL items of every device but RAM), as opaque
 * bytes. Same validity as PageItem.data.
 */
export interface DeviceStateItem {
  kind: 'device-state';
  offset: number;
  bytes: Uint8Array;
}

/** RECV_BITMAP command (recovery): the source asks for one block's receive bitmap. */
export interface RecvBitmapRequestItem {
  kind: 'recv-bitmap-request';
  offset: number;
  blockName: string;
}

export interface EofItem {
  kind: 'eof';
  offset: number;
}

export type MainItem =
  | HeaderItem
  | ConfigurationItem
  | SectionStartItem
  | SectionPartItem
  | SectionFooterItem
  | MemSizeItem
  | PageItem
  | ZeroPageItem
  | EndOfSectionItem
  | BareCommandItem
  | PingItem
  | AdviseItem
  | RamDiscardItem
  | PackagedItem
  | DeviceStateItem
  | RecvBitmapRequestItem
  | EofItem;

export type MainItemKind = MainItem['kind'];

// ---------------------------------------------------------------------------
// Return path (destination -> source)

/** SHUT: the destination is done (status 0) or failed. */
export interface ShutItem {
  kind: 'shut';
  offset: number;
  status: number;
}

export interface PongItem {
  kind: 'pong';
  offset: number;
  value: number;
}

/** REQ_PAGES_ID (`named`) or REQ_PAGES; `block` is always filled in (tracked by the decoder). */
export interface PageRequestItem {
  kind: 'page-request';
  offset: number;
  block: string;
  named: boolean;
  start: number;
  length: number;
}

/**
 * RECV_BITMAP with the blob that follows its frame: `bitmap` is the N bytes of
 * little-endian 64-bit words (bit = target page received); the end mark was checked.
 * Same validity as PageItem.data.
 */
export interface RecvBitmapItem {
  kind: 'recv-bitmap';
  offset: number;
  blockName: string;
  bitmap: Uint8Array;
}

export interface ResumeAckItem {
  kind: 'resume-ack';
  offset: number;
  value: number;
}

export interface SwitchoverAckItem {
  kind: 'switchover-ack';
  offset: number;
}

export type ReturnPathItem = ShutItem | PongItem | PageRequestItem | RecvBitmapItem | ResumeAckItem | SwitchoverAckItem;
export type ReturnPathItemKind = ReturnPathItem['kind'];

/** For exhaustive switches: a kind no case handled is a compile error. */
export function assertNever(value: never, what: string): never {
  throw new Error(`unhandled ${what}: ${JSON.stringify(value)}`);
}
