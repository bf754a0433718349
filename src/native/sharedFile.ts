/**
 * Files mapped MAP_SHARED into a Buffer (for the journal): every write to the Buffer is in
 * the kernel's page cache at once, so it survives the process being killed (SIGKILL
 * included); `syncSharedFile` (msync) adds durability against power loss.
 */
import { loadNative, toBackendError } from './native.js';

/**
 * Opens or creates `path`, sizes it to `bytes` (ftruncate: grows with zeros or cuts),
 * and returns a Buffer over the whole file. The mapping is released when the Buffer is
 * garbage collected. Throws BackendError when the file cannot be opened, sized or mapped.
 */
export function mapSharedFile(path: string, bytes: number): Buffer {
  try {
    return loadNative().mapSharedFile(path, bytes);
  } catch (err) {
    throw toBackendError(err);
  }
}

/** msync(MS_SYNC) of a Buffer from mapSharedFile, or of [offset, offset+length) of it. */
export function syncSharedFile(buf: Buffer, offset?: number, length?: number): void {
  try {
    if (offset === undefined) loadNative().syncSharedFile(buf);
    else if (length === undefined) loadNative().syncSharedFile(buf, offset);
    else loadNative().syncSharedFile(buf, offset, length);
  } catch (err) {
    throw toBackendError(err);
  }
}

/**
 * Unmaps a Buffer from mapSharedFile now instead of at garbage collection (a process that
 * opens many journals would otherwise reach its mapping limit). Every write already made
 * stays in the file. The Buffer and every view of it must not be used afterwards.
 */
export function releaseSharedFile(buf: Buffer): void {
  try {
    loadNative().releaseSharedFile(buf);
  } catch (err) {
    throw toBackendError(err);
  }
}
