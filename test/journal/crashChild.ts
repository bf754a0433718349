/**
 * The child of the crash harness: journals the crash workload into argv[2] and reports on
 * stdout, synchronously, how many events the engine had applied — then runs until killed.
 */
import { writeSync } from 'node:fs';
import { JournalWriter } from '../../src/journal/journalWriter.js';
import { crashBackend, crashMeta, runCrashWorkload } from './crashWorkload.js';

const path = process.argv[2]!;
const backend = crashBackend();
const writer = JournalWriter.create(path, crashMeta(backend), { segmentEvents: 4096 });
if (!writer.crashSafe) throw new Error('the journal is not crash safe');
writeSync(1, 'ready\n');
let last = 0;
runCrashWorkload(backend, writer, Number.MAX_SAFE_INTEGER, (n) => {
  if (n - last >= 64) {
    last = n;
    // Events applied so far: every one of them must survive a SIGKILL from now on.
    writeSync(1, `${writer.nextSeq}\n`);
  }
});
writer.close();
writeSync(1, 'finished\n');
