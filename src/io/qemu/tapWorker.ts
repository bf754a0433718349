/**
 * The worker thread of `postcopy tap`: takes the relay's messages (tap.ts) and journals them
 * through the recorder, off the thread that forwards the bytes. Acknowledges the bytes it
 * decoded after each batch, so the relay knows how far behind it is.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { RecorderSession, type TapMessage, type TapReply } from './tap.js';

const port = parentPort!;
const data = workerData as { journalPath: string; overwrite: boolean; run: Record<string, unknown>; timeOriginNs: number };
const reply = (r: TapReply): void => port.postMessage(r);
let session: RecorderSession;
try {
  session = new RecorderSession(data.journalPath, data.overwrite, data.run, data.timeOriginNs, reply);
} catch (err) {
  reply({ type: 'failed', message: (err as Error).message });
  throw err;
}
let ackScheduled = false;
port.on('message', (m: TapMessage) => {
  try {
    session.take(m);
  } catch (err) {
    reply({ type: 'failed', message: (err as Error).stack ?? String(err) });
    return;
  }
  if (!ackScheduled) {
    ackScheduled = true;
    setImmediate(() => {
      ackScheduled = false;
      session.ack();
    });
  }
});
