/**
 * The recorder thread of `postcopy tap`: reads what the forwarding thread put in the shared
 * ring (tapRing.ts) and journals it through the recorder (tapRecorder.ts), off the thread
 * that forwards the bytes. It blocks on the ring between records (no event loop turns), so
 * it commits the journal itself every 250 ms, and answers the relay with postMessage only
 * for the rare things: the migration's status when it changes, the summary at the end.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { RecordType, RingReader, textOf, type RingRecord } from './tapRing.js';
import { RecorderSession, type TapMessage, type TapReply } from './tap.js';
import { warmUpRecorder } from './tapWarmUp.js';

const port = parentPort!;
const data = workerData as { journalPath: string; overwrite: boolean; run: Record<string, unknown>; timeOriginNs: number; ring: SharedArrayBuffer };
const reply = (r: TapReply): void => port.postMessage(r);


function message(r: RingRecord): TapMessage {
  switch (r.type) {
    case RecordType.OPEN: {
      const [client, upstream] = textOf(r.payload).split('\n');
      return { type: 'open', id: r.id, t: r.t, client: client ?? '', upstream: upstream ?? '' };
    }
    case RecordType.DATA:
      return { type: 'data', id: r.id, dir: r.dir, t: r.t, bytes: r.payload };
    case RecordType.GAP:
      return { type: 'gap', id: r.id, dir: r.dir, from: r.value, reason: textOf(r.payload), t: r.t };
    case RecordType.CLOSE:
      return { type: 'close', id: r.id, dir: r.dir, bytes: r.value, t: r.t };
    case RecordType.ERROR:
      return { type: 'error', id: r.id, side: r.dir, message: textOf(r.payload), t: r.t };
    case RecordType.FINISH:
      return { type: 'finish' };
    default:
      throw new Error(`tap ring: a record of unknown type ${String(r.type)} at a record boundary (the ring is corrupt)`);
  }
}

try {
  const session = new RecorderSession(data.journalPath, data.overwrite, data.run, data.timeOriginNs, reply, false, false);
  // Every page of the ring touched before the relay listens (it waits for 'ready'): first
  // touches during a migration would cost the forwarding thread a page fault per 4 KiB.
  new Uint8Array(data.ring).fill(0);
  // And the recorder's code optimized before it (tapWarmUp.ts): a cold one costs the QEMUs CPU.
  // A warm-up that cannot run (no writable temporary folder) only leaves the recorder cold.
  try {
    warmUpRecorder();
  } catch {
    // nothing lost: the journal is not touched by the warm-up
  }
  const ring = new RingReader(data.ring);
  reply({ type: 'ready' });
  let finished = false;
  let lastCommit = performance.now();
  while (!finished) {
    // Woken for connection events and a filling ring; otherwise it looks every 10 ms.
    ring.wait(10);
    ring.drain((r) => {
      if (finished) return;
      session.take(message(r));
      if (r.type === RecordType.FINISH) finished = true;
    });
    if (!finished && performance.now() - lastCommit >= 250) {
      session.commit();
      lastCommit = performance.now();
    }
  }
} catch (err) {
  reply({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
}
