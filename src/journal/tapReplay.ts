/**
 * What `replay` means for a `postcopy tap` journal: the journal records QEMU's migration as
 * it crossed a relay, not an engine's run, so there are no engine effects to compare record
 * by record. Its inputs (commands, pages per channel, connections broken and made, ends of
 * stream) drive a fresh engine instead, as a consistency check: the engine must take every
 * input without refusing one, and end in the states the tap recorded (postcopy and migration).
 * Page requests, receive bitmaps and times are QEMU's and are not re-derived (a relay sees no
 * faults).
 *
 * One rule of `postcopy receive` applies: with preempt, QEMU 7.2 opens a recovery's new
 * preempt connection after POSTCOPY_RESUME, and the engine takes the RESUME once that
 * channel is there; so RESUME and the inputs after it wait for the preempt connection.
 */
import { unpack } from 'msgpackr';
import { Destination } from '../engine/destination.js';
import { EventKind, MachineId, isInput, type EventKindValue, type RecordSink } from '../engine/events.js';
import { MigCommand } from '../engine/constants.js';
import type { JournalReader } from './journalReader.js';
import { applyInput, layoutsOf, ReplayBackend } from './replay.js';
import { payloadOf, type Segment } from './segment.js';

/** One line for `replay`'s output and docs. */
export const TAP_REPLAY_MEANING =
  "a tap journal records QEMU's migration at a relay: its inputs (commands, pages, connections, ends of stream) drive a fresh engine as a consistency check — every input taken, the same end states";

export interface TapReplayResult {
  ok: boolean;
  inputs: number;
  /** Inputs a QEMU destination acts on that are not engine inputs (RECV_BITMAP and SWITCHOVER_START commands). */
  skipped: number;
  /** Inputs the engine refused: sequence number in the tap journal, and why. */
  refused: Array<{ seq: number; code: string; message: string }>;
  recorded: { postcopy: string; migration: string };
  engine: { postcopy: string; migration: string };
  message: string;
}

/** Commands the destination reads but that are not the engine's inputs (the receiver answers RECV_BITMAP itself). */
const NOT_ENGINE_COMMANDS = new Set<number>([MigCommand.RECV_BITMAP, MigCommand.SWITCHOVER_START]);

/** Keeps only what the check needs from the engine's records: its refusals. */
class RefusalSink implements RecordSink {
  private seq = 0;
  /** The tap journal's sequence number of the input being applied. */
  input = -1;
  readonly refused: TapReplayResult['refused'] = [];
  append(kind: EventKindValue, _t: number, _cause: number, _block: number, _offset: number, _a: number, _b: number, payload: Uint8Array | null): number {
    if (kind === EventKind.FX_ERROR && this.refused.length < 100) {
      const p = payload === null ? {} : (unpack(payload) as { code?: unknown; message?: unknown });
      this.refused.push({ seq: this.input, code: String(p.code ?? ''), message: String(p.message ?? '') });
    }
    return this.seq++;
  }
}

/** Drives a fresh engine with a tap journal's inputs and compares its end states with the recorded ones. */
export function replayTap(journal: JournalReader): TapReplayResult {
  const meta = journal.meta;
  const layouts = layoutsOf(meta);
  const sink = new RefusalSink();
  const engine = new Destination(
    { blocks: meta.blocks, vcpuTids: [], preempt: meta.capabilities.includes('preempt') },
    new ReplayBackend(layouts, meta.blocks.map((b) => b.hostAddress)),
    { send: () => true },
    sink,
  );
  const recorded = { postcopy: 'NONE', migration: 'setup' };
  let inputs = 0;
  let skipped = 0;
  const preempt = meta.capabilities.includes('preempt');
  /** A recovery began (a new main connection) and its preempt connection has not come yet. */
  let awaitingPreempt = false;
  /** RESUME and what followed it, waiting for that preempt connection. */
  let held: Array<{ seg: Segment; i: number }> | null = null;
  const apply = (seg: Segment, i: number): void => {
    inputs++;
    sink.input = seg.firstSeq + i;
    applyInput(engine, seg, i);
  };
  for (const seg of journal.segments()) {
    for (let i = 0; i < seg.count; i++) {
      const kind = seg.kind[i]!;
      if (kind === EventKind.FX_STATE) {
        const p = unpack(payloadOf(seg, i)!) as { to: string };
        if (seg.a[i] === MachineId.POSTCOPY) recorded.postcopy = p.to;
        else if (seg.a[i] === MachineId.MIGRATION) recorded.migration = p.to;
        continue;
      }
      if (!isInput(kind)) continue;
      if (kind === EventKind.IN_COMMAND && NOT_ENGINE_COMMANDS.has(seg.a[i]!)) {
        skipped++;
        continue;
      }
      // Pages the relay saw before MEM_SIZE named a block (none in QEMU's order) have no block.
      if (kind === EventKind.IN_PAGE && seg.block[i]! < 0) {
        skipped++;
        continue;
      }
      const channel = seg.a[i]!;
      if (kind === EventKind.IN_CHANNEL_CONNECTED && channel === 0 && preempt) awaitingPreempt = true;
      if (kind === EventKind.IN_COMMAND && channel === MigCommand.POSTCOPY_RESUME && awaitingPreempt && held === null) held = [];
      if (kind === EventKind.IN_CHANNEL_CONNECTED && channel === 1 && awaitingPreempt) {
        awaitingPreempt = false;
        apply(seg, i);
        for (const h of held ?? []) apply(h.seg, h.i);
        held = null;
        continue;
      }
      if (held !== null) held.push({ seg, i });
      else apply(seg, i);
    }
  }
  // A preempt connection that never came: the held inputs go in as they are (the engine says what it refuses).
  for (const h of held ?? []) apply(h.seg, h.i);
  const now = { postcopy: engine.stateOf(MachineId.POSTCOPY), migration: engine.stateOf(MachineId.MIGRATION) };
  const same = now.postcopy === recorded.postcopy && now.migration === recorded.migration;
  const ok = sink.refused.length === 0 && same;
  const message = ok
    ? `${inputs} inputs drove a fresh engine to the recorded end states (postcopy ${now.postcopy}, migration ${now.migration}), none refused`
    : `${inputs} inputs: ${sink.refused.length ? `the engine refused ${sink.refused.length} (first at #${sink.refused[0]!.seq}: ${sink.refused[0]!.message})` : 'none refused'}; ` +
      `end states ${same ? 'agree' : `differ: the tap recorded postcopy ${recorded.postcopy}, migration ${recorded.migration}; the engine ended postcopy ${now.postcopy}, migration ${now.migration}`}`;
  return { ok, inputs, skipped, refused: sink.refused, recorded, engine: now, message };
}
