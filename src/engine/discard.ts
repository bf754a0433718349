/**
 * The destination's handling of a decoded POSTCOPY_RAM_DISCARD (reference section 1):
 * validate the whole command first, then clear the receive bits of its ranges. Dropping the
 * memory (backend.discard), moving the PostcopyState to DISCARD and turning huge pages off
 * on the first discard are the engine's to do, from the returned plan: this module touches
 * nothing but receive bitmaps, so a journal replay can run it unchanged.
 */
import { POSTCOPY_STATE_NAMES, PostcopyState, TARGET_PAGE_SIZE, type PostcopyStateValue } from './constants.js';
import type { RamBlock } from './ramBlock.js';
import type { RamDiscard } from './wire.js';
import { BadRangeError, UnknownBlockError, WrongStateError } from '../errors.js';

/** The context named in every error of this module. */
export const DISCARD_COMMAND = 'RAM_DISCARD';

/** One validated range to drop from memory: bytes within block `block` (its index). */
export interface DiscardRange {
  block: number;
  start: number;
  length: number;
}

/** What the engine must do for a discard command. */
export interface DiscardPlan {
  /** The PostcopyState after the command: always DISCARD. */
  nextState: typeof PostcopyState.DISCARD;
  /** The first discard (state was ADVISE): turn huge pages off on every block. */
  firstDiscard: boolean;
  /** Validated ranges, in command order; call backend.discard for each. */
  ranges: DiscardRange[];
}

/**
 * pure: validates a discard command against the state and the blocks, without changing
 * anything. Throws WrongStateError unless the state is ADVISE or DISCARD, UnknownBlockError
 * for a name that matches no block, BadRangeError for a range that is empty, not aligned to
 * the target page, or past the block's postcopy length.
 */
export function planDiscard(state: number, blocks: readonly RamBlock[], discard: RamDiscard): DiscardPlan {
  if (state !== PostcopyState.ADVISE && state !== PostcopyState.DISCARD) {
    throw new WrongStateError('postcopy', DISCARD_COMMAND, postcopyStateName(state));
  }
  const block = blocks.find((b) => b.name === discard.blockName);
  if (block === undefined) throw new UnknownBlockError(discard.blockName, DISCARD_COMMAND);
  const ranges: DiscardRange[] = discard.ranges.map(([start, length]) => {
    block.checkRange(start, length, block.postcopyLength, DISCARD_COMMAND);
    if (length === 0) {
      throw new BadRangeError(block.name, start, length, `${DISCARD_COMMAND}: RAM block '${block.name}': range at 0x${start.toString(16)} is empty`);
    }
    return { block: block.index, start, length };
  });
  return { nextState: PostcopyState.DISCARD, firstDiscard: state === PostcopyState.ADVISE, ranges };
}

/**
 * Validates the whole command (as `planDiscard`), then clears the receive bits of every
 * range. Either every range is applied or, on an error, nothing changed.
 */
export function applyDiscard(state: number, blocks: readonly RamBlock[], discard: RamDiscard): DiscardPlan {
  const plan = planDiscard(state, blocks, discard);
  clearReceived(blocks, plan.ranges);
  return plan;
}

/**
 * Clears the receive bits of validated ranges (from `planDiscard`, e.g. during replay).
 * `blocks` is in index order (as createRamBlocks builds it).
 */
export function clearReceived(blocks: readonly RamBlock[], ranges: readonly DiscardRange[]): void {
  for (const r of ranges) {
    blocks[r.block]!.received.clearRange(r.start / TARGET_PAGE_SIZE, r.length / TARGET_PAGE_SIZE);
  }
}

/** pure: 'ADVISE' for 1 and so on; an unknown value reads 'unknown (n)'. */
export function postcopyStateName(state: number): string {
  return POSTCOPY_STATE_NAMES[state as PostcopyStateValue] ?? `unknown (${state})`;
}
