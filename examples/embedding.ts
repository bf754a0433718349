import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  describeGuest, decodePageRequest, Destination, encodeAdvise, hostPageSizeSummary, JournalReader, JournalWriter,
  MigCommand, PlaceOutcome, pageInput, replay, type Backend, type FaultListener, type PlaceOutcomeValue,
} from 'postcopy-engine';

// One description of the guest: engine config, backend layout and journal meta all come from it.
const PAGE = 4096;
const guest = describeGuest({ blocks: [{ name: 'pc.ram', lengthBytes: 16 * PAGE }], vcpuTids: [4242] });

/** The VMM's own guest memory behind the Backend port: a Map of placed pages. */
class MyMemory implements Backend {
  readonly kind = 'custom' as const;
  readonly blocks = guest.layout;
  readonly pages = new Map<number, Uint8Array>();
  listener: FaultListener | null = null;
  probe() { return { ok: true, checks: [] }; }
  hostAddress(block: number) { return 2 ** 40 * (block + 1); }
  listen(listener: FaultListener) { this.listener = listener; }
  register() {} unregister() {} resize() {} setHugePages() {} wake() {} endPostcopy() {} close() {}
  takeFaults() { return 0; }
  discard(_b: number, offset: number, length: number) { for (let o = offset; o < offset + length; o += PAGE) this.pages.delete(o); }
  write(_b: number, offset: number, data: Uint8Array, at: number, length: number) { this.pages.set(offset, data.slice(at, at + length)); }
  copy(_b: number, offset: number, data: Uint8Array, at: number, length: number): PlaceOutcomeValue {
    if (this.pages.has(offset)) return PlaceOutcome.ALREADY_PRESENT;
    this.pages.set(offset, data.slice(at, at + length));
    return PlaceOutcome.PLACED;
  }
  zero(b: number, offset: number, length: number) { return this.copy(b, offset, new Uint8Array(length), 0, length); }
  read(_b: number, offset: number, length: number) { return this.pages.get(offset)?.slice(0, length) ?? new Uint8Array(length); }
  /** A vCPU touched a missing page: the VMM's fault reader reports it (time in ns). */
  fault(address: number, tid: number, tNs: number) {
    this.listener?.({ count: 1, addresses: Float64Array.of(address), tids: Int32Array.of(tid), timesNs: Float64Array.of(tNs) });
  }
}

// The VMM's own transport: here a queue of page requests the "source" answers in order.
const requests: Array<{ start: number; length: number }> = [];
const memory = new MyMemory();
const path = join(tmpdir(), `embedding-${process.pid}.db`);
const journal = JournalWriter.create(path, guest.journalMeta((b) => memory.hostAddress(b), { timeOriginNs: 0 }), { overwrite: true });
const engine = new Destination(guest.destination, memory, { send: (type, payload) => (requests.push(decodePageRequest(type, payload)), true) }, journal);
const sourcePage = (offset: number): Uint8Array => new Uint8Array(PAGE).fill(offset / PAGE + 1);

let tNs = 1000;
engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary([PAGE]), targetPageSize: PAGE }), (tNs += 1000));
engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), (tNs += 1000));
engine.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0), (tNs += 1000));
memory.fault(memory.hostAddress(0) + 5 * PAGE + 12, 4242, (tNs += 1000)); // the vCPU blocks on page 5
for (const r of requests.splice(0)) pageInput(engine, { channel: 0, block: 0, offsetBytes: r.start, data: sourcePage(r.start), tNs: (tNs += 1000) });
for (let p = 0; p < 16; p++) if (p !== 5) pageInput(engine, { channel: 0, block: 0, offsetBytes: p * PAGE, data: sourcePage(p * PAGE), tNs: (tNs += 1000) });
engine.endOfStream(0, (tNs += 1000));
journal.close();

const result = replay(JournalReader.open(path));
console.log(`state ${engine.stateOf(1)}, ${memory.pages.size} pages placed, replay ${result.ok ? `matched ${result.events} events` : result.divergence?.message}`);
if (!result.ok || memory.pages.size !== 16 || memory.read(0, 5 * PAGE, 1)[0] !== 6) process.exit(1);
