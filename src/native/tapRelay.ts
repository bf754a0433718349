/**
 * `postcopy tap`'s forwarding in the addon (native/src/relay.cc): two threads per connection
 * pair, one per direction, each reading what is there up to 1 MiB, writing all of it to the
 * other socket, then copying it into the tap's shared-memory ring (the layout of
 * io/qemu/tapRing.ts) for the recorder thread. JavaScript keeps accepting and connecting; it hands each connected
 * pair over with attach() (the relay dup()s the fds: the caller destroys its sockets right
 * after) and hears back, in batches on its own thread, when a direction ends, a side fails,
 * a pair closed, or the recorder should be woken (the relay's threads cannot wake a V8
 * Atomics.wait: the caller does, with Atomics.notify).
 */
import { BackendError } from '../errors.js';
import { loadNative, toBackendError } from './native.js';

/** What the relay's threads report, in order per connection. */
export type RelayEvent =
  /** Direction `dir` reached its end (0: source → destination); the other side was half-closed. */
  | { type: 'end'; id: number; dir: 0 | 1 }
  /** A socket failed (its side: 0 the source's, 1 the destination's); both sockets are closed. */
  | { type: 'error'; id: number; side: 0 | 1; message: string }
  /** Both directions are over and both sockets closed. */
  | { type: 'closed'; id: number; toDestination: number; toSource: number }
  /** The recorder fell a ring behind: direction `dir` is forwarded from byte `from` on, not recorded. */
  | { type: 'gap'; id: number; dir: 0 | 1; from: number; reason: string }
  /** The ring holds records the recorder should see now (a control record, or a filling ring). */
  | { type: 'wake' };

export interface NativeTapRelay {
  /** ns since the relay started (CLOCK_MONOTONIC): the clock of every record. */
  now(): number;
  /** A control record (OPEN, GAP, CLOSE, ERROR, FINISH), stamped now; it waits for room in order when the ring is full. */
  post(type: number, id: number, dir: number, value: number, text: string | null): void;
  /** Forwards between two connected TCP sockets from now on (their fds are dup()ed). */
  attach(id: number, clientFd: number, upstreamFd: number): void;
  /** Bytes forwarded so far: [to the destination, to the source]. */
  forwarded(): [number, number];
  /** Control records waiting for room in the ring. */
  pending(): number;
  /** Ends every connection and joins the relay's threads: nothing is written to the ring after. */
  stop(): void;
  /** stop(), then releases the ring and the event callback. */
  close(): void;
}

type TapRelayClass = new (ring: Uint8Array, onEvents: (events: RelayEvent[]) => void) => NativeTapRelay;

/** A native relay writing into `ring` (a SharedArrayBuffer from tapRing.ts's createRing). */
export function createTapRelay(ring: SharedArrayBuffer, onEvents: (events: RelayEvent[]) => void): NativeTapRelay {
  const TapRelay = (loadNative() as unknown as { TapRelay?: TapRelayClass }).TapRelay;
  if (TapRelay === undefined) throw new BackendError('TapRelay', 'ENOSYS', 'the native addon predates the tap relay: rebuild it (`npm run install`)');
  try {
    const relay = new TapRelay(new Uint8Array(ring), onEvents);
    return {
      now: () => relay.now(),
      post: (type, id, dir, value, text) => relay.post(type, id, dir, value, text),
      attach: (id, clientFd, upstreamFd) => {
        try {
          relay.attach(id, clientFd, upstreamFd);
        } catch (err) {
          throw toBackendError(err);
        }
      },
      forwarded: () => relay.forwarded(),
      pending: () => relay.pending(),
      stop: () => relay.stop(),
      close: () => relay.close(),
    };
  } catch (err) {
    throw toBackendError(err);
  }
}
