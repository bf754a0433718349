import { JournalError, PostcopyError } from '../errors.js';
import { analyzeJournal } from '../forensics/analysis.js';
import { readableNote } from './inspectCommand.js';
import { JournalReader } from '../journal/journalReader.js';
import { replay } from '../journal/replay.js';
import { replayTap, TAP_REPLAY_MEANING } from '../journal/tapReplay.js';
import { EVENT_KIND_NAMES } from '../engine/events.js';
import { createProgress } from './progress.js';
import { describeRecord } from './describe.js';

export interface ReplayCommandOptions {
  to?: string;
  json?: boolean;
  quiet?: boolean;
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
  if (journal.meta.source === 'qemu-trace') {
    try {
      return checkImported(journal, opts);
    } catch (err) {
      return unreadable(err, opts.json);
    } finally {
      journal.close();
    }
  }
  if (journal.meta.source === 'tap') {
    try {
      const r = replayTap(journal);
      if (opts.json) console.log(JSON.stringify({ ok: r.ok, source: 'tap', inputs: r.inputs, skipped: r.skipped, refused: r.refused, recorded: r.recorded, engine: r.engine, note: TAP_REPLAY_MEANING }, null, 2));
      else console.log(`${journal.path}: ${TAP_REPLAY_MEANING}.\n  ${r.message}\nnext: postcopy inspect ${journal.path}`);
      return r.ok ? 0 : 1;
    } catch (err) {
      return unreadable(err, opts.json);
    } finally {
      journal.close();
    }
  }
  try {
    const to = opts.to !== undefined ? Number(opts.to) : undefined;
    if (to !== undefined && !(Number.isSafeInteger(to) && to >= 0)) {
      console.error(`postcopy replay: --to must be a sequence number (a whole number >= 0), got '${opts.to}'`);
      return 2;
    }
    const progress = createProgress('replay', { enabled: !opts.json && !opts.quiet });
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

/**
 * An imported QEMU trace records QEMU's behaviour, not the engine's inputs and effects: there
 * is nothing to re-run through the engine. What can be checked is: the journal reads to its
 * end, the analysis runs, and QEMU's own blocktime lines replay to every running total QEMU
 * printed. Exit 0 when they do, 1 when a figure differs, 2 unreadable.
 */
function checkImported(journal: JournalReader, opts: ReplayCommandOptions): number {
  const progress = createProgress('replay', { enabled: !opts.json && !opts.quiet });
  const a = analyzeJournal(journal, { slowest: 0, onProgress: (done, total) => progress.update(done, total) });
  progress.stop();
  const c = a.blocktime.qemu.check;
  const readable = a.journal.unreadableFrom === null;
  const reproduced = c === undefined || (c.totalMismatches === 0 && c.affectedMismatches === 0);
  const ok = readable && reproduced;
  const what = 'an imported QEMU trace records what QEMU did, not engine inputs, so replay checks it instead of re-running it';
  const blocktime = c === undefined ? 'no blocktime lines to replay' : `QEMU's blocktime replayed over ${c.endLines} end lines: ${reproduced ? 'every running total reproduced' : `${c.totalMismatches} running total(s) and ${c.affectedMismatches} affected count(s) differ`}`;
  if (opts.json) {
    console.log(JSON.stringify({ ok, source: 'qemu-trace', events: a.journal.events, checked: { readable, analysis: true, blocktimeReproduced: reproduced }, blocktime: c ?? null, note: what }, null, 2));
  } else {
    console.log(`${journal.path}: ${what}.`);
    console.log(`  ${readable ? `all ${a.journal.events} events read` : `damaged from #${a.journal.unreadableFrom}: ${a.journal.unreadableReason}`}; the analysis ran (status ${a.status}, postcopy ${a.postcopyState}); ${blocktime}`);
    console.log(`next: postcopy inspect ${journal.path}`);
  }
  return !readable ? 2 : ok ? 0 : 1;
}

function unreadable(err: unknown, json?: boolean): number {
  if (!(err instanceof PostcopyError)) throw err;
  const seq = err instanceof JournalError ? err.seq : -1;
  const readable = seq >= 0 ? ` (${readableNote(seq)})` : '';
  if (json) console.log(JSON.stringify({ ok: false, error: err.message, seq }));
  else console.error(`postcopy replay: ${err.message}${readable}`);
  return 2;
}

/** JSON replacer: payload bytes as hex, so diffs print readably. */
function jsonBytes(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  return value;
}

export { EVENT_KIND_NAMES };
