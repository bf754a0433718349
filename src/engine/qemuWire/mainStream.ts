/**
 * Decoder of the main migration stream (source -> destination), a first connection or a
 * resumed one. See docs/qemu-wire.md for the items and the errors.
 */
import { MigCommand, QEMU_VM_COMMAND, TARGET_PAGE_SIZE } from '../constants.js';
import { decodeAdvise, decodeRamDiscard, decodeRecvBitmapRequest, type Advise } from '../wire.js';
import {
  RAM_SECTION,
  RamFlag,
  SectionType,
  STREAM_MAGIC,
  STREAM_VERSION,
  type MainItem,
  type MemSizeItem,
  type RamBlockInfo,
} from './items.js';
import { be16, be32, hex, NOT_A_PAGE, StreamDecoder } from './streamDecoder.js';

/** What a resumed connection takes over from the first one (MainStreamDecoder.state()). */
export interface MainStreamState {
  /** section id -> idstr, from the SECTION_STARTs seen. */
  sections: ReadonlyMap<number, string>;
  /** The blocks of MEM_SIZE. */
  blocks: readonly RamBlockInfo[];
  /** The block of the last PAGE/ZERO record (what a CONTINUE refers to), or null. */
  lastBlock: string | null;
  /** The POSTCOPY_ADVISE seen, or null. */
  advise: Advise | null;
}

export interface MainStreamOptions {
  /**
   * This is a resumed connection (`migrate resume=true`): no header; section ids, blocks
   * and the CONTINUE block go on from the first connection's `state()`.
   */
  resume?: MainStreamState;
  /**
   * Blocks whose page size differs from the host's (huge pages): after POSTCOPY_ADVISE,
   * MEM_SIZE carries their page size. Needed only when ADVISE says such blocks exist.
   */
  blocksWithOwnPageSize?: ReadonlySet<string>;
  /** Largest PACKAGED accepted (the package is buffered whole); default 64 MiB. */
  maxPackageBytes?: number;
}

const enum Phase {
  HEADER,
  TOP,
  RAM_DATA,
  FOOTER,
  DONE,
}

const LISTEN_FRAME = [QEMU_VM_COMMAND, 0, MigCommand.POSTCOPY_LISTEN, 0, 0];
const RUN_FRAME = [QEMU_VM_COMMAND, 0, MigCommand.POSTCOPY_RUN, 0, 0];
const PING_FRAME_HEAD = [QEMU_VM_COMMAND, 0, MigCommand.PING, 0, 4];
const PING_FRAME_BYTES = 9;
const BARE_FRAME_BYTES = 5;
/** LISTEN + PING + RUN: the smallest package. */
const MIN_PACKAGE = BARE_FRAME_BYTES + PING_FRAME_BYTES + BARE_FRAME_BYTES;
const DEFAULT_MAX_PACKAGE = 64 * 1024 * 1024;
/** More RAM blocks than any machine has: a MEM_SIZE listing more is garbage. */
const MAX_BLOCKS = 4096;
/** Machine type names are short; a longer CONFIGURATION length is garbage. */
const MAX_CONFIGURATION_NAME = 256;

const COMMAND_NAMES: Record<number, string> = {
  1: 'OPEN_RETURN_PATH',
  2: 'PING',
  3: 'POSTCOPY_ADVISE',
  4: 'POSTCOPY_LISTEN',
  5: 'POSTCOPY_RUN',
  6: 'POSTCOPY_RAM_DISCARD',
  7: 'PACKAGED',
  8: 'ENABLE_COLO',
  9: 'POSTCOPY_RESUME',
  10: 'RECV_BITMAP',
  11: 'SWITCHOVER_START',
};

const TYPE_NAMES: Record<number, string> = {
  0x00: 'EOF',
  0x01: 'SECTION_START',
  0x02: 'SECTION_PART',
  0x03: 'SECTION_END',
  0x04: 'SECTION_FULL',
  0x05: 'SUBSECTION',
  0x07: 'CONFIGURATION',
  0x08: 'COMMAND',
  0x7e: 'SECTION_FOOTER',
};

export class MainStreamDecoder extends StreamDecoder<MainItem> {
  protected readonly streamName = 'main stream';
  private phase: Phase;
  private readonly sections = new Map<number, string>();
  /** The section whose data (or footer) is being read. */
  private currentSection = -1;
  private advise: Advise | null = null;
  private readonly ownPageSize: ReadonlySet<string>;
  private readonly maxPackageBytes: number;

  constructor(options: MainStreamOptions = {}) {
    super();
    this.ownPageSize = options.blocksWithOwnPageSize ?? new Set();
    this.maxPackageBytes = options.maxPackageBytes ?? DEFAULT_MAX_PACKAGE;
    const resume = options.resume;
    if (resume === undefined) {
      this.phase = Phase.HEADER;
      return;
    }
    this.phase = Phase.TOP;
    for (const [id, idstr] of resume.sections) this.sections.set(id, idstr);
    for (const block of resume.blocks) this.blocks.set(block.name, block);
    this.lastBlock = resume.lastBlock === null ? null : (this.blocks.get(resume.lastBlock) ?? { name: resume.lastBlock, usedLength: Number.MAX_SAFE_INTEGER });
    this.advise = resume.advise;
  }

  /** What a resumed connection needs from this one (see MainStreamOptions.resume). */
  state(): MainStreamState {
    return {
      sections: new Map(this.sections),
      blocks: [...this.blocks.values()],
      lastBlock: this.lastBlock?.name ?? null,
      advise: this.advise,
    };
  }

  /** True once EOF was read. */
  get finished(): boolean {
    return this.phase === Phase.DONE;
  }

  protected parseItem(b: Uint8Array, pos: number, end: number): number {
    switch (this.phase) {
      case Phase.RAM_DATA:
        return this.parseRamRecord(b, pos, end);
      case Phase.TOP:
        return this.parseTop(b, pos, end);
      case Phase.FOOTER:
        return this.parseFooter(b, pos, end);
      case Phase.HEADER:
        return this.parseHeader(b, pos, end);
      case Phase.DONE:
        throw this.fail('malformed', this.at(pos), `byte ${hex(b[pos]!)} after EOF`);
    }
  }

  private parseHeader(b: Uint8Array, pos: number, end: number): number {
    // Check the magic byte by byte, so that "GET / HTTP/1.1" fails at its first byte
    // rather than waiting for 8 bytes that may never come.
    // The error names the bytes up to the first wrong one only, so that it does not depend
    // on how many bytes the first chunk happened to hold.
    const magic = [STREAM_MAGIC >>> 24, (STREAM_MAGIC >>> 16) & 0xff, (STREAM_MAGIC >>> 8) & 0xff, STREAM_MAGIC & 0xff];
    for (let i = 0; i < 4 && pos + i < end; i++) {
      if (b[pos + i] !== magic[i]) {
        const found = Array.from(b.subarray(pos, pos + i + 1), (c) => c.toString(16).padStart(2, '0')).join(' ');
        const ascii = b[pos + i]! >= 0x20 && b[pos + i]! < 0x7f ? ` ('${String.fromCharCode(b[pos + i]!)}')` : '';
        throw this.fail('bad-magic', this.at(pos + i), `stream starts with ${found}${ascii}, not the magic 51 45 56 4d ("QEVM")`);
      }
    }
    if (end - pos < 8) return this.needMore(8);
    const version = be32(b, pos + 4);
    if (version !== STREAM_VERSION) {
      throw this.fail('bad-version', this.at(pos + 4), `stream version ${version}, only ${STREAM_VERSION} is supported`);
    }
    this.out.push({ kind: 'header', offset: this.at(pos), version });
    this.phase = Phase.TOP;
    return pos + 8;
  }

  private parseTop(b: Uint8Array, pos: number, end: number): number {
    const type = b[pos]!;
    switch (type) {
      case SectionType.COMMAND:
        return this.parseCommand(b, pos, end);
      case SectionType.SECTION_PART:
      case SectionType.SECTION_END: {
        if (end - pos < 5) return this.needMore(5);
        const sectionId = be32(b, pos + 1);
        const idstr = this.sections.get(sectionId);
        if (idstr === undefined) throw this.fail('malformed', this.at(pos + 1), `${TYPE_NAMES[type]} for section id ${sectionId}, which no SECTION_START opened`);
        this.out.push({ kind: type === SectionType.SECTION_PART ? 'section-part' : 'section-end', offset: this.at(pos), sectionId, idstr });
        this.enterSection(sectionId);
        return pos + 5;
      }
      case SectionType.SECTION_START:
      case SectionType.SECTION_FULL: {
        if (end - pos < 6) return this.needMore(6);
        const sectionId = be32(b, pos + 1);
        const n = b[pos + 5]!;
        if (n === 0) throw this.fail('malformed', this.at(pos + 5), 'section idstr of length 0');
        if (end - pos < 6 + n + 8) return this.needMore(6 + n + 8);
        const idstr = this.name(b, pos + 6, n, 'section idstr');
        if (idstr !== RAM_SECTION) {
          throw this.fail('unsupported', this.at(pos), `${TYPE_NAMES[type]} of section '${idstr}': only '${RAM_SECTION}' has a format this decoder parses outside a PACKAGED`);
        }
        const instanceId = be32(b, pos + 6 + n);
        const versionId = be32(b, pos + 10 + n);
        this.out.push({ kind: type === SectionType.SECTION_START ? 'section-start' : 'section-full', offset: this.at(pos), sectionId, idstr, instanceId, versionId });
        this.sections.set(sectionId, idstr);
        this.enterSection(sectionId);
        return pos + 14 + n;
      }
      case SectionType.CONFIGURATION: {
        if (end - pos < 5) return this.needMore(5);
        const n = be32(b, pos + 1);
        if (n === 0 || n > MAX_CONFIGURATION_NAME) throw this.fail('malformed', this.at(pos + 1), `CONFIGURATION name length ${n}, expected 1 to ${MAX_CONFIGURATION_NAME}`);
        if (end - pos < 5 + n) return this.needMore(5 + n);
        this.out.push({ kind: 'configuration', offset: this.at(pos), machineType: this.name(b, pos + 5, n, 'machine type') });
        return pos + 5 + n;
      }
      case SectionType.EOF:
        this.out.push({ kind: 'eof', offset: this.at(pos) });
        this.phase = Phase.DONE;
        return pos + 1;
      case SectionType.SECTION_FOOTER:
      case SectionType.SUBSECTION:
        throw this.fail('malformed', this.at(pos), `${TYPE_NAMES[type]} (${hex(type)}) outside a section`);
      default:
        throw this.fail('unsupported', this.at(pos), `unknown section type byte ${hex(type)}`);
    }
  }

  private enterSection(sectionId: number): void {
    this.currentSection = sectionId;
    this.phase = Phase.RAM_DATA;
  }

  private parseFooter(b: Uint8Array, pos: number, end: number): number {
    if (b[pos] !== SectionType.SECTION_FOOTER) {
      throw this.fail('malformed', this.at(pos), `expected SECTION_FOOTER (0x7e) after EOS of section ${this.currentSection}, found ${hex(b[pos]!)}`);
    }
    if (end - pos < 5) return this.needMore(5);
    const sectionId = be32(b, pos + 1);
    if (sectionId !== this.currentSection) {
      throw this.fail('malformed', this.at(pos + 1), `footer names section ${sectionId}, the section being read is ${this.currentSection}`);
    }
    this.out.push({ kind: 'section-footer', offset: this.at(pos), sectionId });
    this.phase = Phase.TOP;
    return pos + 5;
  }

  private parseRamRecord(b: Uint8Array, pos: number, end: number): number {
    const next = this.parseRamPage(b, pos, end);
    if (next !== NOT_A_PAGE) return next;
    const flags = be32(b, pos + 4) & 0xfff;
    if (flags === RamFlag.EOS) {
      if (be32(b, pos) !== 0 || be32(b, pos + 4) !== RamFlag.EOS) {
        throw this.fail('malformed', this.at(pos), 'EOS record with a nonzero offset');
      }
      this.out.push({ kind: 'eos', offset: this.at(pos) });
      this.phase = Phase.FOOTER;
      return pos + 8;
    }
    if (flags === RamFlag.MEM_SIZE) return this.parseMemSize(b, pos, end);
    throw this.ramFlagsError(b, pos, `in section ${this.currentSection}`);
  }

  /** MEM_SIZE: the total, then blocks until their used lengths add up to it. */
  private parseMemSize(b: Uint8Array, pos: number, end: number): number {
    const totalBytes = this.be64(b, pos, 'MEM_SIZE total') - RamFlag.MEM_SIZE;
    // Page sizes travel only after ADVISE, and only for blocks whose page size is not the
    // host's; an ADVISE summary equal to the target page size says there are none.
    const pageSizesMayTravel = this.advise !== null && this.advise.hostPageSizeSummary !== this.advise.targetPageSize;
    if (pageSizesMayTravel && this.ownPageSize.size === 0) {
      throw this.fail('unsupported', this.at(pos), `MEM_SIZE after an ADVISE whose page size summary ${hex(this.advise!.hostPageSizeSummary)} says some blocks use their own page size; pass blocksWithOwnPageSize to decode it`);
    }
    if (totalBytes === 0 || totalBytes % TARGET_PAGE_SIZE !== 0) {
      throw this.fail('malformed', this.at(pos), `MEM_SIZE total ${totalBytes} is not a positive multiple of ${TARGET_PAGE_SIZE}`);
    }
    const blocks: RamBlockInfo[] = [];
    const names = new Set<string>();
    let sum = 0;
    let p = pos + 8;
    while (sum < totalBytes) {
      // A bound, so that garbage cannot make the decoder buffer without end.
      if (blocks.length === MAX_BLOCKS) throw this.fail('malformed', this.at(p), `MEM_SIZE lists more than ${MAX_BLOCKS} blocks before its total is reached`);
      if (end - p < 1) return this.needMore(p - pos + 1);
      const n = b[p]!;
      if (n === 0) throw this.fail('malformed', this.at(p), 'MEM_SIZE block name of length 0');
      if (end - p < 1 + n + 8) return this.needMore(p - pos + 1 + n + 8);
      const name = this.name(b, p + 1, n, 'MEM_SIZE block name');
      if (names.has(name)) throw this.fail('malformed', this.at(p), `MEM_SIZE lists block '${name}' twice`);
      const usedLengthAt = p + 1 + n;
      const usedLength = this.be64(b, usedLengthAt, `used length of block '${name}'`);
      if (usedLength % TARGET_PAGE_SIZE !== 0 || usedLength === 0) {
        throw this.fail('malformed', this.at(usedLengthAt), `block '${name}' used length ${usedLength} is not a positive multiple of ${TARGET_PAGE_SIZE}`);
      }
      p = usedLengthAt + 8;
      const block: RamBlockInfo = { name, usedLength };
      if (pageSizesMayTravel && this.ownPageSize.has(name)) {
        if (end - p < 8) return this.needMore(p - pos + 8);
        block.pageSize = this.be64(b, p, `page size of block '${name}'`);
        p += 8;
      }
      names.add(name);
      blocks.push(block);
      sum += usedLength;
    }
    if (sum !== totalBytes) {
      throw this.fail('malformed', this.at(pos), `MEM_SIZE blocks add up to ${sum} bytes, past the total ${totalBytes}`);
    }
    const item: MemSizeItem = { kind: 'mem-size', offset: this.at(pos), totalBytes, blocks };
    this.out.push(item);
    this.blocks.clear();
    for (const block of blocks) this.blocks.set(block.name, block);
    this.lastBlock = null;
    return p;
  }

  private parseCommand(b: Uint8Array, pos: number, end: number): number {
    if (end - pos < 5) return this.needMore(5);
    const command = be16(b, pos + 1);
    const length = be16(b, pos + 3);
    const payloadAt = pos + 5;
    const name = COMMAND_NAMES[command];
    if (name === undefined) throw this.fail('unsupported', this.at(pos + 1), `unknown command ${command} (length ${length})`);
    if (command === MigCommand.ENABLE_COLO) throw this.fail('unsupported', this.at(pos + 1), 'command ENABLE_COLO (8): COLO is not supported');
    const expected = fixedLength(command);
    if (expected !== null && length !== expected) {
      throw this.fail('malformed', this.at(pos + 3), `${name} with payload length ${length}, expected ${expected}`);
    }
    if (end - pos < 5 + length) return this.needMore(5 + length);
    const offset = this.at(pos);
    const payload = b.subarray(payloadAt, payloadAt + length);
    switch (command) {
      case MigCommand.OPEN_RETURN_PATH:
        this.out.push({ kind: 'open-return-path', offset, inPackage: false });
        break;
      case MigCommand.PING:
        this.out.push({ kind: 'ping', offset, value: be32(b, payloadAt), inPackage: false });
        break;
      case MigCommand.POSTCOPY_ADVISE: {
        const advise = this.payload(payloadAt, () => decodeAdvise(payload));
        this.advise = advise;
        this.out.push({ kind: 'advise', offset, advise });
        break;
      }
      case MigCommand.POSTCOPY_LISTEN:
        this.out.push({ kind: 'listen', offset, inPackage: false });
        break;
      case MigCommand.POSTCOPY_RUN:
        this.out.push({ kind: 'run', offset, inPackage: false });
        break;
      case MigCommand.POSTCOPY_RAM_DISCARD:
        this.out.push({ kind: 'ram-discard', offset, discard: this.payload(payloadAt, () => decodeRamDiscard(payload)) });
        break;
      case MigCommand.PACKAGED:
        return this.parsePackaged(b, pos, end);
      case MigCommand.POSTCOPY_RESUME:
        this.out.push({ kind: 'postcopy-resume', offset, inPackage: false });
        break;
      case MigCommand.RECV_BITMAP:
        this.out.push({ kind: 'recv-bitmap-request', offset, blockName: this.payload(payloadAt, () => decodeRecvBitmapRequest(payload)) });
        break;
      case MigCommand.SWITCHOVER_START:
        this.out.push({ kind: 'switchover-start', offset, inPackage: false });
        break;
      default:
        throw new Error(`command ${name} has a name but no case`);
    }
    return payloadAt + length;
  }

  /**
   * PACKAGED: be32 L, then L bytes = LISTEN, device state, PING, RUN. The LISTEN is found
   * at the start, PING and RUN from the end; the device state between them is opaque.
   */
  private parsePackaged(b: Uint8Array, pos: number, end: number): number {
    if (end - pos < 9) return this.needMore(9);
    const length = be32(b, pos + 5);
    if (length < MIN_PACKAGE || length > this.maxPackageBytes) {
      throw this.fail('malformed', this.at(pos + 5), `PACKAGED length ${length}, expected ${MIN_PACKAGE} to ${this.maxPackageBytes} bytes`);
    }
    const body = pos + 9;
    // The LISTEN can be checked before the whole package is in.
    this.expectFrame(b, body, Math.min(end, body + BARE_FRAME_BYTES), LISTEN_FRAME, 'PACKAGED does not start with POSTCOPY_LISTEN (08 0004 0000)');
    if (end - pos < 9 + length) return this.needMore(9 + length);
    const runAt = body + length - BARE_FRAME_BYTES;
    const pingAt = runAt - PING_FRAME_BYTES;
    this.expectFrame(b, runAt, runAt + BARE_FRAME_BYTES, RUN_FRAME, 'PACKAGED does not end with POSTCOPY_RUN (08 0005 0000)');
    this.expectFrame(b, pingAt, pingAt + 5, PING_FRAME_HEAD, 'PACKAGED has no PING (08 0002 0004 + be32) before its final RUN');
    const deviceAt = body + BARE_FRAME_BYTES;
    this.out.push(
      { kind: 'packaged', offset: this.at(pos), length },
      { kind: 'listen', offset: this.at(body), inPackage: true },
      { kind: 'device-state', offset: this.at(deviceAt), bytes: b.subarray(deviceAt, pingAt) },
      { kind: 'ping', offset: this.at(pingAt), value: be32(b, pingAt + 5), inPackage: true },
      { kind: 'run', offset: this.at(runAt), inPackage: true },
    );
    return body + length;
  }

  private expectFrame(b: Uint8Array, from: number, to: number, frame: readonly number[], what: string): void {
    for (let i = from; i < to; i++) {
      if (b[i] !== frame[i - from]) throw this.fail('malformed', this.at(i), `${what}: found ${hex(b[i]!)} where ${hex(frame[i - from]!)} belongs`);
    }
  }

  protected override checkCleanEnd(): void {
    if (this.phase === Phase.DONE) return;
    const where =
      this.phase === Phase.HEADER
        ? 'the stream header (no byte arrived)'
        : this.phase === Phase.TOP
          ? 'the stream, between items, before EOF'
          : this.phase === Phase.RAM_DATA
            ? `the data of section ${this.currentSection}, between records, before EOS`
            : `section ${this.currentSection}, between its EOS and its footer`;
    throw this.fail('cut', this.bytesReceived, where);
  }

  protected describePartial(bytes: Uint8Array, offset: number): string {
    switch (this.phase) {
      case Phase.HEADER:
        return `the stream header (${bytes.length} of its 8 bytes arrived)`;
      case Phase.RAM_DATA:
        return this.describePartialRecord(bytes, offset);
      case Phase.FOOTER:
        return `the footer of section ${this.currentSection} that started at byte ${offset}`;
      case Phase.TOP:
      case Phase.DONE: {
        const type = bytes[0]!;
        const command = type === SectionType.COMMAND && bytes.length >= 3 ? ` ${COMMAND_NAMES[be16(bytes, 1)] ?? 'unknown'}` : '';
        return `a ${TYPE_NAMES[type] ?? hex(type)}${command} item that started at byte ${offset} (${bytes.length} of its bytes arrived)`;
      }
    }
  }
}

/** Payload length a command must have, or null when it varies. */
function fixedLength(command: number): number | null {
  switch (command) {
    case MigCommand.OPEN_RETURN_PATH:
    case MigCommand.POSTCOPY_LISTEN:
    case MigCommand.POSTCOPY_RUN:
    case MigCommand.POSTCOPY_RESUME:
    case MigCommand.SWITCHOVER_START:
      return 0;
    case MigCommand.PING:
    case MigCommand.PACKAGED:
      return 4;
    case MigCommand.POSTCOPY_ADVISE:
      return 16;
    default:
      return null;
  }
}

