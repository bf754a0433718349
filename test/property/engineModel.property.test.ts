import test from 'ava';
import fc from 'fast-check';
import { unpack } from 'msgpackr';
import { MigCommand, TARGET_PAGE_SIZE } from '../../src/engine/constants.js';
import { EventKind, MachineId } from '../../src/engine/events.js';
import { PostcopyError } from '../../src/errors.js';
import { advise, discard, listen, pageData, rig, run, type Rig } from '../engine/harness.js';
import { assertProperty, fcParams } from '../../src/testing/properties.js';

const PAGES = 16;
const BASE = 0x7f0000000000;

/**
 * The reference transition table (reference sections 1 and 9), written independently of
 * the machines: postcopy state and migration status after each command, or null when
 * the command must be refused.
 */
type Pc = 'NONE' | 'ADVISE' | 'DISCARD' | 'LISTENING' | 'RUNNING' | 'END';
const POSTCOPY: Record<string, Partial<Record<Pc, Pc>>> = {
  ADVISE: { NONE: 'ADVISE' },
  DISCARD: { ADVISE: 'DISCARD', DISCARD: 'DISCARD' },
  LISTEN: { ADVISE: 'LISTENING', DISCARD: 'LISTENING' },
  RUN: { LISTENING: 'RUNNING' },
  EOS: { LISTENING: 'END', RUNNING: 'END' },
};
const ALLOWED_STATUS: Record<string, string[]> = {
  setup: ['active', 'failed'],
  active: ['postcopy-active', 'completed', 'failed'],
  'postcopy-active': ['postcopy-paused', 'completed', 'failed'],
  'postcopy-paused': ['postcopy-recover', 'failed'],
  'postcopy-recover': ['postcopy-active', 'postcopy-paused', 'failed'],
};

interface Model {
  pc: Pc;
  status: string;
}

/** Checks the invariants that must hold after every step. */
function invariants(r: Rig): void {
  const b = r.engine.blocks[0]!;
  // Precopy zero pages over empty memory are not written (like QEMU): received but absent until faulted.
  const zeroSkipped = new Set<number>();
  for (const rec of r.sink.records) {
    const p = rec.offset / TARGET_PAGE_SIZE;
    if (rec.kind === EventKind.IN_PAGE && rec.b === 1 && r.sink.records[rec.seq + 1]?.cause !== rec.seq) zeroSkipped.add(p);
    if (rec.kind === EventKind.FX_COPY || rec.kind === EventKind.FX_ZERO || rec.kind === EventKind.FX_WRITE) zeroSkipped.delete(p);
    if (rec.kind === EventKind.FX_DISCARD) for (let q = p; q < p + rec.a / TARGET_PAGE_SIZE; q++) zeroSkipped.delete(q);
  }
  for (let p = 0; p < PAGES; p++) {
    const off = p * TARGET_PAGE_SIZE;
    if (b.received.test(p) && !zeroSkipped.has(p) && r.engine.postcopyState >= 3 && r.backend.isRegistered(0) && !r.backend.isPresent(0, off)) {
      throw new Error(`page ${p} is marked received but is not present in memory`);
    }
    if (b.received.test(p) && r.engine.requested.has(b.base + off)) throw new Error(`requested set holds received page ${p}`);
  }
  // every state change journaled is an allowed one
  for (const rec of r.sink.records) {
    if (rec.kind !== EventKind.FX_STATE || rec.a !== MachineId.MIGRATION) continue;
    const { from, to } = unpack(rec.payload!) as { from: string; to: string };
    if (!(ALLOWED_STATUS[from] ?? []).includes(to)) throw new Error(`migration status ${from} -> ${to} is not allowed`);
  }
  // receive bits are only set by placement or a precopy write: count them
  const placedOrWritten = new Set<number>();
  for (const rec of r.sink.records) {
    if (rec.kind === EventKind.FX_COPY || rec.kind === EventKind.FX_ZERO || rec.kind === EventKind.FX_WRITE) placedOrWritten.add(rec.offset / TARGET_PAGE_SIZE);
    if (rec.kind === EventKind.IN_PAGE && rec.b === 1 && r.sink.records[rec.seq + 1]?.cause !== rec.seq) placedOrWritten.add(rec.offset / TARGET_PAGE_SIZE); // precopy zero page over empty memory: no write needed
  }
  for (let p = 0; p < PAGES; p++) if (b.received.test(p) && !placedOrWritten.has(p)) throw new Error(`page ${p} received without a placement`);
}

class Cmd implements fc.Command<Model, Rig> {
  constructor(
    readonly name: string,
    readonly apply: (r: Rig) => void,
    /** The postcopy command this is (for the table), if any. */
    readonly postcopyCommand?: string,
  ) {}
  check(): boolean {
    return true;
  }
  run(m: Model, r: Rig): void {
    const over = m.status === 'failed' || m.status === 'completed' || (this.postcopyCommand === 'EOS' && m.status.startsWith('postcopy-') && m.status !== 'postcopy-active');
    const expected = this.postcopyCommand && !over ? POSTCOPY[this.postcopyCommand]![m.pc] : undefined;
    const before = r.engine.postcopyState;
    let refused = false;
    try {
      this.apply(r);
    } catch (err) {
      if (!(err instanceof PostcopyError)) throw err;
      refused = true;
    }
    if (this.postcopyCommand) {
      if (expected === undefined && !refused) throw new Error(`${this.name} was accepted in ${m.pc}`);
      if (expected !== undefined && refused && this.postcopyCommand !== 'DISCARD') throw new Error(`${this.name} was refused in ${m.pc}`);
      if (refused && r.engine.postcopyState !== before) throw new Error(`refused ${this.name} changed the state`);
    }
    m.pc = (['NONE', 'ADVISE', 'DISCARD', 'LISTENING', 'RUNNING', 'END'] as const)[r.engine.postcopyState]!;
    m.status = r.engine.stateOf(MachineId.MIGRATION);
    // With preempt, the main stream's end waits for the preempt channel's: the state stays (END follows at that EOS).
    const deferred = this.postcopyCommand === 'EOS' && r.engine.waitingForPreemptChannel && r.engine.postcopyState === before;
    if (expected !== undefined && !refused && m.pc !== expected && !deferred) throw new Error(`${this.name}: state ${m.pc}, table says ${expected}`);
    invariants(r);
  }
  toString(): string {
    return this.name;
  }
}

const page = fc.nat({ max: PAGES - 1 });
const commands = [
  fc.constant(new Cmd('ADVISE', (r) => advise(r), 'ADVISE')),
  fc.tuple(page, fc.integer({ min: 1, max: 4 })).map(([p, n]) => new Cmd(`DISCARD(${p},${n})`, (r) => discard(r, 'pc.ram', [[p * 4096, Math.min(n, PAGES - p) * 4096]]), 'DISCARD')),
  fc.constant(new Cmd('LISTEN', (r) => listen(r), 'LISTEN')),
  fc.constant(new Cmd('RUN', (r) => run(r), 'RUN')),
  fc.constant(new Cmd('EOS', (r) => r.engine.endOfStream(0, 9), 'EOS')),
  fc.tuple(page, fc.nat({ max: 2 })).map(([p, v]) => new Cmd(`FAULT(${p},vcpu ${v})`, (r) => r.engine.fault(BASE + p * 4096 + 8, 73001 + v, 5))),
  fc.tuple(page, fc.boolean(), fc.nat({ max: 1 })).map(([p, z, ch]) => new Cmd(`PAGE(${p},${z ? 'zero' : 'data'},ch${ch})`, (r) => r.engine.page(ch, 0, p * 4096, z, pageData(p * 4096), 0, 6))),
  fc.constant(new Cmd('BREAK', (r) => { r.link.up = false; r.engine.channelBroken(0, 'cut', 7); })),
  fc.constant(new Cmd('CONNECT', (r) => { r.link.up = true; r.engine.channelConnected(0, 8); })),
  fc.constant(new Cmd('RESUME', (r) => r.engine.command(MigCommand.POSTCOPY_RESUME, new Uint8Array(0), 9))),
  fc.constant(new Cmd('STREAM_ERROR', (r) => r.engine.streamError(0, 'EPROTO', 10))),
];
/** With preempt: the preempt channel connects, ends and breaks at any point too. */
const preemptCommands = [
  ...commands,
  fc.constant(new Cmd('PREEMPT_CONNECT', (r) => r.engine.channelConnected(1, 11))),
  fc.constant(new Cmd('PREEMPT_EOS', (r) => r.engine.endOfStream(1, 12))),
  fc.constant(new Cmd('PREEMPT_BREAK', (r) => r.engine.channelBroken(1, 'cut', 13))),
];

test('model-based: random command and event sequences follow the reference transition table and keep the invariants', (t) => {
  assertProperty(
    fc.property(fc.commands(commands, { maxCommands: 40 }), (cmds) => {
      const r = rig({ blocks: [{ name: 'pc.ram', length: PAGES * 4096 }] });
      fc.modelRun(() => ({ model: { pc: 'NONE', status: 'setup' } as Model, real: r }), cmds);
      if (r.engine.postcopyState === 5) {
        if (r.engine.stateOf(MachineId.FAULT_THREAD) !== 'exited') throw new Error('fault thread still there after cleanup');
        if (r.backend.isRegistered(0)) throw new Error('block still registered after cleanup');
      }
    }),
    fcParams(),
  );
  t.true(fcParams().numRuns > 0);
});

test('model-based: any random prefix that reaches postcopy completes with every page received and memory equal to the source', (t) => {
  assertProperty(
    // mainEndsFirst: the main stream's EOS is read before the preempt channel's last pages (two sockets, no order between them).
    fc.property(fc.boolean().chain((preempt) => fc.tuple(fc.constant(preempt), fc.commands(preempt ? preemptCommands : commands, { maxCommands: 25 }))), fc.boolean(), ([preempt, cmds], mainEndsFirst) => {
      const r = rig({ blocks: [{ name: 'pc.ram', length: PAGES * 4096 }], preempt });
      try {
        fc.modelRun(() => ({ model: { pc: 'NONE', status: 'setup' } as Model, real: r }), cmds);
      } catch (err) {
        if (!(err instanceof PostcopyError)) throw err;
      }
      const st = r.engine.postcopyState;
      const status = r.engine.stateOf(MachineId.MIGRATION);
      if (st === 5 || status === 'failed' || st === 0 && status !== 'setup' && status !== 'active') return; // finished or failed: nothing to complete
      // Drive it home: recover if paused, reach RUNNING, send every page, end the stream.
      r.link.up = true;
      if (status === 'postcopy-paused') r.engine.channelConnected(0, 20);
      if (r.engine.stateOf(MachineId.MIGRATION) === 'postcopy-recover') {
        if (preempt && !r.engine.preemptChannelOpen) r.engine.channelConnected(1, 20); // the recovery's new preempt connection
        r.engine.command(MigCommand.POSTCOPY_RESUME, new Uint8Array(0), 21);
      }
      if (r.engine.postcopyState === 0) advise(r, 22);
      if (r.engine.postcopyState < 3) listen(r, 23);
      if (r.engine.postcopyState === 3) run(r, 24);
      if (preempt && r.engine.stateOf(MachineId.PREEMPT_THREAD) === 'CREATED.waitingForChannel') r.engine.channelConnected(1, 24);
      // With preempt, odd pages come on the preempt channel (as urgent and prefetched pages do).
      const missing = [];
      for (let p = 0; p < PAGES; p++) if (!r.engine.blocks[0]!.received.test(p)) missing.push(p);
      const onPreempt = preempt && r.engine.preemptChannelOpen ? missing.filter((p) => p % 2 === 1) : [];
      for (const p of missing) if (!onPreempt.includes(p)) r.engine.page(0, 0, p * 4096, false, pageData(p * 4096), 0, 25);
      if (mainEndsFirst) {
        r.engine.endOfStream(0, 26);
        if (onPreempt.length > 0 && r.engine.stateOf(MachineId.MIGRATION) === 'completed') throw new Error('completed before the preempt channel delivered its pages');
      }
      for (const p of onPreempt) r.engine.page(1, 0, p * 4096, false, pageData(p * 4096), 0, 27);
      if (preempt && r.engine.preemptChannelOpen) r.engine.endOfStream(1, 28);
      // A main EOS of the random prefix may still wait for the preempt channel: it ended then.
      if (!mainEndsFirst && r.engine.stateOf(MachineId.MIGRATION) !== 'completed') r.engine.endOfStream(0, 29);
      if (!r.engine.allReceived()) throw new Error('not every page received');
      if (r.engine.stateOf(MachineId.MIGRATION) !== 'completed') throw new Error(`status ${r.engine.stateOf(MachineId.MIGRATION)}`);
      if (r.engine.stateOf(MachineId.FAULT_THREAD) !== 'exited') throw new Error('fault thread not exited');
      if (preempt && !r.engine.stateOf(MachineId.PREEMPT_THREAD).startsWith('NONE')) throw new Error(`preempt thread ${r.engine.stateOf(MachineId.PREEMPT_THREAD)}`);
      for (let p = 0; p < PAGES; p++) {
        const got = r.backend.read(0, p * 4096, 4096);
        // a page is the source's data unless it arrived as a zero page and was never rewritten
        const zero = got.every((x) => x === 0);
        if (!zero && Buffer.compare(got, pageData(p * 4096)) !== 0) throw new Error(`page ${p} differs from the source image`);
      }
    }),
    fcParams(),
  );
  t.true(fcParams().numRuns > 0);
});
