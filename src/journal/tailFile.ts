import { mapSharedFile } from '../io/sharedFile.js';

/**
 * Maps the journal's tail file (created or reused) as shared memory, so appended events
 * survive SIGKILL. Returns null only when the native addon is unavailable; the writer then
 * reports `crashSafe: false` and the CLI says so.
 */
export function mapTailFile(path: string, bytes: number): Uint8Array | null {
  try {
    return mapSharedFile(path, bytes);
  } catch (err) {
    if ((err as { code?: string }).code === 'NATIVE_UNAVAILABLE') return null;
    throw err;
  }
}
