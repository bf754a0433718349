import { unpack } from 'msgpackr';
import { Destination, type DestinationSnapshot } from '../engine/destination.js';
import {
  EVENT_KIND_NAMES,
  EventKind,
  MACHINE_NAMES,
  RequestFlag,
  assertNever,
  isInput,
  type EventKindValue,
  type EventRecord,
  type RecordSink,
} from '../engine/events.js';
import { JournalError, JournalFormatError, PostcopyError } from '../errors.js';
import { PlaceOutcome, type Backend, type BlockLayout, type PlaceOutcomeValue, type SupportReport } from '../engine/ports.js';
import type { JournalReader } from './journalReader.js';
import type { JournalMeta } from './meta.js';
import { payloadOf, recordOf, type Segment } from './segment.js';

export interface ReplayOptions {
  /** Stop after the input at or before this sequence number (and its effects). */
  to?: number;
  /** Compare every produced record with the recorded one (default true). */
  verify?: boolean;
  /** Start from the latest snapshot at or before this sequence number instead of from 0. */
  from?: number;
  /** Called now and then with the sequence number reached and the total. */
  onProgress?: (seq: number, total: number) => void;
}

/** The first place where the fresh engine did not do what the journal says. */
export interface Divergence {
  seq: number;
  /** The input being applied when it happened. */
  input: EventRecord | null;
  /** What the journal holds at `seq` (null: the journal has nothing more for this input). */
  expected: EventRecord | null;
  /** What the engine produced at `seq` (null: it produced nothing more for this input). */
  actual: EventRecord | null;
  /** Fields that differ, e.g. ['kind', 'b']. */
  fields: string[];
  /** State of every machine just before the divergent record. */
  machines: Record<string, string>;
  postcopyState: number;
  outstandingRequests: number;
  message: string;
}

export interface ReplayResult {
  ok: boolean;
  /** Records compared (or applied without verification). */
  events: number;
  inputs: number;
  /** Sequence number of the last record replayed. */
  lastSeq: number;
  divergence: Divergence | null;
  /** The engine as it stands after the replay (state at `lastSeq`). */
  engine: Destination;
  /** The journal ends in the middle of an input's effects (a crash cut it there). */
  cut?: boolean;
}

const DUMMY_PAGE = new Uint8Array(2 * 2 ** 20);

/** A signal from the verifying sink to the replay loop (never escapes replay). */
class DivergenceSignal {
  constructor(readonly actual: EventRecord | null, readonly fields: string[]) {}
}

/**
 * The recorded stream, walked with a cursor: the verifying sink compares against it,
 * the replay backend and return path answer from it.
 */
class RecordedStream {
  seg: Segment | null = null;
  index = 0;
  private readonly iter: Iterator<Segment>;
  constructor(segments: Iterable<Segment>) {
    this.iter = segments[Symbol.iterator]();
  }
  /** Moves to `seq`; false at the end of the journal. */
  seek(seq: number): boolean {
    for (;;) {
      if (this.seg !== null && seq < this.seg.firstSeq + this.seg.count) {
        this.index = seq - this.seg.firstSeq;
        return this.index >= 0;
      }
      const n = this.iter.next();
      if (n.done) {
        this.seg = null;
        return false;
      }
      this.seg = n.value;
    }
  }
  /** Kind at the cursor, or -1 at the end. */
  kind(): number {
    return this.seg === null ? -1 : this.seg.kind[this.index]!;
  }
}

/** Compares the engine's records with the recorded ones, field by field. */
class VerifyingSink implements RecordSink {
  seq = 0;
  verify = true;
  /** The journal ended while the engine was still producing effects (it was cut, e.g. by a crash). */
  endedAt = -1;
  constructor(private readonly rec: RecordedStream) {}
  append(kind: EventKindValue, t: number, cause: number, block: number, offset: number, a: number, b: number, payload: Uint8Array | null): number {
    const seq = this.seq;
    if (this.verify) {
      const r = this.rec;
      const have = r.seek(seq);
      const actual = (): EventRecord => ({ seq, kind, t, cause, block, offset, a, b, payload });
      if (!have) {
        // A cut journal: what the engine does past its end was never recorded, so it is not a divergence.
        if (this.endedAt < 0) this.endedAt = seq;
        this.seq = seq + 1;
        return seq;
      }
      const s = r.seg!;
      const i = r.index;
      if (s.kind[i] !== kind || s.t[i] !== t || s.cause[i] !== cause || s.block[i] !== block || s.offset[i] !== offset || !same(s.a[i]!, a) || !same(s.b[i]!, b) || !samePayload(payloadOf(s, i), payload)) {
        const exp = recordOf(s, i);
        const act = actual();
        const fields: string[] = (['kind', 't', 'cause', 'block', 'offset', 'a', 'b'] as const).filter((f) => !same(exp[f], act[f]));
        if (!samePayload(exp.payload, act.payload)) fields.push('payload');
        throw new DivergenceSignal(act, fields);
      }
    }
    this.seq = seq + 1;
    return seq;
  }
}

function same(x: number, y: number): boolean {
  return x === y || (Number.isNaN(x) && Number.isNaN(y));
}

function samePayload(x: Uint8Array | null, y: Uint8Array | null): boolean {
  if (x === null || x.length === 0) return y === null || y.length === 0;
  if (y === null || x.length !== y.length) return false;
  return Buffer.compare(x, y) === 0;
}

/** What the recording says the next record is, when it is of `kind` (null: nothing recorded). */
export type RecordedEffect = (kind: number) => { a: number; b: number; payload: Uint8Array | null } | null;

/**
 * Performs nothing; answers placements and probes as `peek` says the recording did (every
 * placement succeeds where nothing was recorded: a tap journal's check, tapReplay.ts).
 */
export class ReplayBackend implements Backend {
  readonly kind = 'replay' as const;
  constructor(
    readonly blocks: readonly BlockLayout[],
    private readonly addresses: readonly number[],
    private readonly peek: RecordedEffect = () => null,
  ) {}
  probe(): SupportReport {
    const r = this.peek(EventKind.FX_PROBE);
    if (r?.payload) return unpack(r.payload) as SupportReport;
    return { ok: true, checks: [] };
  }
  hostAddress(block: number): number {
    return this.addresses[block]!;
  }
  listen(): void {}
  register(): void {}
  unregister(): void {}
  discard(): void {}
  resize(): void {}
  setHugePages(): void {}
  write(): void {}
  copy(): PlaceOutcomeValue {
    return (this.peek(EventKind.FX_COPY)?.b ?? PlaceOutcome.PLACED) as PlaceOutcomeValue;
  }
  zero(): PlaceOutcomeValue {
    return (this.peek(EventKind.FX_ZERO)?.b ?? PlaceOutcome.PLACED) as PlaceOutcomeValue;
  }
  wake(): void {}
  read(): Uint8Array {
    throw new PostcopyError('REPLAY', 'a replayed engine has no guest memory to read');
  }
  endPostcopy(): void {}
  /** Recorded faults are inputs of the replay itself: nothing is ever pending here. */
  takeFaults(): number {
    return 0;
  }
  close(): void {}
}

/** The layouts a journal's blocks had (a replayed engine's backend). */
export function layoutsOf(meta: JournalMeta): BlockLayout[] {
  return meta.blocks.map((b) => ({ name: b.name, length: b.length, maxLength: b.maxLength ?? b.length, hostPageSize: b.hostPageSize ?? 4096, hugetlbfs: b.hugetlbfs ?? false }));
}

/** Builds a fresh engine for a journal's configuration, wired to a recorded stream. */
function engineFor(meta: JournalMeta, rec: RecordedStream, sink: VerifyingSink): Destination {
  const layouts = layoutsOf(meta);
  const backend = new ReplayBackend(layouts, meta.blocks.map((b) => b.hostAddress), (kind) => {
    if (!rec.seek(sink.seq) || rec.kind() !== kind) return null;
    const s = rec.seg!;
    const i = rec.index;
    return { a: s.a[i]!, b: s.b[i]!, payload: payloadOf(s, i) };
  });
  const returnPath = {
    send: (): boolean => {
      if (!rec.seek(sink.seq) || rec.kind() !== EventKind.FX_REQUEST) return true;
      return (rec.seg!.b[rec.index]! & RequestFlag.NOT_SENT) === 0;
    },
  };
  return new Destination(
    { blocks: meta.blocks, vcpuTids: meta.vcpuTids, preempt: meta.capabilities.includes('preempt'), ...(meta.preemptEnd ? { preemptEnd: meta.preemptEnd } : {}) },
    backend,
    returnPath,
    sink,
  );
}

/**
 * Applies one recorded input to the engine (pure dispatch: the exhaustive switch means a
 * new input kind cannot be forgotten here). Typed refusals are part of the recording.
 */
export function applyInput(engine: Destination, seg: Segment, i: number): void {
  const kind = seg.kind[i]! as EventKindValue;
  if (!isInput(kind)) throw new Error(`record ${seg.firstSeq + i} (${EVENT_KIND_NAMES[kind]}) is not an input`);
  const t = seg.t[i]!;
  const payload = payloadOf(seg, i);
  try {
    switch (kind) {
      case EventKind.IN_COMMAND:
        engine.command(seg.a[i]!, payload ?? new Uint8Array(0), t);
        return;
      case EventKind.IN_PAGE:
        engine.page(seg.a[i]!, seg.block[i]!, seg.offset[i]!, seg.b[i]! === 1, DUMMY_PAGE, 0, t, payload ? payload[0]! : 0);
        return;
      case EventKind.IN_FAULT:
        engine.fault(seg.offset[i]!, seg.a[i]!, t);
        return;
      case EventKind.IN_CHANNEL_BROKEN:
        engine.channelBroken(seg.a[i]!, payload ? String(unpack(payload)) : '', t);
        return;
      case EventKind.IN_CHANNEL_CONNECTED:
        engine.channelConnected(seg.a[i]!, t);
        return;
      case EventKind.IN_EOS:
        engine.endOfStream(seg.a[i]!, t);
        return;
      case EventKind.IN_RESIZE:
        engine.resize(seg.block[i]!, seg.offset[i]!, t);
        return;
      case EventKind.IN_STREAM_ERROR:
        engine.streamError(seg.a[i]!, payload ? String(unpack(payload)) : '', t);
        return;
      default:
        assertNever(kind, 'input kind');
    }
  } catch (err) {
    if (err instanceof PostcopyError) return; // refused: FX_ERROR was compared like any effect
    throw err;
  }
}

function machinesOf(engine: Destination): Record<string, string> {
  const out: Record<string, string> = {};
  MACHINE_NAMES.forEach((name, id) => (out[name] = engine.stateOf(id)));
  return out;
}

/**
 * Feeds a journal's recorded inputs to a fresh engine whose backend and return path
 * perform nothing, and compares every record the engine produces with the recorded one.
 * Returns at the first divergence with a structured diff. Deterministic engines replay
 * their own journals with zero divergence.
 */
export function replay(journal: JournalReader, opts: ReplayOptions = {}): ReplayResult {
  const meta = journal.meta;
  if (meta.source !== 'engine') {
    throw new JournalError(journal.path, -1, `a '${meta.source}' journal records another implementation's behaviour and cannot be replayed through the engine (use inspect)`);
  }
  const to = opts.to ?? Infinity;
  let start = 0;
  let snapshot: { seq: number; state: unknown } | null = null;
  if (opts.from !== undefined && opts.from > 0) {
    snapshot = journal.snapshotAtOrBefore(opts.from);
    if (snapshot) start = snapshot.seq;
  }
  const rec = new RecordedStream(journal.segments(start));
  const sink = new VerifyingSink(rec);
  sink.verify = opts.verify ?? true;
  let engine: Destination;
  try {
    engine = engineFor(meta, rec, sink);
    if (snapshot) engine.restore(snapshot.state as DestinationSnapshot);
  } catch (err) {
    if (err instanceof JournalError) throw err;
    // Meta that passed validation but that no engine can be built from (blocks too large...).
    throw new JournalFormatError(journal.path, snapshot ? 'table snapshots' : 'meta.blocks', `no engine can be built from it (${(err as Error).message})`, snapshot ? snapshot.seq : -1);
  }
  sink.seq = start;
  const total = journal.eventCount();
  let inputs = 0;
  let lastInput: EventRecord | null = null;
  let nextProgress = start + 1_000_000;
  for (;;) {
    const seq = sink.seq;
    if (!rec.seek(seq) || seq > to) break;
    const seg = rec.seg!;
    const i = rec.index;
    if (!isInput(seg.kind[i]!)) {
      // The journal has an effect here that the engine did not produce for the last input.
      return diverged(engine, sink.seq, lastInput, recordOf(seg, i), null, ['kind'], inputs);
    }
    lastInput = recordOf(seg, i);
    inputs++;
    try {
      applyInput(engine, seg, i);
    } catch (err) {
      if (err instanceof DivergenceSignal) {
        const expected = rec.seek(sink.seq) ? recordOf(rec.seg!, rec.index) : null;
        return diverged(engine, sink.seq, lastInput, expected, err.actual, err.fields, inputs);
      }
      if (err instanceof JournalError) throw err; // the journal cannot be read past here
      // The engine cannot take the recorded input at all (a payload that does not decode, a
      // value no run produces): the journal is not what this engine recorded.
      const expected = rec.seek(sink.seq) ? recordOf(rec.seg!, rec.index) : null;
      return diverged(engine, sink.seq, lastInput, expected, null, [], inputs, `the engine cannot take the input: ${(err as Error).message}`);
    }
    if (opts.onProgress && sink.seq >= nextProgress) {
      opts.onProgress(sink.seq, total);
      nextProgress = sink.seq + 1_000_000;
    }
  }
  opts.onProgress?.(sink.seq, total);
  const end = sink.endedAt >= 0 ? sink.endedAt : sink.seq;
  return { ok: true, events: end - start, inputs, lastSeq: end - 1, divergence: null, engine, cut: sink.endedAt >= 0 };
}

function diverged(
  engine: Destination,
  seq: number,
  input: EventRecord | null,
  expected: EventRecord | null,
  actual: EventRecord | null,
  fields: string[],
  inputs: number,
  why?: string,
): ReplayResult {
  const name = (r: EventRecord | null): string => (r ? EVENT_KIND_NAMES[r.kind] : 'nothing');
  const divergence: Divergence = {
    seq,
    input,
    expected,
    actual,
    fields,
    machines: machinesOf(engine),
    postcopyState: engine.postcopyState,
    outstandingRequests: engine.requested.size,
    message: `divergence at sequence number ${seq}: the journal has ${name(expected)}, the engine produced ${name(actual)}${fields.length ? ` (fields differ: ${fields.join(', ')})` : ''}${input ? `, while applying input ${input.seq} (${name(input)})` : ''}${why ? `: ${why}` : ''}`,
  };
  return { ok: false, events: seq, inputs, lastSeq: seq - 1, divergence, engine };
}

/**
 * The engine's state just before event `seq`: at most one snapshot load plus the events
 * since that snapshot (snapshots are taken every N events).
 */
export function stateAt(journal: JournalReader, seq: number): { engine: Destination; fromSnapshot: number; replayed: number } {
  const r = replay(journal, { from: seq, to: seq - 1, verify: true });
  if (!r.ok) throw new JournalError(journal.path, r.divergence!.seq, r.divergence!.message);
  const snap = journal.snapshotAtOrBefore(seq);
  return { engine: r.engine, fromSnapshot: snap?.seq ?? 0, replayed: r.events };
}
