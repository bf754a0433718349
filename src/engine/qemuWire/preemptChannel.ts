/**
 * Decoder of the preempt channel (capability postcopy-preempt): a second connection from
 * the source with no header and no section framing, only PAGE and ZERO records (with their
 * block name or CONTINUE), the answers to urgent page requests. In every 7.2 capture the
 * source closes the channel with one EOS record (8 bytes, flags 0x10), which the reference
 * does not mention: it is accepted as the channel's last item. QEMU 10.0 sends no EOS there.
 */
import { RamFlag, type PreemptItem, type RamBlockInfo } from './items.js';
import { be32, hex, NOT_A_PAGE, StreamDecoder } from './streamDecoder.js';

export interface PreemptChannelOptions {
  /** The blocks of the main stream's MEM_SIZE: records are then checked against them. */
  blocks?: readonly RamBlockInfo[];
}

export class PreemptChannelDecoder extends StreamDecoder<PreemptItem> {
  protected readonly streamName = 'preempt channel';

  constructor(options: PreemptChannelOptions = {}) {
    super();
    for (const block of options.blocks ?? []) this.blocks.set(block.name, block);
  }

  private closed = false;

  protected parseItem(b: Uint8Array, pos: number, end: number): number {
    if (this.closed) throw this.fail('malformed', this.at(pos), `byte ${hex(b[pos]!)} after the channel's EOS`);
    const next = this.parseRamPage(b, pos, end);
    if (next !== NOT_A_PAGE) return next;
    if (be32(b, pos) === 0 && be32(b, pos + 4) === RamFlag.EOS) {
      this.out.push({ kind: 'eos', offset: this.at(pos) });
      this.closed = true;
      return pos + 8;
    }
    throw this.ramFlagsError(b, pos, 'on the preempt channel (only PAGE and ZERO, with or without CONTINUE, and a final EOS)');
  }

  protected describePartial(bytes: Uint8Array, offset: number): string {
    return this.describePartialRecord(bytes, offset);
  }
}
