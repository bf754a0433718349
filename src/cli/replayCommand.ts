import { JournalError, PostcopyError } from '../errors.js';
import { readableNote } from './inspectCommand.js';
import { JournalReader } from '../journal/journalReader.js';
import { replay } from '../journal/replay.js';
import { EVENT_KIND_NAMES } from '../engine/events.js';
import { createProgress } from './progress.js';
import { describeRecord } from './describe.js';

export interface ReplayCommandOptions {
  to?: string;
  json?: boolean;
}

/**
 * `postcopy replay <journal>`: exit 0 when the replay matches the journal, 1 on a
 * divergence (the diff printed), 2 when the journal cannot be read.
 */
export function replayCommand(path: string, opts: ReplayCommandOptions): number {
  let journal: JournalReader;
  try {
    journal = JournalReader.open(path);
  } catch (err) {
    return unreadable(err, opts.json);
  }
  try {
    const to = opts.to !== undefined ? Number(opts.to) : undefined;
    if (to !== undefined && !(Number.isSafeInteger(to) && to >= 0)) {
      console.error(`--to must be a sequence number (a whole number >= 0), got '${opts.to}'`);
      return 2;
    }
    const progress = createProgress('replay', { enabled: !opts.json });
    const result = replay(journal, { to, onProgress: (seq, total) => progress.update(seq, total) });
    progress.stop();
    if (opts.json) {
      console.log(JSON.stringify({ ok: result.ok, events: result.events, inputs: result.inputs, lastSeq: result.lastSeq, divergence: result.divergence }, jsonBytes, 2));
    } else if (result.ok) {
      console.log(`${path}: ${result.events} events (${result.inputs} inputs) replayed with zero divergence`);
      console.log(`state at the end: postcopy ${result.engine.stateOf(0)}, migration ${result.engine.stateOf(1)}, ${result.engine.requested.size} outstanding requests`);
    } else {
      const d = result.divergence!;
      console.log(d.message);
      console.log(`  input:    ${d.input ? describeRecord(d.input) : '(none)'}`);
      console.log(`  expected: ${d.expected ? describeRecord(d.expected) : '(nothing)'}`);
      console.log(`  actual:   ${d.actual ? describeRecord(d.actual) : '(nothing)'}`);
      console.log(`  machines: ${Object.entries(d.machines).map(([k, v]) => `${k}=${v}`).join(', ')}; ${d.outstandingRequests} outstanding requests`);
    }
    return result.ok ? 0 : 1;
  } catch (err) {
    return unreadable(err, opts.json);
  } finally {
    journal.close();
  }
}

function unreadable(err: unknown, json?: boolean): number {
  if (!(err instanceof PostcopyError)) throw err;
  const seq = err instanceof JournalError ? err.seq : -1;
  const readable = seq >= 0 ? ` (${readableNote(seq)})` : '';
  if (json) console.log(JSON.stringify({ ok: false, error: err.message, seq }));
  else console.error(`${err.message}${readable}`);
  return 2;
}

/** JSON replacer: payload bytes as hex, so diffs print readably. */
function jsonBytes(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  return value;
}

export { EVENT_KIND_NAMES };
