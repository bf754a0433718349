/** QEMU's incoming PostcopyState and its numbers (postcopy.md section 1). */

/** PostcopyState values exactly as QEMU numbers them (section 1). */
export const PostcopyState = {
  NONE: 0,
  ADVISE: 1,
  DISCARD: 2,
  LISTENING: 3,
  RUNNING: 4,
  END: 5,
} as const;
export type PostcopyStateValue = (typeof PostcopyState)[keyof typeof PostcopyState];
export const POSTCOPY_STATE_NAMES = ['NONE', 'ADVISE', 'DISCARD', 'LISTENING', 'RUNNING', 'END'] as const;
export type PostcopyStateName = (typeof POSTCOPY_STATE_NAMES)[number];
