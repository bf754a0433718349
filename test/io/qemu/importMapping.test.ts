/**
 * How trace lines become journal events, on small hand-built traces: lines written out
 * of time order, a pause and its recovery, pages whose block only their placement shows,
 * and the text of kept lines.
 */
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { unpack } from 'msgpackr';
import { EventKind, FaultDisposition, RequestFlag } from '../../../src/engine/events.js';
import { importQemuTrace } from '../../../src/io/qemu/qemuImport.js';
import { LineProblem, parseTraceLine } from '../../../src/io/qemu/qemuTrace.js';
import { formatTraceLine } from '../../../src/io/qemu/qemuTraceFormat.js';
import { JournalReader } from '../../../src/journal/journalReader.js';
import type { EventRecord } from '../../../src/engine/events.js';
import { analyze, fixture, tmpPath } from '../../forensics/helpers.js';

const SEC = 1795337949;
const at = (us: number): string => `${SEC + Math.floor(us / 1e6)}.${String(us % 1e6).padStart(6, '0')}`;
const hex = (n: number): string => '0x' + n.toString(16);
const MAIN = 100;
const FAULT = 200;
const LISTEN = 300;
const VCPU = [400, 401];
const RAM = 0x7f0000000000;
const BIOS = 0x7f1000000000;
const line = (tid: number, us: number, text: string): string => `${tid}@${at(us)}:${text}`;

/** A destination that reaches postcopy-active and RUNNING with two blocks, at 1 ms. */
function prologue(): string[] {
  return [
    line(MAIN, 1000, 'migrate_set_state new state active'),
    line(MAIN, 1010, 'loadvm_process_command com=POSTCOPY_ADVISE len=16'),
    line(MAIN, 1020, 'loadvm_postcopy_handle_advise '),
    line(MAIN, 1030, `postcopy_init_range pc.ram: ${hex(RAM)} offset=0x0 length=0x100000`),
    line(MAIN, 1040, `postcopy_init_range pc.bios: ${hex(BIOS)} offset=0x100000 length=0x40000`),
    line(MAIN, 1050, 'loadvm_process_command com=POSTCOPY_LISTEN len=0'),
    line(MAIN, 1060, 'loadvm_postcopy_handle_listen enter'),
    line(FAULT, 1070, 'postcopy_ram_fault_thread_entry '),
    line(MAIN, 1080, 'postcopy_ram_enable_notify '),
    line(LISTEN, 1090, 'migrate_set_state new state postcopy-active'),
    line(MAIN, 1100, 'loadvm_postcopy_handle_listen return'),
    line(MAIN, 1110, 'loadvm_process_command com=POSTCOPY_RUN len=0'),
    line(MAIN, 1120, 'loadvm_postcopy_handle_run '),
  ];
}

/** A vCPU fault as the fault thread traces it; `added`: QEMU adds the page to its requested set and asks for it. */
function fault(us: number, vcpu: number, offset: number, opts: { received?: boolean; added?: boolean; beginUs?: number; type?: 3 | 4 } = {}): string[] {
  const ms = Math.floor(us / 1000);
  const lines = [
    line(FAULT, us, `postcopy_ram_fault_thread_request Request for HVA=${hex(RAM + offset)} rb=pc.ram offset=${hex(offset)} pid=${VCPU[vcpu]}`),
    line(FAULT, opts.beginUs ?? us + 2, `mark_postcopy_blocktime_begin addr: ${hex(RAM + offset)}, dd: 0x55fc57c16b80, time: ${opts.received ? 0 : ms}, cpu: ${vcpu}, already_received: ${opts.received ? 1 : 0}`),
  ];
  if (opts.added ?? !opts.received) {
    lines.push(line(FAULT, (opts.beginUs ?? us + 2) + 2, `postcopy_page_req_add new page req ${hex(RAM + offset)} total 1`));
    lines.push(line(FAULT, (opts.beginUs ?? us + 2) + 3, `migrate_send_rp_message ${opts.type ?? 4}: len ${opts.type === 3 ? 19 : 12}`));
  }
  return lines;
}

/** A page loaded and placed by the listen thread (`host` is where it lands). */
function page(us: number, offset: number, host: number, opts: { continued?: boolean; requested?: boolean; zero?: boolean; chan?: number } = {}): string[] {
  const flags = (opts.zero ? 0x2 : 0x8) | (opts.continued === false ? 0 : 0x20);
  const lines = [line(LISTEN, us, `ram_load_postcopy_loop chan=${opts.chan ?? 0} addr=${hex(offset)} flags=${hex(flags)}`)];
  if (opts.requested) lines.push(line(LISTEN, us + 1, `postcopy_page_req_del resolved page req ${hex(host)} total 0`));
  lines.push(line(LISTEN, us + 2, `mark_postcopy_blocktime_end addr: ${hex(host)}, dd: 0x55fc57c16b80, time: 0, affected_cpu: 0`));
  lines.push(line(LISTEN, us + 3, `postcopy_place_page${opts.zero ? '_zero' : ''} host=${hex(host)}`));
  return lines;
}

async function importLines(lines: string[]): Promise<{ path: string; records: EventRecord[] }> {
  const trace = tmpPath('hand.log');
  writeFileSync(trace, lines.join('\n') + '\n');
  const path = tmpPath('hand.db');
  await importQemuTrace({ dstTrace: trace, out: path, threadsPath: null });
  const r = JournalReader.open(path);
  try {
    return { path, records: [...r.records()] };
  } finally {
    r.close();
  }
}

const of = (records: EventRecord[], kind: number): EventRecord[] => records.filter((r) => r.kind === kind);

test('faults become IN_FAULT + FX_FAULT_SEEN with the vCPU and disposition; requests carry QEMU\'s payload', async (t) => {
  const { records } = await importLines([
    ...prologue(),
    ...fault(10_000, 0, 0x5000, { type: 3 }), // first request: names the block
    ...fault(10_100, 1, 0x5000, { added: false }), // the same page, already requested: QEMU 7.2 sends nothing
    ...fault(10_200, 1, 0x7000, { received: true }),
    ...page(11_000, 0x5000, RAM + 0x5000, { requested: true }),
  ]);
  const faults = of(records, EventKind.IN_FAULT);
  t.deepEqual(faults.map((f) => [f.offset, f.a]), [[RAM + 0x5000, VCPU[0]], [RAM + 0x5000, VCPU[1]], [RAM + 0x7000, VCPU[1]]]);
  const seen = of(records, EventKind.FX_FAULT_SEEN);
  t.deepEqual(
    seen.map((s) => [s.cause, s.block, s.offset, s.a, s.b, s.t]),
    [
      [faults[0]!.seq, 0, 0x5000, 0, FaultDisposition.REQUESTED, faults[0]!.t],
      [faults[1]!.seq, 0, 0x5000, 1, FaultDisposition.RESENT, faults[1]!.t],
      [faults[2]!.seq, 0, 0x7000, 1, FaultDisposition.ALREADY_RECEIVED, faults[2]!.t],
    ],
  );
  const requests = of(records, EventKind.FX_REQUEST);
  t.is(requests.length, 1);
  t.like(requests[0], { block: 0, offset: 0x5000, a: 4096, b: RequestFlag.WITH_ID, cause: faults[0]!.seq });
  t.is(Buffer.from(requests[0]!.payload!).toString('hex'), '0000000000005000' + '00001000' + '06' + Buffer.from('pc.ram').toString('hex'));
  const begins = of(records, EventKind.TR_BLOCKTIME_BEGIN);
  t.deepEqual(begins.map((b) => [b.offset, b.a, b.b, unpack(b.payload!)]), [[RAM + 0x5000, 0, 0, 10], [RAM + 0x5000, 1, 0, 10], [RAM + 0x7000, 1, 1, 0]]);
});

test('lines written late are put back in time order: a placement logged before its fault\'s lines still serves it', async (t) => {
  // The listen thread placed the page at 10.030 ms and logged it before the fault thread
  // logged its begin (10.005) and its request (10.008).
  const f = fault(10_000, 0, 0x3000, { beginUs: 10_005 });
  const { path } = await importLines([...prologue(), f[0]!, ...page(10_027, 0x3000, RAM + 0x3000, { requested: true }), ...f.slice(1)]);
  const a = analyze(path);
  t.deepEqual(a.requests.outstanding, []);
  t.is(a.requests.count, 1);
  t.deepEqual(a.faults.slowest.map((s) => [s.offset, s.vcpu, Math.round(s.latencyMs * 1000)]), [[0x3000, 0, 30]]);
  t.deepEqual(a.blocktime.exact.perVcpuMs.map((ms) => Math.round(ms * 1000)), [30]);
});

test('a page without CONTINUE gets its block from its placement; zero pages and channels are kept', async (t) => {
  const { path, records } = await importLines([
    ...prologue(),
    ...page(20_000, 0x1000, BIOS + 0x1000, { continued: false }),
    ...page(20_010, 0x2000, BIOS + 0x2000, { zero: true }),
    ...page(20_020, 0x9000, RAM + 0x9000, { continued: false, chan: 1 }),
  ]);
  const pages = of(records, EventKind.IN_PAGE);
  t.deepEqual(pages.map((p) => [p.block, p.offset, p.a, p.b]), [[1, 0x1000, 0, 0], [1, 0x2000, 0, 1], [0, 0x9000, 1, 0]]);
  const placed = records.filter((r) => r.kind === EventKind.FX_COPY || r.kind === EventKind.FX_ZERO);
  t.deepEqual(placed.map((p) => [p.kind, p.block, p.offset, p.cause]), [
    [EventKind.FX_COPY, 1, 0x1000, pages[0]!.seq],
    [EventKind.FX_ZERO, 1, 0x2000, pages[1]!.seq],
    [EventKind.FX_COPY, 0, 0x9000, pages[2]!.seq],
  ]);
  const a = analyze(path);
  t.deepEqual(a.pages, { placed: 3, zero: 1, precopy: 0, byChannel: { '0': 2, '1': 1 }, discardedRanges: 0 });
});

test('a pause and its recovery: the stream error, the receive bitmap, RESUME_ACK, the re-sent request, the pause\'s duration', async (t) => {
  const { path, records } = await importLines([
    ...prologue(),
    ...fault(30_000, 0, 0x4000),
    line(LISTEN, 40_000, 'postcopy_pause_incoming '),
    line(LISTEN, 40_010, 'migrate_set_state new state postcopy-paused'),
    line(FAULT, 40_020, 'postcopy_pause_fault_thread '),
    line(MAIN, 90_000, 'qmp_enter_migrate_recover {"uri": "tcp:127.0.0.1:44442"}'),
    line(MAIN, 90_100, 'migration_socket_incoming_accepted '),
    line(MAIN, 90_200, 'migrate_set_state new state postcopy-recover'),
    line(LISTEN, 90_300, 'postcopy_pause_incoming_continued '),
    line(LISTEN, 90_400, "migrate_send_rp_recv_bitmap block 'pc.ram' size 0x264"),
    line(LISTEN, 90_500, 'loadvm_process_command com=POSTCOPY_RESUME len=0'),
    line(LISTEN, 90_600, 'loadvm_postcopy_handle_resume '),
    line(LISTEN, 90_610, 'migrate_send_rp_message 6: len 4'),
    line(LISTEN, 90_700, `postcopy_page_req_sync sync page req ${hex(RAM + 0x4000)}`),
    line(LISTEN, 90_710, 'migrate_send_rp_message 3: len 19'),
    line(FAULT, 90_800, 'postcopy_pause_fault_thread_continued '),
    line(LISTEN, 90_900, 'migrate_set_state new state postcopy-active'),
    ...page(91_000, 0x4000, RAM + 0x4000, { requested: true, continued: false }),
  ]);
  t.is(of(records, EventKind.IN_STREAM_ERROR).length, 1);
  t.deepEqual(of(records, EventKind.IN_CHANNEL_CONNECTED).map((r) => r.a), [0]);
  t.like(of(records, EventKind.FX_RECV_BITMAP)[0], { block: 0, a: 264 });
  t.is(of(records, EventKind.FX_RESUME_ACK).length, 1);
  const requests = of(records, EventKind.FX_REQUEST);
  t.deepEqual(requests.map((r) => r.b), [0, RequestFlag.SYNC | RequestFlag.WITH_ID]);
  const a = analyze(path);
  t.is(a.status, 'postcopy-active');
  // t = 0 is the first line (1 ms); paused at 40.010 ms, active again at 90.900 ms.
  const us = (ms: number | null): number => Math.round(ms! * 1000);
  t.deepEqual(a.pauses.map((p) => [us(p.startMs), us(p.endMs), us(p.durationMs)]), [[39_010, 89_900, 50_890]]);
  t.regex(a.pauses[0]!.reason!, /IN_STREAM_ERROR/);
  t.deepEqual([a.requests.count, a.requests.resent, a.requests.outstanding.length], [1, 1, 0]);
  t.deepEqual(a.faults.slowest.map((s) => Math.round(s.latencyMs)), [61]);
  t.deepEqual(
    a.timeline.filter((e) => e.machine === 'faultThread').map((e) => e.to),
    ['running', 'paused.returnPathLost', 'running'],
  );
});

test('every line kept as a note keeps its text: each line of a capture renders back exactly', (t) => {
  for (const file of [fixture('fail', 'dst-trace.log.gz'), fixture('fail', 'src-trace.log.gz')]) {
    const lines = gunzipSync(readFileSync(file)).toString('utf8').split('\n').filter((l) => l !== '');
    let n = 0;
    for (const [i, text] of lines.entries()) {
      const e = parseTraceLine(text, i + 1);
      if (e === null || e instanceof LineProblem) continue;
      n++;
      if (formatTraceLine(e) !== text.replace(/\r$/, '')) t.fail(`line ${i + 1} renders as ${formatTraceLine(e)}`);
    }
    t.true(n === lines.length, `${file}: ${n} of ${lines.length} lines parsed`);
  }
});
