import { mapSharedFile } from '../io/sharedFile.js';

/**
 * Maps the journal's tail file (created or reused) as shared memory, so appended events
 * survive SIGKILL. A failure (no native addon, no space, no permission) is an error: a
 * journal that silently lost its crash safety would be a surprise.
 */
export function mapTailFile(path: string, bytes: number): Uint8Array {
  return mapSharedFile(path, bytes);
}
