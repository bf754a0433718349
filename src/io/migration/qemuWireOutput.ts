/**
 * The source's side of QEMU's migration wire: the `SourceOutput` of the engine's `Source`
 * (src/engine/source.ts) written as QEMU's stream, in the order a QEMU 7.2 postcopy source
 * sends it (reference qemu-wire.md "What a postcopy migration sends, in order"):
 *
 * 1. header, CONFIGURATION, OPEN_RETURN_PATH, PING 1, POSTCOPY_ADVISE;
 * 2. SECTION_START ram: MEM_SIZE with the block list, EOS, footer;
 * 3. precopy: SECTION_PART ram, pages, EOS, footer (one part per `endSection()`);
 * 4. the switch: one POSTCOPY_RAM_DISCARD per command, PING, PACKAGED(LISTEN, device state,
 *    PING, RUN), PING;
 * 5. postcopy: SECTION_PART ram records, with PINGs between parts (flow control), then
 *    SECTION_END ram, EOS, footer, EOF.
 *
 * Urgent pages go to the preempt channel when there is one: RAM records only, closed by one
 * EOS. A resumed main connection starts with RECV_BITMAP commands (no header) and goes on
 * with the same section id. Pure of I/O: bytes go out through `write(channel, bytes)`.
 */
import { MigCommand, TARGET_PAGE_SIZE } from '../../engine/constants.js';
import {
  configuration,
  endOfSection,
  endOfStream,
  memSize,
  packaged,
  ping,
  RamRecordEncoder,
  recvBitmapRequest,
  sectionEnd,
  sectionFooter,
  sectionPart,
  sectionStart,
  streamHeader,
  RAM_SECTION,
  type RamBlockInfo,
} from '../../engine/qemuWire/index.js';
import type { SourceOutput } from '../../engine/source.js';
import { encodeCommandFrame } from '../../engine/wire.js';

/** The CONFIGURATION machine type our source announces (QEMU: "pc-i440fx-7.2"). */
export const OWN_MACHINE_TYPE = 'postcopy-engine';
/** The RAM section's id and version, as QEMU 7.2 numbers them (version 4). */
const RAM_SECTION_ID = 2;
const RAM_SECTION_VERSION = 4;
/** Our simulated guest has no devices: the package's device state is empty. */
const NO_DEVICE_STATE = new Uint8Array(0);

export class QemuWireOutput implements SourceOutput {
  private sectionOpen = false;
  private readonly records = [new RamRecordEncoder(), new RamRecordEncoder()];
  private listenPending = false;
  private nextPing = 1;
  /** The PING inside the package: its PONG says the destination has read LISTEN. */
  listenPing = -1;
  /** Pages written on the main channel (what PONGs are counted against). */
  mainPages = 0;
  /** Main pages written before each PING went out, by PING value. */
  private readonly pagesAtPing = new Map<number, number>();

  constructor(
    private readonly blocks: readonly RamBlockInfo[],
    private readonly write: (channel: 0 | 1, bytes: Uint8Array) => void,
    private readonly preempt: boolean,
  ) {}

  /** The first bytes of a first main connection: header and CONFIGURATION. */
  start(): void {
    this.write(0, streamHeader());
    this.write(0, configuration(OWN_MACHINE_TYPE));
  }

  /** A new connection on `channel` (after a break): its records name their block again. */
  newConnection(channel: 0 | 1): void {
    this.records[channel]!.forget();
    if (channel === 0) this.sectionOpen = false;
  }

  /** A resumed main connection's first commands: one RECV_BITMAP per block. */
  requestReceiveBitmaps(): void {
    for (const b of this.blocks) this.write(0, recvBitmapRequest(b.name));
  }

  /** Closes the RAM section part under way (EOS, footer), e.g. at the end of a precopy round. */
  endSection(): void {
    if (!this.sectionOpen) return;
    this.write(0, endOfSection());
    this.write(0, sectionFooter(RAM_SECTION_ID));
    this.sectionOpen = false;
  }

  /**
   * A PING now (between section parts); returns its value. Its PONG says the destination
   * read everything before it: `pagesBefore(value)` main pages.
   */
  sendPing(): number {
    this.endSection();
    const value = this.nextPing++;
    this.pagesAtPing.set(value, this.mainPages);
    this.write(0, ping(value));
    return value;
  }

  /** Main pages written before PING `value` (undefined for a value never sent); forgets older PINGs. */
  pagesBefore(value: number): number | undefined {
    const pages = this.pagesAtPing.get(value);
    for (const v of this.pagesAtPing.keys()) if (v <= value) this.pagesAtPing.delete(v);
    return pages;
  }

  command(command: number, payload: Uint8Array): void {
    switch (command) {
      case MigCommand.OPEN_RETURN_PATH:
        this.endSection();
        this.write(0, encodeCommandFrame(command, payload));
        this.sendPing();
        return;
      case MigCommand.POSTCOPY_ADVISE: {
        this.endSection();
        this.write(0, encodeCommandFrame(command, payload));
        // The RAM section opens after ADVISE: MEM_SIZE, then the section's EOS and footer.
        this.write(0, sectionStart(RAM_SECTION_ID, RAM_SECTION, 0, RAM_SECTION_VERSION));
        this.write(0, memSize(this.blocks));
        this.write(0, endOfSection());
        this.write(0, sectionFooter(RAM_SECTION_ID));
        return;
      }
      case MigCommand.POSTCOPY_LISTEN:
        // LISTEN travels inside the package that RUN closes; a PING goes before it.
        this.sendPing();
        this.listenPending = true;
        return;
      case MigCommand.POSTCOPY_RUN: {
        if (!this.listenPending) throw new Error('POSTCOPY_RUN without a POSTCOPY_LISTEN before it');
        this.listenPending = false;
        this.listenPing = this.nextPing++;
        this.pagesAtPing.set(this.listenPing, this.mainPages);
        for (const piece of packaged(NO_DEVICE_STATE, this.listenPing)) this.write(0, piece);
        this.sendPing();
        return;
      }
      default:
        this.endSection();
        this.write(0, encodeCommandFrame(command, payload));
    }
  }

  page(channel: number, block: number, offset: number, zero: boolean, data: Uint8Array, dataOffset: number): void {
    const ch: 0 | 1 = channel === 1 && this.preempt ? 1 : 0;
    if (ch === 0) {
      if (!this.sectionOpen) {
        this.write(0, sectionPart(RAM_SECTION_ID));
        this.sectionOpen = true;
      }
      this.mainPages++;
    }
    const name = this.blocks[block]!.name;
    const records = this.records[ch]!;
    if (zero) {
      this.write(ch, records.zero(name, offset));
      return;
    }
    // Header and page as two writes without a copy: the caller corks the socket around a
    // batch, so a batch leaves in one writev.
    this.write(ch, records.page(name, offset));
    this.write(ch, data.subarray(dataOffset, dataOffset + TARGET_PAGE_SIZE));
  }

  endOfStream(channel: number): void {
    if (channel === 1) {
      if (this.preempt) this.write(1, endOfSection());
      return;
    }
    this.endSection();
    this.write(0, sectionEnd(RAM_SECTION_ID));
    this.write(0, endOfSection());
    this.write(0, sectionFooter(RAM_SECTION_ID));
    this.write(0, endOfStream());
  }
}
