import { blocktimeDifference, channelCounts, verdict, type Analysis } from '../forensics/analysisTypes.js';
import { esc } from './escape.js';
import { ganttPlot } from './ganttPlot.js';
import { latencyCdfPlot, latencyHistogramPlot } from './latencyPlots.js';
import { groupDigits, formatMs } from '../text.js';
import { receivedPlot } from './receivedPlot.js';
import { REPORT_CSS } from './style.js';
import { summaryCards } from './summaryCards.js';
import { answeredByTable, blocksTable, errorsTable, outstandingTable, slowestFaultsTable, tapBreaksTable, tapConnectionsTable } from './tables.js';
import { timelinePlot } from './timelinePlot.js';
import { postcopyWindow } from './timeAxis.js';

export interface RenderReportOptions {
  /** Heading and page title; default names the journal file. */
  title?: string;
}

/**
 * The browser may load nothing from anywhere: the report is one self-contained file, and
 * this also keeps anything that slipped into a journal string from running or fetching.
 */
const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/**
 * Pure: the whole report as one self-contained HTML document: summary cards, plots as
 * inline SVG (state timeline, pages received, vCPUs blocked, latency histogram and CDF),
 * and tables (outstanding requests, slowest faults, errors, RAM blocks). No script, no
 * network; every string from the journal is escaped. The same Analysis gives the same bytes.
 */
export function renderReport(a: Analysis, opts: RenderReportOptions = {}): string {
  const title = opts.title ?? `Postcopy migration report: ${baseName(a.journal.path)}`;
  const unfinished = a.status !== 'completed';
  const stuck = unfinished && a.requests.outstanding.length > 0;
  const outstanding = panel(stuck ? 'Outstanding page requests: the guest is waiting for these' : 'Outstanding page requests',
    'Pages a vCPU faulted on and the destination requested, never placed by the end of the journal, oldest first.',
    outstandingTable(a), stuck ? 'alert' : '', 'outstanding');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${REPORT_CSS}</style>
</head>
<body>
<main>
<header><h1>${esc(title)}</h1><p class="meta">${esc(describeJournal(a))}</p></header>
${banners(a)}${summaryCards(a)}
${stuck ? outstanding : ''}
${panel('State timeline', 'What each state machine was doing, in plain words where the state name is terse. Amber bands: postcopy paused (connection lost until recovery). Below the lanes: QEMU’s error lines (red, imported with --stderr), the source trace’s last line (imported with --src) and the end of the journal (black), where every axis ends. Hover a bar for its times and the event that entered it.', timelinePlot(a), '', 'timeline')}
${panel('Pages received', `Pages received so far (${groupDigits(a.pages.placed)} placed in all).${a.journal.source === 'qemu-trace' ? ' QEMU 7.2 traces no page received in precopy: the curve starts at postcopy, and precopy pages are not counted.' : ''}${a.requests.outstanding.length ? ' Red marks: when each request still outstanding at the end was made.' : ''}`, receivedPlot(a), '', 'received')}
${panel('vCPUs blocked on missing pages', 'Each red bar is a time a vCPU stood still waiting for a page (exact accounting); labels give the longest waits. Faint bars merge many short waits. Left: each vCPU’s total, exact and as QEMU 7.2 counted it.' + (a.blocktime.exact.stillBlocked.length ? ' A wait still open at the end runs to the end of the journal (dark red) and counts in the exact total.' : '') + (blocktimeDifference(a) === null ? '' : ` ${esc(blocktimeDifference(a)!)}`), ganttPlot(a), '', 'gantt')}
${closeUp(a)}
<div class="pair-plots pair-wrap">
${panel('Fault latency', esc(latencyCaption(a)), latencyHistogramPlot(a), '', 'latency-histogram')}
${panel('Fault latency, cumulative', 'Fraction of faults whose page was placed within a given time.', latencyCdfPlot(a), '', 'latency-cdf')}
</div>
${stuck ? '' : outstanding}
${tapPanel(a)}
${panel('Who answered the page requests', `Request → placement by the channel whose page answered it (${groupDigits(a.requests.count)} requests). A page asked for while already on its way arrives on the main channel; the urgent path is the preempt channel.`, answeredByTable(a), '', 'answered')}
${panel('Slowest faults', 'The slowest faults, slowest first.', slowestFaultsTable(a), '', 'slowest')}
${panel('Failures and refused inputs', 'Failures: why the migration stopped, as the journal reports them. Refused inputs: inputs the engine refused, by sequence number; each changed nothing else.' + (a.status !== 'completed' && a.errors.length === 0 ? ' None here: the migration stopped for the cause in the banner above (a lost connection is not a refused input).' : ''), errorsTable(a), a.errors.length ? 'alert' : '', 'errors')}
${panel('Journal', esc(pagesLine(a)), blocksTable(a), '', 'journal')}
<footer>postcopy report · ${esc(a.journal.path)}</footer>
</main>
</body>
</html>
`;
}

/** Pure: one titled panel; `captionHtml` and `contentHtml` are markup with journal strings already escaped. */
function panel(heading: string, captionHtml: string, contentHtml: string, extraClass: string, key: string): string {
  return `<section class="panel ${extraClass}" data-panel="${key}"><h2>${esc(heading)}</h2><p class="caption">${captionHtml}</p>${contentHtml}</section>`;
}

function banners(a: Analysis): string {
  let out = '';
  if (a.journal.unreadableFrom !== null) {
    out += `<div class="banner bad">This journal is damaged: events from sequence number ${a.journal.unreadableFrom} on could not be read (${esc(a.journal.unreadableReason ?? 'unknown reason')}). The report covers the readable part only.</div>`;
  }
  if (a.anomalies.count > 0) {
    const f = a.anomalies.first[0]!;
    out += `<div class="banner bad">${a.anomalies.count} event(s) of this journal cannot have been written by the engine or the importer (first: #${f.seq}, ${esc(f.reason)}); they were left out of the figures.</div>`;
  }
  if (a.status !== 'completed') {
    const n = a.requests.outstanding.length;
    const open = a.pauses.find((p) => p.endMs === null);
    const v = verdict(a);
    const cause = v.cause.length ? `<ul class="cause">${v.cause.map((c) => `<li>${esc(c)}</li>`).join('')}</ul>` : '';
    out += `<div class="banner ${/fail|cancel/.test(a.status) ? 'bad' : 'warn'}">The migration did not complete: it ended ${esc(a.status)}${open ? ` (paused since ${esc(formatMs(open.startMs))})` : ''}${n ? `, with ${groupDigits(n)} page request${n === 1 ? '' : 's'} never answered` : ''}.${cause}<div class="next"><strong>Next:</strong> ${esc(v.next)}</div></div>`;
  }
  return out;
}

/** Pure: the blocked vCPUs over the postcopy window alone, when it is a small part of a long journal. */
function closeUp(a: Analysis): string {
  const w = postcopyWindow(a);
  if (w === null) return '';
  return panel('vCPUs blocked, close-up of postcopy', `The same as above, from ${esc(formatMs(w[0]))} to ${esc(formatMs(w[1]))}${w[1] >= a.durationMs ? ' (the end of the journal)' : ''}: postcopy is ${Math.round(((w[1] - w[0]) / Math.max(a.durationMs, 1)) * 100)} % of the journal, too narrow to read above. Red bars: a vCPU waiting for a page; amber: postcopy paused.`, ganttPlot(a, w), '', 'gantt-postcopy');
}

/** Pure: what the latency plots count: every fault that waited, the ones still waiting at their age. */
function latencyCaption(a: Analysis): string {
  const f = a.faults;
  const notTimed = f.count - f.timed;
  return `Time from a vCPU fault until its page was placed, ${groupDigits(f.timed)} fault${f.timed === 1 ? '' : 's'}` +
    (f.unanswered > 0 ? `, of which ${groupDigits(f.unanswered)} still waiting at the end of the journal, drawn at their age (at least that long)` : '') +
    (notTimed > 0 ? `; ${groupDigits(notTimed)} more found their page already there and never waited` : '') + '.';
}

function describeJournal(a: Analysis): string {
  const j = a.journal;
  const source = j.source === 'qemu-trace' ? 'imported QEMU trace' : j.source === 'tap' ? 'recorded by postcopy tap' : 'engine run';
  const caps = j.capabilities.length ? `, capabilities: ${j.capabilities.join(', ')}` : '';
  return `${j.path} · ${source} · created ${j.created} · engine ${j.engineVersion} · ${groupDigits(j.events)} events${caps}`;
}

function pagesLine(a: Analysis): string {
  const channels = channelCounts(a.pages.byChannel);
  const precopy = a.journal.source === 'qemu-trace' ? 'precopy pages not traced by QEMU 7.2' : `${groupDigits(a.pages.precopy)} precopy pages (re-sent dirty pages included)`;
  return `${groupDigits(a.pages.placed)} host pages placed in postcopy (${groupDigits(a.pages.zero)} zero-filled locally${channels ? `; by channel: ${channels}` : ''}), ${precopy}, ${groupDigits(a.pages.discardedRanges)} discarded ranges, ${groupDigits(a.requests.count)} page requests (${groupDigits(a.requests.resent)} re-sent).`;
}

/** Pure: a tap journal's connections, its requests as the relay saw them, and each break; '' for other journals. */
function tapPanel(a: Analysis): string {
  const tap = a.tap;
  if (tap === undefined) return '';
  const r = tap.requests;
  const served = [['main', a.requests.answeredBy.main], ['preempt', a.requests.answeredBy.preempt]] as const;
  const latency = served.filter(([, x]) => x.count > 0).map(([name, x]) => `served on the ${name} channel: ${groupDigits(x.count)}, request → page on the wire p50 ${formatMs(x.p50Ms)}, p99 ${formatMs(x.p99Ms)}`).join('; ');
  const breaks = tap.breaks.map((b, n) => `break ${n + 1} at ${formatMs(b.tMs)}: ${groupDigits(b.requestsInFlight)} request(s) in flight, ${b.pagesLost === null ? 'pages lost in flight unknown (no receive bitmaps after it)' : `${groupDigits(b.pagesLost)} page(s) crossed the relay and never reached the destination`}`).join('; ');
  const caption = `${groupDigits(r.count)} page requests crossed the relay (the source's ram.postcopy-requests counts the same): ${groupDigits(r.served)} served (a page of it crossed after it), ${groupDigits(r.alreadyInFlight)} already in flight (its page had crossed before), ${groupDigits(r.unanswered)} never answered. ${latency ? `${latency}. ` : ''}${breaks ? `${breaks}. ` : ''}PING ${tap.pings}, PONG ${tap.pongs}, SHUT ${tap.shut === null ? 'not seen' : tap.shut.status}.`;
  return `${panel('Through the tap: connections', esc(caption), tapConnectionsTable(a), '', 'tap-connections')}
${panel('Requests in flight at each break', 'Requests that had crossed the relay with no page after them when the connection broke: the source may never have read them.', tapBreaksTable(a), '', 'tap-breaks')}`;
}

function baseName(path: string): string {
  return path.split(/[\\/]/).pop() || path;
}
