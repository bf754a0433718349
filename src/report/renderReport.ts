import type { Analysis } from '../forensics/analysisTypes.js';
import { esc } from './escape.js';
import { ganttPlot } from './ganttPlot.js';
import { latencyCdfPlot, latencyHistogramPlot } from './latencyPlots.js';
import { groupDigits, formatMs } from '../text.js';
import { receivedPlot } from './receivedPlot.js';
import { REPORT_CSS } from './style.js';
import { summaryCards } from './summaryCards.js';
import { answeredByTable, blocksTable, errorsTable, outstandingTable, slowestFaultsTable } from './tables.js';
import { timelinePlot } from './timelinePlot.js';

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
${panel('State timeline', 'What each state machine was doing. Amber bands: postcopy paused (connection lost until recovery). Hover a bar for its times and the event that entered it.', timelinePlot(a), '', 'timeline')}
${panel('Pages received', `Pages received so far (${groupDigits(a.pages.placed)} placed in all).${a.requests.outstanding.length ? ' Red marks: when each request still outstanding at the end was made.' : ''}`, receivedPlot(a), '', 'received')}
${panel('vCPUs blocked on missing pages', 'Each red bar is a time a vCPU stood still waiting for a page (exact accounting); labels give the longest waits. Faint bars merge many short waits. Left: each vCPU’s total, exact and as QEMU 7.2 counted it.', ganttPlot(a), '', 'gantt')}
<div class="pair-plots pair-wrap">
${panel('Fault latency', `Time from a vCPU fault until its page was placed, ${groupDigits(a.faults.count)} faults.`, latencyHistogramPlot(a), '', 'latency-histogram')}
${panel('Fault latency, cumulative', 'Fraction of faults whose page was placed within a given time.', latencyCdfPlot(a), '', 'latency-cdf')}
</div>
${stuck ? '' : outstanding}
${panel('Who answered the page requests', `Request → placement by the channel whose page answered it (${groupDigits(a.requests.count)} requests). A page asked for while already on its way arrives on the main channel; the urgent path is the preempt channel.`, answeredByTable(a), '', 'answered')}
${panel('Slowest faults', 'The slowest faults, slowest first.', slowestFaultsTable(a), '', 'slowest')}
${panel('Errors', 'Inputs the engine refused, by sequence number: each changed nothing else.', errorsTable(a), a.errors.length ? 'alert' : '', 'errors')}
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
    out += `<div class="banner ${/fail|cancel/.test(a.status) ? 'bad' : 'warn'}">The migration did not complete: it ended ${esc(a.status)}${open ? ` (paused since ${esc(formatMs(open.startMs))})` : ''}${n ? `, with ${groupDigits(n)} page request${n === 1 ? '' : 's'} never answered` : ''}.</div>`;
  }
  return out;
}

function describeJournal(a: Analysis): string {
  const j = a.journal;
  const source = j.source === 'qemu-trace' ? 'imported QEMU trace' : 'engine run';
  const caps = j.capabilities.length ? `, capabilities: ${j.capabilities.join(', ')}` : '';
  return `${j.path} · ${source} · created ${j.created} · engine ${j.engineVersion} · ${groupDigits(j.events)} events${caps}`;
}

function pagesLine(a: Analysis): string {
  const channels = Object.entries(a.pages.byChannel).map(([c, n]) => `channel ${c}: ${groupDigits(n)}`).join(', ');
  return `${groupDigits(a.pages.placed)} host pages placed (${groupDigits(a.pages.zero)} zero, ${groupDigits(a.pages.precopy)} in precopy${channels ? `; ${channels}` : ''}), ${groupDigits(a.pages.discardedRanges)} discarded ranges, ${groupDigits(a.requests.count)} page requests (${groupDigits(a.requests.resent)} re-sent).`;
}

function baseName(path: string): string {
  return path.split(/[\\/]/).pop() || path;
}
