/**
 * TCP options Node's net module does not set, through the addon. The one here bounds what
 * waits unsent in a socket: QEMU's wire has no acknowledgements, so a sender that wants a
 * requested page not to queue behind megabytes of background pages keeps that queue small
 * in the kernel and holds the rest itself, where it can still put an urgent page first.
 */
import type { Socket } from 'node:net';
import { BackendError } from '../errors.js';
import { loadNative, toBackendError } from './native.js';

/** The file descriptor under a connected net.Socket (libuv's TCP handle), or null. */
export function socketFd(sock: Socket): number | null {
  const handle = (sock as unknown as { _handle?: { fd?: unknown } })._handle;
  return typeof handle?.fd === 'number' && handle.fd >= 0 ? handle.fd : null;
}

/**
 * setsockopt(IPPROTO_TCP, TCP_NOTSENT_LOWAT, bytes) on a connected socket: the kernel takes
 * new bytes only while fewer than `bytes` are unsent, and reports the socket writable (Node:
 * 'drain') once below. Returns the value the kernel holds. Throws BackendError when the
 * socket has no fd yet or the kernel refuses.
 */
export function setTcpNotSentLowat(sock: Socket, bytes: number): number {
  const fd = socketFd(sock);
  if (fd === null) throw new BackendError('setTcpNotSentLowat', 'EBADF', 'the socket has no file descriptor (not connected, or closed)');
  try {
    return loadNative().setTcpNotSentLowat(fd, bytes);
  } catch (err) {
    throw toBackendError(err);
  }
}
