/**
 * What `postcopy tap` journals: the bytes of every connection it forwards, decoded off the
 * forwarding path (tap.ts hands them over after they went out), turned into journal records.
 *
 * The journal is the one the engine and `import-qemu` write (docs/journal.md, source 'tap'):
 * - inputs in the engine's own format (IN_COMMAND with QEMU's payloads, IN_PAGE per channel,
 *   IN_CHANNEL_CONNECTED / BROKEN, IN_EOS), so `replay` can drive a fresh engine with them;
 * - the states those inputs imply (FX_STATE of the postcopy and migration machines: ADVISE,
 *   DISCARD, LISTENING, RUNNING, END; postcopy-paused at a break, postcopy-recover when a
 *   resumed main connection arrives, postcopy-active at RESUME_ACK, completed at EOF);
 * - what the destination said on the return path: FX_REQUEST per REQ_PAGES(_ID),
 *   FX_RECV_BITMAP, FX_RESUME_ACK, TAP_PONG, TAP_SHUT;
 * - the connections themselves (TAP_CONN_*), and TAP_UNDECODED from the byte where a
 *   direction could not be decoded (forwarding never stops for it).
 *
 * Time of every record: when the relay read the bytes (ns since the tap started).
 *
 * Connections are known by their first bytes: "QEVM" starts a main connection; a COMMAND
 * byte (RECV_BITMAP) once a main connection was seen starts a resumed one; a RAM record
 * (PAGE, ZERO or the closing EOS) starts a preempt channel; anything else is not QEMU.
 */
import { createHash } from 'node:crypto';
import { pack } from 'msgpackr';
import { MigCommand, PostcopyState, POSTCOPY_STATE_NAMES, RECV_BITMAP_END_MARK, TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { EventKind, MachineId, RequestFlag, TapRole, type EventKindValue, type RecordSink, type TapRoleValue } from '../../engine/events.js';
import {
  MainStreamDecoder,
  PreemptChannelDecoder,
  RAM_FLAG_MASK,
  RamFlag,
  ReturnPathDecoder,
  STREAM_MAGIC,
  type MainItem,
  type MainStreamState,
  type PreemptItem,
  type RamBlockInfo,
  type ReturnPathItem,
} from '../../engine/qemuWire/index.js';
import { encodeAdvise, encodeRamDiscard, encodeRecvBitmapRequest, encodeReqPages, encodeReqPagesId } from '../../engine/wire.js';
import { WireError } from '../../errors.js';
import type { JournalMeta } from '../../journal/meta.js';

/** Direction of a connection's bytes. */
export const Direction = { TO_DESTINATION: 0, TO_SOURCE: 1 } as const;
export type DirectionValue = (typeof Direction)[keyof typeof Direction];

/** Where the records go, and where meta changes go (the journal writer does both). */
export interface TapSink extends RecordSink {
  updateMeta(values: Partial<JournalMeta>): void;
}

/** Fake, disjoint host addresses for the blocks (a relay sees none): replay's engine needs a layout. */
const FAKE_HOST_BASE = 0x7f00_0000_0000;
const EMPTY = new Uint8Array(0);
/** Bytes kept while a connection's role is unknown (the longest prefix that decides is 8). */
const CLASSIFY_BYTES = 8;

export interface TapSummary {
  connections: Array<{ id: number; role: string; bytesToDestination: number; bytesToSource: number; undecodedFrom: Array<{ direction: DirectionValue; byte: number; reason: string }> }>;
  /** REQ_PAGES + REQ_PAGES_ID seen on every return path. */
  requests: number;
  /** Target pages seen per channel after LISTEN (main, preempt) and before (precopy). */
  pages: { precopy: number; main: number; preempt: number };
  migration: string;
  postcopy: string;
  breaks: number;
}

interface TapConnection {
  id: number;
  role: TapRoleValue | null;
  bytes: [number, number];
  /** First bytes of each direction while the role is unknown. */
  held: [Uint8Array[], Uint8Array[]];
  heldTimes: [number[], number[]];
  main: MainStreamDecoder | null;
  preempt: PreemptChannelDecoder | null;
  returnPath: ReturnPathDecoder | null;
  /** Decoding stopped in this direction (undecodable bytes, or the tap fell behind). */
  stopped: [boolean, boolean];
  undecoded: TapSummary['connections'][number]['undecodedFrom'];
  /** The stream's end was read (EOF item on main, EOS on preempt). */
  streamEnded: boolean;
  /** Its break was journaled (once). */
  broken: boolean;
  closed: [boolean, boolean];
}

export class TapRecorder {
  private readonly conns = new Map<number, TapConnection>();
  private readonly blockIndex = new Map<string, number>();
  private blocks: RamBlockInfo[] = [];
  private postcopy: number = PostcopyState.NONE;
  private migration = 'setup';
  /** What a resumed main connection takes over: the last main connection's decoder state. */
  private mainState: MainStreamState | null = null;
  private lastRequestBlock: string | null = null;
  private preemptSeen = false;
  private requests = 0;
  private readonly pages = { precopy: 0, main: 0, preempt: 0 };
  private breaks = 0;
  private readonly run: Record<string, unknown>;

  constructor(private readonly sink: TapSink, run: Record<string, unknown>) {
    this.run = { ...run };
  }

  /** The meta a tap journal starts with (blocks come at MEM_SIZE). */
  static initialMeta(run: Record<string, unknown>, timeOriginNs: number): JournalMeta {
    return {
      engineVersion: '0.1.0',
      source: 'tap',
      created: new Date().toISOString(),
      timeOriginNs,
      blocks: [],
      vcpuTids: [],
      capabilities: [],
      blocktimeMode: 'both',
      run,
    };
  }

  /** The migration's status as the recorded stream implies it ('setup', 'active', 'postcopy-paused', 'completed'...). */
  get migrationStatus(): string {
    return this.migration;
  }

  // ---------------------------------------------------------------------------
  // What the relay reports

  opened(id: number, t: number, client: string, upstream: string): void {
    this.conns.set(id, {
      id,
      role: null,
      bytes: [0, 0],
      held: [[], []],
      heldTimes: [[], []],
      main: null,
      preempt: null,
      returnPath: null,
      stopped: [false, false],
      undecoded: [],
      streamEnded: false,
      broken: false,
      closed: [false, false],
    });
    this.emit(EventKind.TAP_CONN_OPEN, t, -1, 0, id, 0, pack({ client, upstream }));
  }

  /** Bytes forwarded on connection `id` in `direction`, read at `t`. The chunk is read during the call only. */
  data(id: number, direction: DirectionValue, chunk: Uint8Array, t: number): void {
    const c = this.conns.get(id);
    if (c === undefined) return;
    c.bytes[direction] += chunk.length;
    if (c.stopped[direction]) return;
    if (c.role === null) {
      c.held[direction].push(chunk.slice()); // a copy: the caller may reuse the memory after this call
      c.heldTimes[direction].push(t);
      if (direction === Direction.TO_DESTINATION) this.classify(c, false);
      return;
    }
    this.decode(c, direction, chunk, t);
  }

  /** The relay could not hand these bytes over (it fell behind): nothing is decoded from `fromByte` on. */
  gap(id: number, direction: DirectionValue, fromByte: number, reason: string, t: number): void {
    const c = this.conns.get(id);
    if (c === undefined || c.stopped[direction]) return;
    this.stop(c, direction, fromByte, reason, t);
  }

  /** One direction ended with EOF after `bytes` bytes. */
  closed(id: number, direction: DirectionValue, bytes: number, t: number): void {
    const c = this.conns.get(id);
    if (c === undefined || c.closed[direction]) return;
    c.closed[direction] = true;
    if (c.role === null && direction === Direction.TO_DESTINATION) this.classify(c, true);
    this.emit(EventKind.TAP_CONN_CLOSE, t, -1, bytes, id, direction, null);
    if (direction === Direction.TO_DESTINATION) this.streamStopped(c, 'closed by the peer (EOF)', t);
  }

  /** A socket error ended the connection. */
  failed(id: number, side: DirectionValue, message: string, t: number): void {
    const c = this.conns.get(id);
    if (c === undefined) return;
    if (c.role === null) this.classify(c, true);
    this.emit(EventKind.TAP_CONN_ERROR, t, -1, c.bytes[0], id, side, pack(message));
    this.streamStopped(c, `connection error: ${message}`, t);
  }

  /** The tap is done: what it saw. Meta gets the summary. */
  finish(): TapSummary {
    const summary: TapSummary = {
      connections: [...this.conns.values()].map((c) => ({
        id: c.id,
        role: c.role === null ? 'unknown (no byte)' : ['main', 'preempt', 'resumed main', 'not QEMU'][c.role]!,
        bytesToDestination: c.bytes[0],
        bytesToSource: c.bytes[1],
        undecodedFrom: c.undecoded,
      })),
      requests: this.requests,
      pages: { ...this.pages },
      migration: this.migration,
      postcopy: POSTCOPY_STATE_NAMES[this.postcopy]!,
      breaks: this.breaks,
    };
    this.run.result = summary;
    this.sink.updateMeta({ run: this.run });
    return summary;
  }

  // ---------------------------------------------------------------------------
  // Roles

  private classify(c: TapConnection, atEnd: boolean): void {
    const held = c.held[0];
    const total = held.reduce((n, b) => n + b.length, 0);
    if (total === 0) return;
    const head = concatFirst(held, CLASSIFY_BYTES);
    let role: TapRoleValue | null = null;
    const magic = [(STREAM_MAGIC >>> 24) & 0xff, (STREAM_MAGIC >>> 16) & 0xff, (STREAM_MAGIC >>> 8) & 0xff, STREAM_MAGIC & 0xff];
    const magicPrefix = head.every((b, i) => i >= 4 || b === magic[i]);
    if (head.length >= 4 && magicPrefix) role = TapRole.MAIN;
    else if (head[0] === 0x08 && this.mainState !== null) role = TapRole.RESUMED_MAIN;
    else if (head.length >= 8 && this.blocks.length > 0 && looksLikeRamRecord(head)) role = TapRole.PREEMPT;
    else if (head.length >= 8 || !magicPrefix || atEnd) role = TapRole.OTHER;
    if (role === null) return;
    this.assign(c, role);
  }

  private assign(c: TapConnection, role: TapRoleValue): void {
    const t0 = c.heldTimes[0][0] ?? 0;
    c.role = role;
    this.emit(EventKind.TAP_CONN_ROLE, t0, -1, 0, c.id, role, null);
    switch (role) {
      case TapRole.MAIN:
        c.main = new MainStreamDecoder();
        c.returnPath = new ReturnPathDecoder();
        break;
      case TapRole.RESUMED_MAIN:
        c.main = new MainStreamDecoder({ resume: this.mainState! });
        c.returnPath = new ReturnPathDecoder({ lastRequestBlock: this.lastRequestBlock });
        this.input(EventKind.IN_CHANNEL_CONNECTED, t0, -1, 0, 0, 0, null);
        if (this.migration === 'postcopy-paused') this.state(MachineId.MIGRATION, 'postcopy-recover', 'RECOVER', t0);
        break;
      case TapRole.PREEMPT:
        c.preempt = new PreemptChannelDecoder({ blocks: this.blocks });
        if (!this.preemptSeen) {
          this.preemptSeen = true;
          this.sink.updateMeta({ capabilities: ['preempt'] });
        }
        this.input(EventKind.IN_CHANNEL_CONNECTED, t0, -1, 0, 1, 0, null);
        break;
      case TapRole.OTHER: {
        const head = concatFirst(c.held[0], 16);
        this.stop(c, 0, 0, `not a QEMU migration stream: it starts with ${Buffer.from(head).toString('hex')}`, t0);
        this.stop(c, 1, 0, 'the reverse direction of a connection that is not QEMU\'s', t0);
        break;
      }
    }
    for (const direction of [0, 1] as const) {
      const chunks = c.held[direction];
      const times = c.heldTimes[direction];
      c.held[direction] = [];
      c.heldTimes[direction] = [];
      chunks.forEach((chunk, i) => this.decode(c, direction, chunk, times[i]!));
    }
  }

  // ---------------------------------------------------------------------------
  // Decoding

  private decode(c: TapConnection, direction: DirectionValue, chunk: Uint8Array, t: number): void {
    if (c.stopped[direction]) return;
    try {
      if (direction === Direction.TO_DESTINATION) {
        if (c.main !== null) for (const item of c.main.push(chunk)) this.mainItem(c, item, t);
        else if (c.preempt !== null) for (const item of c.preempt.push(chunk)) this.preemptItem(item, t);
      } else if (c.returnPath !== null) {
        for (const item of c.returnPath.push(chunk)) this.returnItem(c, item, t);
        this.lastRequestBlock = c.returnPath.requestBlock;
      } else {
        this.stop(c, direction, 0, c.role === TapRole.PREEMPT ? 'bytes from the destination on the preempt channel (it carries none)' : 'not a return path', t);
      }
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.stop(c, direction, err.offset, err.message, t);
    }
  }

  private stop(c: TapConnection, direction: DirectionValue, fromByte: number, reason: string, t: number): void {
    c.stopped[direction] = true;
    c.undecoded.push({ direction, byte: fromByte, reason });
    this.emit(EventKind.TAP_UNDECODED, t, -1, fromByte, c.id, direction, pack(reason));
  }

  private mainItem(c: TapConnection, item: MainItem, t: number): void {
    switch (item.kind) {
      case 'header':
        this.state(MachineId.MIGRATION, 'active', 'START', t);
        return;
      case 'configuration':
        this.run.machineType = item.machineType;
        this.sink.updateMeta({ run: this.run });
        return;
      case 'section-start':
      case 'section-full':
      case 'section-part':
      case 'section-end':
      case 'section-footer':
      case 'eos':
        return;
      case 'mem-size':
        if (this.blocks.length === 0) this.memSize(item.blocks);
        return;
      case 'open-return-path':
        return this.command(MigCommand.OPEN_RETURN_PATH, EMPTY, t);
      case 'ping':
        return this.command(MigCommand.PING, be32Bytes(item.value), t);
      case 'advise':
        this.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise(item.advise), t);
        return this.postcopyTo(PostcopyState.ADVISE, 'ADVISE', t);
      case 'ram-discard':
        this.command(MigCommand.POSTCOPY_RAM_DISCARD, encodeRamDiscard(item.discard), t);
        if (this.postcopy === PostcopyState.ADVISE) this.postcopyTo(PostcopyState.DISCARD, 'DISCARD', t);
        return;
      case 'switchover-start':
        return this.command(MigCommand.SWITCHOVER_START, EMPTY, t);
      case 'packaged':
        return this.command(MigCommand.PACKAGED, be32Bytes(item.length), t);
      case 'listen':
        this.command(MigCommand.POSTCOPY_LISTEN, EMPTY, t);
        this.postcopyTo(PostcopyState.LISTENING, 'LISTEN', t);
        if (this.migration === 'active') this.state(MachineId.MIGRATION, 'postcopy-active', 'POSTCOPY_START', t);
        return;
      case 'device-state':
        // A copy: the bytes may be a view into shared memory, which hashing may refuse.
        this.run.deviceState = { bytes: item.bytes.length, sha256: createHash('sha256').update(item.bytes.slice()).digest('hex') };
        this.sink.updateMeta({ run: this.run });
        return;
      case 'run':
        this.command(MigCommand.POSTCOPY_RUN, EMPTY, t);
        return this.postcopyTo(PostcopyState.RUNNING, 'RUN', t);
      case 'postcopy-resume':
        return this.command(MigCommand.POSTCOPY_RESUME, EMPTY, t);
      case 'recv-bitmap-request':
        return this.command(MigCommand.RECV_BITMAP, encodeRecvBitmapRequest(item.blockName), t);
      case 'page':
      case 'zero-page':
        return this.page(0, item.block, item.pageOffset, item.kind === 'zero-page', t);
      case 'eof':
        c.streamEnded = true;
        this.input(EventKind.IN_EOS, t, -1, 0, 0, 0, null);
        if (this.postcopy >= PostcopyState.LISTENING) this.postcopyTo(PostcopyState.END, 'EOS', t);
        if (this.migration !== 'completed' && this.migration !== 'failed') this.state(MachineId.MIGRATION, 'completed', 'COMPLETE', t);
        this.mainState = c.main!.state();
        return;
    }
  }

  private preemptItem(item: PreemptItem, t: number): void {
    switch (item.kind) {
      case 'page':
      case 'zero-page':
        return this.page(1, item.block, item.pageOffset, item.kind === 'zero-page', t);
      case 'eos':
        this.input(EventKind.IN_EOS, t, -1, 0, 1, 0, null);
        return;
    }
  }

  private returnItem(c: TapConnection, item: ReturnPathItem, t: number): void {
    switch (item.kind) {
      case 'shut':
        this.emit(EventKind.TAP_SHUT, t, -1, 0, c.id, item.status, null);
        // The destination says it is done. The main stream's EOF usually said so first; when
        // that stream was not decoded to its end (the recorder fell behind: TAP_UNDECODED), this
        // is how the tap knows the migration completed, and so ends by itself.
        if (item.status === 0 && this.postcopy >= PostcopyState.LISTENING && this.migration !== 'completed' && this.migration !== 'failed') {
          this.state(MachineId.MIGRATION, 'completed', 'SHUT', t);
        }
        return;
      case 'pong':
        this.emit(EventKind.TAP_PONG, t, -1, 0, c.id, item.value, null);
        return;
      case 'page-request': {
        this.requests++;
        const block = this.blockIndex.get(item.block) ?? -1;
        const payload = item.named ? encodeReqPagesId(item.block, item.start, item.length) : encodeReqPages(item.start, item.length);
        this.sink.append(EventKind.FX_REQUEST, t, -1, block, block < 0 ? 0 : item.start, item.length, item.named ? RequestFlag.WITH_ID : 0, payload);
        return;
      }
      case 'recv-bitmap': {
        const block = this.blockIndex.get(item.blockName) ?? -1;
        const blob = new Uint8Array(16 + item.bitmap.length);
        const view = new DataView(blob.buffer);
        view.setBigUint64(0, BigInt(item.bitmap.length));
        blob.set(item.bitmap, 8);
        view.setBigUint64(8 + item.bitmap.length, RECV_BITMAP_END_MARK);
        this.sink.append(EventKind.FX_RECV_BITMAP, t, -1, block, 0, blob.length, 0, blob);
        return;
      }
      case 'resume-ack':
        this.sink.append(EventKind.FX_RESUME_ACK, t, -1, -1, 0, 0, 0, be32Bytes(item.value));
        if (this.migration === 'postcopy-recover') this.state(MachineId.MIGRATION, 'postcopy-active', 'RESUMED', t);
        return;
      case 'switchover-ack':
        return;
    }
  }

  /** The stream of a connection stopped (EOF or error): a break, unless it had ended. Once per connection. */
  private streamStopped(c: TapConnection, reason: string, t: number): void {
    // A stream no longer decoded (TAP_UNDECODED) may have ended fine or not: nothing is inferred.
    if (c.broken || c.streamEnded || c.role === null || c.role === TapRole.OTHER || c.stopped[0]) return;
    c.broken = true;
    let why = reason;
    const decoder = c.main ?? c.preempt;
    if (decoder !== null && !c.stopped[0]) {
      try {
        decoder.end();
      } catch (err) {
        if (!(err instanceof WireError)) throw err;
        why = `${reason}; ${err.message}`;
      }
    }
    if (c.main !== null) this.mainState = c.main.state();
    if (c.returnPath !== null) this.lastRequestBlock = c.returnPath.requestBlock;
    // The preempt channel's own EOS came before its EOF: it ended cleanly.
    if (c.role === TapRole.PREEMPT && c.preempt !== null && (this.migration === 'completed' || this.postcopy === PostcopyState.END)) return;
    const channel = c.role === TapRole.PREEMPT ? 1 : 0;
    this.input(EventKind.IN_CHANNEL_BROKEN, t, -1, 0, channel, 0, pack(why));
    if (this.postcopy >= PostcopyState.LISTENING && this.postcopy < PostcopyState.END) {
      if (this.migration === 'postcopy-active' || this.migration === 'postcopy-recover') {
        this.breaks++;
        this.state(MachineId.MIGRATION, 'postcopy-paused', 'CHANNEL_BROKEN', t);
      }
    } else if (this.migration !== 'completed' && this.migration !== 'failed' && channel === 0) {
      this.state(MachineId.MIGRATION, 'failed', 'CHANNEL_BROKEN', t);
    }
  }

  // ---------------------------------------------------------------------------
  // Records

  private memSize(blocks: readonly RamBlockInfo[]): void {
    this.blocks = [...blocks];
    let address = FAKE_HOST_BASE;
    const meta: JournalMeta['blocks'] = blocks.map((b, i) => {
      this.blockIndex.set(b.name, i);
      const hostPageSize = b.pageSize ?? TARGET_PAGE_SIZE;
      const entry = { name: b.name, length: b.usedLength, hostPageSize, hostAddress: address };
      address += Math.ceil(b.usedLength / (2 * 1024 * 1024) + 1) * 2 * 1024 * 1024;
      return entry;
    });
    this.sink.updateMeta({ blocks: meta });
  }

  private page(channel: 0 | 1, blockName: string, offset: number, zero: boolean, t: number): void {
    const block = this.blockIndex.get(blockName) ?? -1;
    if (channel === 1) this.pages.preempt++;
    else if (this.postcopy >= PostcopyState.LISTENING) this.pages.main++;
    else this.pages.precopy++;
    this.input(EventKind.IN_PAGE, t, block, block < 0 ? 0 : offset, channel, zero ? 1 : 0, null);
  }

  private command(command: number, payload: Uint8Array, t: number): void {
    this.input(EventKind.IN_COMMAND, t, -1, 0, command, 0, payload.length > 0 ? payload.slice() : null);
  }

  private postcopyTo(to: number, event: string, t: number): void {
    if (to <= this.postcopy) return;
    const from = POSTCOPY_STATE_NAMES[this.postcopy]!;
    this.postcopy = to;
    this.sink.append(EventKind.FX_STATE, t, -1, -1, 0, MachineId.POSTCOPY, 0, pack({ from, to: POSTCOPY_STATE_NAMES[to]!, event }));
  }

  private state(machine: typeof MachineId.MIGRATION, to: string, event: string, t: number): void {
    if (this.migration === to) return;
    const from = this.migration;
    this.migration = to;
    this.sink.append(EventKind.FX_STATE, t, -1, -1, 0, machine, 0, pack({ from, to, event }));
  }

  private input(kind: EventKindValue, t: number, block: number, offset: number, a: number, b: number, payload: Uint8Array | null): void {
    this.sink.append(kind, t, -1, block, offset, a, b, payload);
  }

  private emit(kind: EventKindValue, t: number, block: number, offset: number, a: number, b: number, payload: Uint8Array | null): void {
    this.sink.append(kind, t, -1, block, offset, a, b, payload);
  }
}

/** Pure: a RAM record of the preempt channel (PAGE, ZERO, maybe with CONTINUE, or its closing EOS). */
function looksLikeRamRecord(head: Uint8Array): boolean {
  const lo = ((head[4]! << 24) | (head[5]! << 16) | (head[6]! << 8) | head[7]!) >>> 0;
  const flags = lo & RAM_FLAG_MASK;
  const type = flags & ~RamFlag.CONTINUE;
  if (type === RamFlag.PAGE || type === RamFlag.ZERO) return true;
  return flags === RamFlag.EOS && head.subarray(0, 8).every((b, i) => (i === 7 ? b === RamFlag.EOS : b === 0));
}

/** Pure: the first `n` bytes (or fewer) of a list of chunks. */
function concatFirst(chunks: readonly Uint8Array[], n: number): Uint8Array {
  const out: number[] = [];
  for (const c of chunks) {
    for (let i = 0; i < c.length && out.length < n; i++) out.push(c[i]!);
    if (out.length >= n) break;
  }
  return Uint8Array.from(out);
}

function be32Bytes(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0);
  return out;
}
