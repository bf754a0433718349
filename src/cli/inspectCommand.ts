import { JournalError } from '../errors.js';
import { analyzeJournal } from '../forensics/analysis.js';
import { answeringChannels, type Analysis } from '../forensics/analysisTypes.js';
import { JournalReader } from '../journal/journalReader.js';
import { createProgress } from './progress.js';
import { formatMs } from '../text.js';

export interface InspectCommandOptions {
  json?: boolean;
  slowest?: string;
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
    console.error(`--slowest must be a whole number >= 0, got '${opts.slowest}'`);
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
    const progress = createProgress('inspect', { enabled: !opts.json });
    analysis = analyzeJournal(reader, { slowest, onProgress: (done, total) => progress.update(done, total) });
    progress.stop();
  } catch (err) {
    return unreadable(err, opts.json);
  } finally {
    reader.close();
  }
  if (opts.json) console.log(JSON.stringify(analysis, null, 2));
  else console.log(formatAnalysis(analysis));
  if (analysis.journal.unreadableFrom !== null) {
    console.error(`${analysis.journal.unreadableReason} (${readableNote(analysis.journal.unreadableFrom)})`);
    return 2;
  }
  if (analysis.anomalies.count > 0) {
    console.error(`${path}: ${analysis.anomalies.count} event(s) cannot have been written by the engine or the importer (first #${analysis.anomalies.first[0]!.seq}: ${analysis.anomalies.first[0]!.reason})`);
    return 1;
  }
  return 0;
}

function unreadable(err: unknown, json?: boolean): number {
  if (!(err instanceof JournalError)) throw err;
  if (json) console.log(JSON.stringify({ ok: false, error: err.message, seq: err.seq }));
  else console.error(err.message);
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
  const what = j.source === 'qemu-trace' ? 'imported QEMU trace' : 'engine journal';
  out.push(`${j.path}: ${what}, ${count(j.events)} events, ${j.blocks.length} block(s), ${a.vcpus} vCPU(s)${j.capabilities.length ? `, ${j.capabilities.join(', ')}` : ''}`);
  out.push(`status ${a.status}   PostcopyState ${a.postcopyState}   duration ${formatMs(a.durationMs)}`);
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
  out.push('', ...pausesSection(a));
  out.push('', ...blocktimeSection(a));
  out.push('', ...faultsSection(a));
  if (ended) out.push('', ...outstandingSection(a));
  out.push('', ...pagesSection(a));
  out.push('', ...errorsSection(a));
  return out.join('\n');
}

function outstandingSection(a: Analysis): string[] {
  const o = a.requests.outstanding;
  const head = `Outstanding requests (requested, never placed): ${o.length}`;
  if (o.length === 0) return [head];
  const shown = o.slice(0, 20);
  const rows = [['seq', 'block', 'offset', 'address', 'requested at', 'age'], ...shown.map((r) => [`#${r.seq}`, r.block, hex(r.offset), hex(r.address), at(r.requestedAtMs), formatMs(r.ageMs)])];
  const lines = [head, ...columns(rows, [false, false, true, true, true, true])];
  if (o.length > shown.length) lines.push(`  ... and ${o.length - shown.length} more (oldest first; --json lists all)`);
  return lines;
}

function timelineSection(a: Analysis): string[] {
  const rows = [['t', 'machine', 'change', 'on', 'seq'], ...a.timeline.map((e) => [at(e.tMs), e.machine, `${e.from} -> ${e.to}`, e.event, `#${e.seq}`])];
  return [`Timeline (${a.timeline.length} state change(s))`, ...columns(rows, [true, false, false, false, true])];
}

function pausesSection(a: Analysis): string[] {
  if (a.pauses.length === 0) return ['Pauses: none'];
  const rows = a.pauses.map((p) => [
    `#${p.startSeq}`,
    `from ${at(p.startMs)}`,
    p.endMs === null ? 'still paused at the end of the journal' : `to ${at(p.endMs)}`,
    p.durationMs === null ? '' : formatMs(p.durationMs),
    p.reason === undefined ? '' : `after #${p.causeSeq} ${p.reason}`,
  ]);
  return [`Pauses: ${a.pauses.length}`, ...columns(rows, [true, false, false, true, false])];
}

function blocktimeSection(a: Analysis): string[] {
  const q = a.blocktime.qemu;
  const e = a.blocktime.exact;
  const rows = [
    ['', 'qemu (QEMU 7.2)', 'exact', 'faults'],
    ['all vCPUs blocked', `${q.totalMs} ms`, formatMs(e.totalMs), ''],
    ...e.perVcpuMs.map((ms, v) => [`vCPU ${v}`, `${q.perVcpuMs[v] ?? 0} ms`, formatMs(ms), count(e.perVcpuFaults[v] ?? 0)]),
  ];
  const lines = ['Blocktime', ...columns(rows, [false, true, true, true])];
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
  if (f.histogram.length > 0) {
    const most = Math.max(...f.histogram.map((b) => b.count));
    const rows = f.histogram.map((b) => [`${edge(b.fromMs)} .. ${edge(b.toMs)}`, count(b.count), '#'.repeat(Math.max(b.count > 0 ? 1 : 0, Math.round((b.count / most) * 40)))]);
    lines.push(...columns(rows, [true, true, false]));
  }
  if (f.slowest.length > 0) {
    lines.push(`  slowest ${f.slowest.length}:`);
    const rows = [['seq', 'at', 'block', 'offset', 'vCPU', 'latency'], ...f.slowest.map((s) => [`#${s.seq}`, at(s.tMs), s.block, hex(s.offset), s.vcpu < 0 ? '-' : String(s.vcpu), formatMs(s.latencyMs)])];
    lines.push(...columns(rows, [true, true, false, true, true, true], '    '));
  }
  return lines;
}

function pagesSection(a: Analysis): string[] {
  const p = a.pages;
  const r = a.requests;
  const channels = Object.entries(p.byChannel).map(([c, n]) => `${c === '0' ? 'main' : c === '1' ? 'preempt' : `channel ${c}`} ${count(n)}`).join(', ');
  const answered = answeringChannels(a).map(({ name, answered: x }) =>
    `  answered by the ${name}: ${count(x.count)}, request → placement p50 ${formatMs(x.p50Ms)}, p99 ${formatMs(x.p99Ms)}, max ${formatMs(x.maxMs)}`);
  return [
    `Requests: ${count(r.count)} sent, ${count(r.resent)} re-sent, ${count(r.outstanding.length)} outstanding`,
    ...answered,
    `Pages: ${count(p.placed)} host pages placed (${count(p.zero)} zero; by channel: ${channels}), ${count(p.precopy)} precopy pages, ${count(p.discardedRanges)} discarded range(s)`,
  ];
}

function errorsSection(a: Analysis): string[] {
  if (a.errors.length === 0) return ['Errors: none'];
  const rows = a.errors.slice(0, 50).map((e) => [`#${e.seq}`, at(e.tMs), e.code, `${e.input !== undefined ? `${e.input} #${e.causeSeq}: ` : e.causeSeq !== undefined ? `input #${e.causeSeq}: ` : ''}${e.message}`]);
  const lines = [`Errors: ${a.errors.length}`, ...columns(rows, [true, true, false, false])];
  if (a.errors.length > 50) lines.push(`  ... and ${a.errors.length - 50} more (--json lists them)`);
  return lines;
}
