/** Sizes and numbers fixed by the reference (postcopy.md) and shared by every module. */

/** A target page: the unit of the receive bitmap and of page transfer (section 0). */
export const TARGET_PAGE_SIZE = 4096;
export const TARGET_PAGE_BITS = 12;

/** PostcopyState's numbers live beside the machine that decides it; re-exported for the data plane. */
export { PostcopyState, POSTCOPY_STATE_NAMES, type PostcopyStateName, type PostcopyStateValue } from '../../machines/postcopyState.js';

/** Channels (section 2): the main stream and the preempt channel for urgent pages. */
export const Channel = { PRECOPY: 0, POSTCOPY: 1 } as const;
export type ChannelValue = (typeof Channel)[keyof typeof Channel];

/** At most this many ranges per RAM_DISCARD command (section 7). */
export const MAX_DISCARD_RANGES_PER_COMMAND = 12;

/** Command numbers of the QEMU_VM_COMMAND frame (section 8). */
export const MigCommand = {
  OPEN_RETURN_PATH: 1,
  PING: 2,
  POSTCOPY_ADVISE: 3,
  POSTCOPY_LISTEN: 4,
  POSTCOPY_RUN: 5,
  POSTCOPY_RAM_DISCARD: 6,
  PACKAGED: 7,
  ENABLE_COLO: 8,
  POSTCOPY_RESUME: 9,
  RECV_BITMAP: 10,
  /** QEMU 10.x: sent just before the discards (qemu-wire.md). */
  SWITCHOVER_START: 11,
} as const;
export const QEMU_VM_COMMAND = 0x08;

/** Return-path message types (section 8). */
export const RpMessage = {
  SHUT: 1,
  PONG: 2,
  REQ_PAGES_ID: 3,
  REQ_PAGES: 4,
  RECV_BITMAP: 5,
  RESUME_ACK: 6,
  /** QEMU 10.x, only with the switchover-ack capability (qemu-wire.md). */
  SWITCHOVER_ACK: 7,
} as const;

/** End mark of a receive-bitmap blob (section 8). */
export const RECV_BITMAP_END_MARK = 0x0123456789abcdefn;
