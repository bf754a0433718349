/**
 * The recorder thread of `postcopy tap`: reads what the forwarding thread put in the shared
 * ring (tapRing.ts) and journals it through the recorder (tapRecorder.ts), off the thread
 * that forwards the bytes. It blocks on the ring between records (no event loop turns), so
 * it commits the journal itself every 250 ms, and answers the relay with postMessage only
 * for the rare things: the migration's status when it changes, the summary at the end.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { RecordType, RingReader, textOf, type RingRecord } from './tapRing.js';
import { RecorderSession, type TapMessage, type TapReply } from './tap.js';

const port = parentPort!;
const data = workerData as { journalPath: string; overwrite: boolean; run: Record<string, unknown>; timeOriginNs: number; ring: SharedArrayBuffer };
const reply = (r: TapReply): void => port.postMessage(r);

/**
 * The recorder runs below the forwarding thread's priority (nice +10): on a busy host the
 * thread that forwards wins the core, and the recorder catches up in between (it may fall
 * behind; the relay then stops handing it bytes rather than slow the migration down).
 * Linux names the calling thread in /proc/thread-self; elsewhere this is skipped.
 */
try {
  const tid = Number(/task\/(\d+)$/.exec(readlinkSync('/proc/thread-self'))?.[1]);
  if (Number.isInteger(tid) && tid > 0) setPriority(tid, 10);
} catch {
  // No /proc, or not allowed: the recorder keeps the relay's priority.
}

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
  }
}

try {
  const session = new RecorderSession(data.journalPath, data.overwrite, data.run, data.timeOriginNs, reply, false, false);
  const ring = new RingReader(data.ring);
  let finished = false;
  let lastCommit = performance.now();
  while (!finished) {
    ring.wait(250);
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
  reply({ type: 'failed', message: (err as Error).stack ?? String(err) });
}
