import { JournalError } from '../errors.js';
import { analyzeJournal } from '../forensics/analysis.js';
import { answeringChannels, blocktimeDifference, channelCounts, phasesOf, qemuMs, splitErrors, stateInWords, verdict, type Analysis, type TapFindings } from '../forensics/analysisTypes.js';
import { JournalReader } from '../journal/journalReader.js';
import { createProgress } from './progress.js';
import { formatMs } from '../text.js';

export interface InspectCommandOptions {
  json?: boolean;
  slowest?: string;
  quiet?: boolean;
}

/**
 * `postcopy inspect <journal> [--json]`: explains a journal (an engine run or an imported
 * QEMU trace). Exit 0: a failed or hung migration is explained, not an inspect failure;
 * 1 when events decode but cannot have been written (offsets outside the blocks, times
 * that are not finite, unknown commands: listed, and left out of the figures); 2 when the
 * journal cannot be read (a journal damaged part-way, its crash tail included, is
 * explained up to the damage, which is reported with how many events are readable, and
 * also exits 2). The journal and its tail are never changed.
 */
export function inspectCommand(path: string, opts: InspectCommandOptions): number {
  const slowest = opts.slowest === undefined ? 20 : Number(opts.slowest);
  if (!(Number.isSafeInteger(slowest) && slowest >= 0)) {
    console.error(`postcopy inspect: --slowest must be a whole number >= 0, got '${opts.slowest}'`);
    return 2;
  }
  let reader: JournalReader;
  try {
    reader = JournalReader.open(path);
  } catch (err) {
    return unreadable(err, opts.json);
  }
  let analysis: Analysis;
  try {
    const progress = createProgress('inspect', { enabled: !opts.json && !opts.quiet });
    analysis = analyzeJournal(reader, { slowest, onProgress: (done, total) => progress.update(done, total) });
    progress.stop();
  } catch (err) {
    return unreadable(err, opts.json);
  } finally {
    reader.close();
  }
  if (opts.json) console.log(JSON.stringify(jsonForm(analysis), null, 2));
  else console.log(formatAnalysis(analysis));
  if (analysis.journal.unreadableFrom !== null) {
    console.error(`postcopy inspect: ${analysis.journal.unreadableReason} (${readableNote(analysis.journal.unreadableFrom)})`);
    return 2;
  }
  if (analysis.anomalies.count > 0) {
    console.error(`${path}: ${analysis.anomalies.count} event(s) cannot have been written by the engine or the importer (first #${analysis.anomalies.first[0]!.seq}: ${analysis.anomalies.first[0]!.reason})`);
    return 1;
  }
  return 0;
}

/**
 * Pure: the analysis as `inspect --json` prints it (docs/json.md): every duration and time
 * is in ms, its key ends in `Ms`, rounded to the µs; counts are whole numbers; the series'
 * tuples start with a time in ms ([tMs, pages], [startMs, endMs], [ms, fraction]).
 */
export function jsonForm(value: unknown, ms = false, key = ''): unknown {
  if (typeof value === 'number') return ms && !Number.isInteger(value) ? Math.round(value * 1000) / 1000 : value;
  if (Array.isArray(value)) {
    if (key === 'received' || key === 'latencyCdf') return value.map((p: [number, number]) => [jsonForm(p[0], true), key === 'latencyCdf' ? Math.round(p[1] * 1e6) / 1e6 : p[1]]);
    if (key === 'intervals') return value.map((p: [number, number]) => [jsonForm(p[0], true), jsonForm(p[1], true)]);
    return value.map((v) => jsonForm(v, ms));
  }
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = jsonForm(v, k.endsWith('Ms'), k);
    return out;
  }
  return value;
}

function unreadable(err: unknown, json?: boolean): number {
  if (!(err instanceof JournalError)) throw err;
  if (json) console.log(JSON.stringify({ ok: false, error: err.message, seq: err.seq }));
  else console.error(`postcopy inspect: ${err.message}`);
  return 2;
}

/** Pure: how many events before `seq` are readable, and what to do about the rest. */
export function readableNote(seq: number): string {
  return `${seq.toLocaleString('en-US')} event(s) before it are readable; the journal was left as it is: \`postcopy salvage\` copies every readable event into a new journal`;
}

// ---------------------------------------------------------------------------
// Text

/** Pure: rows as aligned columns (numbers and times right-aligned when `right[i]`). */
export function columns(rows: string[][], right: boolean[] = [], indent = '  '): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((r) => indent + r.map((cell, i) => (i === r.length - 1 && !right[i] ? cell : right[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd());
}

const hex = (n: number | null): string => (n === null ? '—' : '0x' + n.toString(16));
const count = (n: number): string => n.toLocaleString('en-US');
const at = (ms: number): string => `${ms.toFixed(3)} ms`;
/** A histogram edge (1-2-5 steps): '0.05 ms', '20 ms', '2 s'. */
const edge = (ms: number): string => (ms >= 1000 ? `${+(ms / 1000).toFixed(3)} s` : `${+ms.toFixed(3)} ms`);

/** Pure: the analysis as a person reads it in a terminal: short sections, aligned columns. */
export function formatAnalysis(a: Analysis): string {
  const out: string[] = [];
  const j = a.journal;
  const what = j.source === 'qemu-trace' ? 'imported QEMU trace' : j.source === 'tap' ? 'recorded by postcopy tap (a relay between QEMU source and destination)' : 'engine journal';
  out.push(`${j.path}: ${what}, ${count(j.events)} events, ${j.blocks.length} block(s), ${a.vcpus} vCPU(s)${j.capabilities.length ? `, ${j.capabilities.join(', ')}` : ''}`);
  out.push(`status ${a.status}   PostcopyState ${a.postcopyState}   journal ${formatMs(a.durationMs)} (every time below is since the journal's start; first event at ${at(a.firstEventMs)}, last at ${at(a.durationMs)})`);
  const v = verdict(a);
  out.push(`verdict: ${v.verdict}`, ...v.cause.map((c) => `  ${c}`), `next: ${v.next}`);
  if (j.unreadableFrom !== null) out.push(`!! the journal is damaged from #${j.unreadableFrom}: what follows covers the events before it (${j.unreadableReason})`);
  if (a.anomalies.count > 0) {
    out.push(`!! ${count(a.anomalies.count)} event(s) cannot have been written by the engine or the importer; they are left out of what follows:`);
    for (const x of a.anomalies.first.slice(0, 10)) out.push(`   #${x.seq}: ${x.reason}`);
    if (a.anomalies.count > 10) out.push(`   ... and ${count(a.anomalies.count - 10)} more (--json lists the first ${a.anomalies.first.length})`);
  }
  const ended = a.status === 'completed';
  const [mainEnd, preemptEnd] = a.streamEnds;
  if (!ended && mainEnd !== null && a.postcopyState === 'RUNNING') {
    out.push(
      `!! the main stream ended at #${mainEnd.seq} (${at(mainEnd.tMs)}) but postcopy never did: it waits for the preempt channel, ` +
        (preemptEnd === null ? 'whose stream never ended' : `whose stream ended at #${preemptEnd.seq}, for its outstanding requests`),
    );
  }
  if (!ended) out.push('', ...outstandingSection(a));
  out.push('', ...timelineSection(a));
  if (a.stderr.length > 0) out.push('', `QEMU's stderr (${a.stderr.length} line(s))`, ...columns(a.stderr.map((l) => [at(l.tMs), `#${l.seq}`, l.text]), [true, true, false]));
  out.push('', ...pausesSection(a));
  if (a.tap !== undefined) out.push('', ...tapSection(a, a.tap));
  // A relay sees no faults: no blocktime, no fault latencies.
  if (a.tap === undefined) out.push('', ...blocktimeSection(a), '', ...faultsSection(a));
  if (ended) out.push('', ...outstandingSection(a));
  out.push('', ...pagesSection(a));
  out.push('', ...errorsSection(a));
  return out.join('\n');
}

function outstandingSection(a: Analysis): string[] {
  const o = a.requests.outstanding;
  const head = `Outstanding requests (requested, never ${a.tap === undefined ? 'placed' : 'answered by a page on the wire'}): ${o.length}`;
  if (o.length === 0) return [head];
  const shown = o.slice(0, 20);
  const rows = [['seq', 'block', 'offset', 'address', 'requested at', 'age'], ...shown.map((r) => [`#${r.seq}`, r.block, hex(r.offset), hex(r.address), at(r.requestedAtMs), formatMs(r.ageMs)])];
  const lines = [head, ...columns(rows, [false, false, true, true, true, true])];
  if (o.length > shown.length) lines.push(`  ... and ${o.length - shown.length} more (oldest first; --json lists all)`);
  return lines;
}

/** A tap journal: the connections, requests served or already in flight, and each break. */
function tapSection(a: Analysis, tap: TapFindings): string[] {
  const r = tap.requests;
  const lines = [`Connections through the tap: ${tap.connections.length}`];
  const rows = [['id', 'role', 'opened', 'closed', 'to destination', 'to source', ''], ...tap.connections.map((c) => [
    String(c.id),
    c.role,
    at(c.openedMs),
    c.closedMs === null ? 'open at the end' : at(c.closedMs),
    `${count(c.bytesToDestination)} B`,
    `${count(c.bytesToSource)} B`,
    [c.error === null ? '' : `error: ${c.error}`, ...c.undecoded.map((u) => `not decoded ${u.direction} from byte ${count(u.fromByte)}: ${u.reason}`)].filter((x) => x).join('; '),
  ])];
  lines.push(...columns(rows, [true, false, true, true, true, true, false]));
  lines.push(`Requests seen on the return path: ${count(r.count)} (compare with the source's ram.postcopy-requests): ${count(r.served)} served (a page of it crossed the relay after it), ${count(r.alreadyInFlight)} already in flight (its page had crossed before it), ${count(r.unanswered)} never answered`);
  for (const { name, answered: x } of [{ name: 'main', answered: a.requests.answeredBy.main }, { name: 'preempt', answered: a.requests.answeredBy.preempt }]) {
    if (x.count > 0) lines.push(`  served on the ${name} channel: ${count(x.count)}, request → page on the wire p50 ${formatMs(x.p50Ms)}, p99 ${formatMs(x.p99Ms)}, max ${formatMs(x.maxMs)}`);
  }
  if (r.alreadyInFlight > 0) lines.push(`  already in flight: the page had crossed p50 ${formatMs(r.inFlightLead.p50Ms)}, p99 ${formatMs(r.inFlightLead.p99Ms)} before its request`);
  lines.push(`PING ${tap.pings}, PONG ${tap.pongs}, SHUT ${tap.shut === null ? 'not seen' : `${tap.shut.status} at ${at(tap.shut.tMs)}`}, RESUME_ACK ${tap.resumeAcks}`);
  for (const [n, b] of tap.breaks.entries()) {
    lines.push(`Break ${n + 1} at ${at(b.tMs)} (#${b.seq}): ${b.reason}`);
    lines.push(`  requests in flight at the break (the source may never have read them: no page after them, or younger than the slowest answer so far, ${formatMs(b.inFlightWindowMs)}): ${count(b.requestsInFlight)}`);
    if (b.requests.length > 0) {
      lines.push(`  of which no page came after them: ${count(b.requests.length)}`);
      lines.push(...columns([['block', 'offset', 'requested at', 'age at the break'], ...b.requests.map((q) => [q.block, hex(q.offset), at(q.requestedAtMs), formatMs(q.ageMs)])], [false, true, true, true], '    '));
    }
    lines.push(b.pagesLost === null
      ? '  pages lost in flight: unknown (no receive bitmaps after this break)'
      : `  pages that crossed the relay before the break but never reached the destination (its receive bitmaps): ${count(b.pagesLost)}${b.lostPages.length ? `, last: ${b.lostPages.slice(0, 5).map((p) => `${p.block} ${hex(p.offset)} at ${at(p.crossedAtMs)}`).join(', ')}` : ''}`);
  }
  if (tap.recvBitmaps.length > 0) lines.push(`Receive bitmaps: ${tap.recvBitmaps.map((b) => `${b.block} ${count(b.receivedPages)}/${count(b.pages)}`).join(', ')}`);
  return lines;
}

function timelineSection(a: Analysis): string[] {
  const rows = [['t', 'machine', 'change', 'on', 'seq', 'now'], ...a.timeline.map((e) => [at(e.tMs), e.machine, `${e.from} -> ${e.to}`, e.event, `#${e.seq}`, stateInWords(e.machine, e.to) === e.to ? '' : stateInWords(e.machine, e.to)])];
  return [`Timeline (${a.timeline.length} state change(s))`, ...columns(rows, [true, false, false, false, true, false])];
}

function pausesSection(a: Analysis): string[] {
  if (a.pauses.length === 0) return ['Pauses: none'];
  const sourceLines = a.pauses.filter((p) => p.sourceLast !== undefined).map((p) => `  before #${p.startSeq}, the source's last line: ${at(p.sourceLast!.tMs)} ${p.sourceLast!.event}${p.sourceLast!.text ? ` ${p.sourceLast!.text}` : ''} (${formatMs(p.startMs - p.sourceLast!.tMs)} before the pause)`);
  const rows = a.pauses.map((p) => [
    `#${p.startSeq}`,
    `from ${at(p.startMs)}`,
    p.endMs === null ? 'still paused at the end of the journal' : `to ${at(p.endMs)}`,
    p.durationMs === null ? '' : formatMs(p.durationMs),
    p.reason === undefined ? '' : `after #${p.causeSeq} ${p.reason}`,
  ]);
  return [`Pauses: ${a.pauses.length}`, ...columns(rows, [true, false, false, true, false]), ...sourceLines];
}

function blocktimeSection(a: Analysis): string[] {
  const q = a.blocktime.qemu;
  const e = a.blocktime.exact;
  const still = (v: number): string => {
    const s = e.stillBlocked.find((b) => b.vcpu === v);
    return s === undefined ? '' : `still blocked at the end (since ${at(s.sinceMs)})`;
  };
  // Imported with query-migrate: QEMU's own figures first, then the replay of its trace.
  const r = q.reported;
  const said = (ms: number | null | undefined): string[] => (r === undefined ? [] : [ms === null || ms === undefined ? '—' : qemuMs(ms)]);
  const rows = [
    ['', ...(r ? ['QEMU said (query-migrate)'] : []), r ? 'qemu (trace replay)' : 'qemu (QEMU 7.2)', 'exact', 'faults', ''],
    ['all vCPUs blocked', ...said(r?.totalMs), qemuMs(q.totalMs), formatMs(e.totalMs), '', e.stillBlocked.length === a.vcpus && a.vcpus > 0 ? 'still all blocked at the end' : ''],
    ...e.perVcpuMs.map((ms, v) => [`vCPU ${v}`, ...said(r?.perVcpuMs?.[v]), qemuMs(q.perVcpuMs[v] ?? 0), formatMs(ms), count(e.perVcpuFaults[v] ?? 0), still(v)]),
  ];
  const lines = ['Blocktime', ...columns(rows, [false, ...(r ? [true] : []), true, true, true, false])];
  if (r !== undefined && r.perVcpuMs !== null && r.perVcpuMs.some((ms, v) => ms !== q.perVcpuMs[v])) {
    lines.push(`  The trace replay differs from query-migrate by up to ${Math.max(...r.perVcpuMs.map((ms, v) => Math.abs(ms - (q.perVcpuMs[v] ?? 0))))} ms per vCPU: the trace has no time on QEMU's end lines, so their millisecond is rebuilt from the trace clock.`);
  }
  const why = blocktimeDifference(a);
  if (why !== null) lines.push(`  ${why}`);
  const c = q.check;
  if (c !== undefined) {
    const reported = c.reportedTotalMs !== null ? `QEMU reported ${c.reportedTotalMs} ms` : `QEMU reported no final figure; its last running total was ${c.lastEndTotalMs ?? '—'} ms`;
    const agree = c.totalMismatches === 0 && c.affectedMismatches === 0 ? `all ${count(c.endLines)} running totals reproduced` : `${c.totalMismatches} running total(s) and ${c.affectedMismatches} affected count(s) differ`;
    lines.push(`  ${reported}; ${agree} (races modelled: ${c.races.alreadyReceivedBegin} already-received, ${c.races.endBeforeBeginStore} end-before-store)`);
    if (c.unknownVcpuBegins > 0) lines.push(`  ${count(c.unknownVcpuBegins)} begin line(s) of vCPUs the journal does not count were left out: the qemu figures may differ from QEMU's`);
  }
  return lines;
}

function faultsSection(a: Analysis): string[] {
  const f = a.faults;
  const lines = [`Faults: ${count(f.count)}   fault -> placement: p50 ${formatMs(f.p50Ms)}  p90 ${formatMs(f.p90Ms)}  p99 ${formatMs(f.p99Ms)}  max ${formatMs(f.maxMs)}`];
  const notTimed = f.count - f.timed;
  lines.push(`  ${count(f.timed)} fault(s) timed${f.unanswered > 0 ? `, of which ${count(f.unanswered)} still waiting at the end of the journal (counted at their age: at least that)` : ''}${notTimed > 0 ? `; ${count(notTimed)} found their page already there (no wait)` : ''}`);
  if (f.histogram.length > 0) {
    const most = Math.max(...f.histogram.map((b) => b.count));
    const rows = f.histogram.map((b) => [`${edge(b.fromMs)} .. ${edge(b.toMs)}`, count(b.count), '#'.repeat(Math.max(b.count > 0 ? 1 : 0, Math.round((b.count / most) * 40)))]);
    lines.push(...columns(rows, [true, true, false]));
  }
  if (f.slowest.length > 0) {
    lines.push(`  slowest ${f.slowest.length}:`);
    const rows = [['seq', 'at', 'block', 'offset', 'vCPU', 'latency'], ...f.slowest.map((s) => [`#${s.seq}`, at(s.tMs), s.block, hex(s.offset), s.vcpu < 0 ? '-' : String(s.vcpu), s.unanswered ? `>= ${formatMs(s.latencyMs)} (still waiting)` : formatMs(s.latencyMs)])];
    lines.push(...columns(rows, [true, true, false, true, true, true], '    '));
  }
  return lines;
}

function pagesSection(a: Analysis): string[] {
  const p = a.pages;
  const r = a.requests;
  const channels = channelCounts(p.byChannel);
  const ph = phasesOf(a);
  const phases = `Phases: precopy ${ph.precopyMs === null ? '—' : formatMs(ph.precopyMs)} (first event → LISTENING), postcopy ${ph.postcopyMs === null ? '—' : formatMs(ph.postcopyMs)} (LISTENING → ${ph.postcopyEnded ? 'END' : 'the end of the journal, never ended'}), journal ${formatMs(ph.journalMs)}`;
  const precopy = a.journal.source === 'qemu-trace' ? 'precopy pages not traced by QEMU 7.2' : `${count(p.precopy)} precopy pages (re-sent dirty pages included)`;
  if (a.tap !== undefined) {
    return [
      phases,
      `Pages: ${count(p.placed)} crossed the relay in postcopy (${count(p.zero)} zero pages; by channel: ${channels}), ${count(p.precopy)} in precopy (re-sent dirty pages included)`,
    ];
  }
  const answered = answeringChannels(a).map(({ name, answered: x }) =>
    `  answered by the ${name}: ${count(x.count)}, request → placement p50 ${formatMs(x.p50Ms)}, p99 ${formatMs(x.p99Ms)}, max ${formatMs(x.maxMs)}`);
  return [
    phases,
    `Requests: ${count(r.count)} sent, ${count(r.resent)} re-sent, ${count(r.outstanding.length)} outstanding`,
    ...answered,
    `Pages: ${count(p.placed)} host pages placed in postcopy (${count(p.zero)} zero-filled locally; by channel: ${channels}), ${precopy}, ${count(p.discardedRanges)} discarded range(s)`,
  ];
}

function errorsSection(a: Analysis): string[] {
  const { failures, refused } = splitErrors(a);
  if (a.errors.length === 0) return [a.status === 'completed' ? 'Failures: none   Refused inputs: none' : 'Failures reported: none   Refused inputs: none (the migration stopped for the cause in the verdict, not a refused input)'];
  const failed = new Set(failures);
  const rows = a.errors.slice(0, 50).map((e) => [`#${e.seq}`, at(e.tMs), failed.has(e) ? 'failure' : 'refused', e.code, `${e.input !== undefined ? `${e.input} #${e.causeSeq}: ` : e.causeSeq !== undefined ? `input #${e.causeSeq}: ` : ''}${e.message}`]);
  const lines = [`Failures: ${failures.length}   Refused inputs (each changed nothing): ${refused.length}`, ...columns(rows, [true, true, false, false, false])];
  if (a.errors.length > 50) lines.push(`  ... and ${a.errors.length - 50} more (--json lists them)`);
  return lines;
}
