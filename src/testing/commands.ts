/**
 * Command sequences for `fc.commands`: random main-stream commands, pages and faults
 * against a `Destination` you built (over your backend, or ours), checked after every
 * step against the reference command table (POSTCOPY_COMMAND_TABLE).
 */
import fc from 'fast-check';
import { MigCommand, TARGET_PAGE_SIZE } from '../engine/constants.js';
import type { Destination } from '../engine/destination.js';
import { encodeAdvise, encodeRamDiscard, hostPageSizeSummary } from '../engine/wire.js';
import { PostcopyError } from '../errors.js';
import { POSTCOPY_COMMAND_TABLE, type PostcopyStateName } from './models.js';

const STATE_NAMES: readonly PostcopyStateName[] = ['NONE', 'ADVISE', 'DISCARD', 'LISTENING', 'RUNNING', 'END'];

/** What the model knows: the PostcopyState the reference expects. */
export interface DestinationModel {
  state: PostcopyStateName;
}

/** The system under test: an engine, and the time of the next input in ns. */
export interface DestinationReal {
  engine: Destination;
  tNs: number;
}

type TableCommand = keyof typeof POSTCOPY_COMMAND_TABLE;

class DestinationCommand implements fc.Command<DestinationModel, DestinationReal> {
  constructor(
    readonly label: string,
    readonly apply: (real: DestinationReal) => void,
    readonly tableCommand: TableCommand | null,
  ) {}
  check(): boolean {
    return true;
  }
  run(model: DestinationModel, real: DestinationReal): void {
    const expected = this.tableCommand === null ? undefined : POSTCOPY_COMMAND_TABLE[this.tableCommand][model.state];
    let refused = false;
    real.tNs += 1000;
    try {
      this.apply(real);
    } catch (err) {
      if (!(err instanceof PostcopyError)) throw err;
      refused = true;
    }
    const now = STATE_NAMES[real.engine.postcopyState]!;
    if (this.tableCommand !== null) {
      if (expected === undefined && !refused && now !== model.state) throw new Error(`${this.label} was accepted in ${model.state} (now ${now}); the reference refuses it`);
      if (expected !== undefined && !refused && now !== expected && !real.engine.waitingForPreemptChannel) throw new Error(`${this.label}: state ${now}, the reference says ${expected}`);
    }
    model.state = now;
  }
  toString(): string {
    return this.label;
  }
}

/** Options of `destinationCommands`. */
export interface DestinationCommandsOptions {
  /** The engine's first block, as configured (name, length in bytes). */
  block: { name: string; lengthBytes: number; hostPageSizeBytes?: number };
  /** Host address of that block (`engine.hostAddressOf(0)`). */
  hostAddress: number;
  /** vCPU thread ids faults come from. */
  vcpuTids: readonly number[];
}

/**
 * Arbitraries of commands for `fc.commands(destinationCommands(...))` and `fc.modelRun`
 * with `{ model: { state: 'NONE' }, real: { engine, tNs: 0 } }`.
 */
export function destinationCommands(opts: DestinationCommandsOptions): Array<fc.Arbitrary<fc.Command<DestinationModel, DestinationReal>>> {
  const hps = opts.block.hostPageSizeBytes ?? TARGET_PAGE_SIZE;
  const pages = opts.block.lengthBytes / TARGET_PAGE_SIZE;
  const page = fc.nat({ max: pages - 1 });
  const data = new Uint8Array(TARGET_PAGE_SIZE).fill(0x5a);
  const cmd = (label: string, apply: (r: DestinationReal) => void, table: TableCommand | null = null): DestinationCommand => new DestinationCommand(label, apply, table);
  return [
    fc.constant(
      cmd('ADVISE', (r) => r.engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary(r.engine.blocks.map((b) => b.hostPageSize)), targetPageSize: TARGET_PAGE_SIZE }), r.tNs), 'ADVISE'),
    ),
    fc.tuple(fc.nat({ max: Math.max(0, opts.block.lengthBytes / hps - 1) }), fc.integer({ min: 1, max: 4 })).map(([hp, n]) => {
      const lengthBytes = Math.min(n, opts.block.lengthBytes / hps - hp) * hps;
      return cmd(`DISCARD(offset ${hp * hps}, ${lengthBytes} bytes)`, (r) => r.engine.command(MigCommand.POSTCOPY_RAM_DISCARD, encodeRamDiscard({ blockName: opts.block.name, ranges: [[hp * hps, lengthBytes]] }), r.tNs), 'DISCARD');
    }),
    fc.constant(cmd('LISTEN', (r) => r.engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), r.tNs), 'LISTEN')),
    fc.constant(cmd('RUN', (r) => r.engine.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0), r.tNs), 'RUN')),
    fc.constant(cmd('EOS', (r) => r.engine.endOfStream(0, r.tNs), 'EOS')),
    fc.tuple(page, fc.nat({ max: Math.max(0, opts.vcpuTids.length - 1) })).map(([p, v]) =>
      cmd(`FAULT(page ${p}, vCPU ${v})`, (r) => r.engine.fault(opts.hostAddress + p * TARGET_PAGE_SIZE + 8, opts.vcpuTids[v] ?? 0, r.tNs)),
    ),
    fc.tuple(page, fc.boolean()).map(([p, zero]) => cmd(`PAGE(page ${p}, ${zero ? 'zero' : 'data'})`, (r) => r.engine.page(0, 0, p * TARGET_PAGE_SIZE, zero, data, 0, r.tNs))),
  ];
}
