import { mapSharedFile, releaseSharedFile } from '../native/sharedFile.js';

/**
 * Maps the journal's tail file (created or reused) as shared memory, so appended events
 * survive SIGKILL. A failure (no native addon, no space, no permission) is an error: a
 * journal that silently lost its crash safety would be a surprise.
 */
export function mapTailFile(path: string, bytes: number): Uint8Array {
  return mapSharedFile(path, bytes);
}

/** Unmaps a tail mapping now; nothing may read or write it afterwards. */
export function releaseTailFile(memory: Uint8Array): void {
  releaseSharedFile(memory as Buffer);
}
