/**
 * An accepted connection read into one reused buffer (net.Socket's `onread` option) instead
 * of a new Buffer per read. A QEMU source pushes its whole RAM through the main connection
 * (~500 MB for a 256 MiB guest): a Buffer per 64 KiB read is that much external memory
 * allocated and dropped, and V8 answers it with a garbage collection every few tens of MB
 * ("external memory pressure"), in the middle of the push. One 1 MiB buffer also takes up
 * to 1 MiB per read (longer page runs, fewer calls per byte).
 *
 * The bytes handed to `onData` are a view into that buffer, valid only during the call:
 * whoever keeps them past it must copy them.
 *
 * Node gives `onread` only to sockets it creates for a client connection; an accepted
 * socket is re-wrapped here around its handle (the server must be created with
 * `pauseOnConnect`, so the accepted socket reads nothing itself). Where that handle is not
 * there (another runtime), the accepted socket is used with 'data' events as before.
 */
import { Socket } from 'node:net';

/** Bytes read at most per read from the source. */
export const READ_BUFFER_BYTES = 1 << 20;

export function withReadBuffer(accepted: Socket, onData: (chunk: Buffer) => void, bufferBytes = READ_BUFFER_BYTES): Socket {
  const husk = accepted as unknown as { _handle?: object | null };
  const handle = husk._handle;
  if (handle === undefined || handle === null) {
    accepted.on('data', onData);
    accepted.resume();
    return accepted;
  }
  const buffer = Buffer.allocUnsafe(bufferBytes);
  const options = {
    handle,
    readable: true,
    writable: true,
    onread: { buffer, callback: (bytes: number, buf: Uint8Array) => void onData((buf as Buffer).subarray(0, bytes)) },
  };
  const sock = new Socket(options as ConstructorParameters<typeof Socket>[0]);
  // The accepted socket gives its handle up: destroying it closes nothing, and the server
  // stops counting it as a connection.
  husk._handle = null;
  accepted.destroy();
  return sock;
}
