import test from 'ava';
import type { Analysis } from '../../src/forensics/analysisTypes.js';
import { MAX_BARS_PER_VCPU } from '../../src/report/ganttPlot.js';
import { esc } from '../../src/report/escape.js';
import { groupDigits, hex, formatMs } from '../../src/text.js';
import { renderReport } from '../../src/report/renderReport.js';
import { MAX_TABLE_ROWS } from '../../src/report/tables.js';
import { sampleAnalysis } from './sampleAnalysis.js';

const PLOT_IDS = ['plot-timeline', 'plot-received', 'plot-gantt', 'plot-latency-histogram', 'plot-latency-cdf'];

/** The markup of one element with an id, up to its closing tag (plots do not nest svgs). */
function svgOf(html: string, id: string): string {
  const start = html.indexOf(`<svg id="${id}"`);
  return start < 0 ? '' : html.slice(start, html.indexOf('</svg>', start) + 6);
}

function count(haystack: string, needle: string | RegExp): number {
  return typeof needle === 'string' ? haystack.split(needle).length - 1 : (haystack.match(needle) ?? []).length;
}

test('every plot is one <svg> with its id, a <title> first, and drawn shapes', (t) => {
  const html = renderReport(sampleAnalysis());
  for (const id of PLOT_IDS) {
    t.is(count(html, `id="${id}"`), 1, id);
    const svg = svgOf(html, id);
    t.regex(svg, new RegExp(`^<svg id="${id}"[^>]*><title id="${id}-title">[^<]+</title>`), `${id} starts with its title`);
    t.true(count(svg, /<(rect|path)\b/g) > 0, `${id} draws something`);
  }
});

test('axes name their units', (t) => {
  const html = renderReport(sampleAnalysis());
  t.regex(svgOf(html, 'plot-received'), /time since the journal started \(s\)/);
  t.regex(svgOf(html, 'plot-received'), /pages received \(count\)/);
  t.regex(svgOf(html, 'plot-latency-histogram'), /\(ms, log scale\)/);
  t.regex(svgOf(html, 'plot-latency-cdf'), /\(%\)/);
});

test('strings from the journal are escaped everywhere: block names, error messages, states, the title', (t) => {
  const evil = '<script>alert("x")</script>&<img src=x onerror=alert(1)>';
  const a = sampleAnalysis({ blockName: evil, errorMessage: evil });
  a.timeline.push({ seq: 1, tMs: 4100, machine: 'migration', from: 'postcopy-paused', to: evil, event: evil });
  a.journal.path = `/tmp/${evil}.db`;
  const html = renderReport(a, { title: evil });
  t.false(html.includes('<script'), 'no script element at all');
  t.false(html.includes('<img'), 'no image element at all');
  t.true(html.includes(esc(evil)), 'shown as text');
  t.true(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&lt;img'));
});

test('the report is self-contained: no script, nothing to fetch, a policy that forbids fetching', (t) => {
  const html = renderReport(sampleAnalysis());
  t.false(/<script|<link|<iframe|<img|src=|href=|url\((?!#)|@import/i.test(html), 'no external reference');
  t.false(/https?:|\/\/[a-z]/i.test(html), 'no URL');
  t.regex(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none';/);
});

test('the same analysis gives the same bytes', (t) => {
  t.is(renderReport(sampleAnalysis()), renderReport(sampleAnalysis()));
});

test('summary cards carry status, postcopy state, duration, both blocktimes, fault percentiles and outstanding count', (t) => {
  const a = sampleAnalysis();
  const html = renderReport(a);
  const card = (key: string) => html.slice(html.indexOf(`data-card="${key}"`), html.indexOf('</div></div>', html.indexOf(`data-card="${key}"`)));
  t.true(card('status').includes(a.status));
  t.true(card('status').includes('tone-warn') || html.includes('class="card tone-warn" data-card="status"'));
  t.true(card('postcopy-state').includes(a.postcopyState));
  t.true(card('duration').includes(formatMs(a.durationMs)));
  t.true(card('blocktime').includes(`${Math.round(a.blocktime.qemu.totalMs)} ms`), 'QEMU figures in whole ms, as QEMU prints them');
  t.true(card('blocktime').includes(formatMs(a.blocktime.exact.totalMs)));
  for (const ms of [a.faults.p50Ms, a.faults.p99Ms, a.faults.maxMs]) t.true(card('faults').includes(formatMs(ms)));
  t.true(card('outstanding').includes(`>${a.requests.outstanding.length}<`));
});

test('an unfinished migration with nothing refused shows no green errors card', (t) => {
  const a = { ...sampleAnalysis({ ending: 'paused' }), errors: [] };
  const html = renderReport(a);
  t.false(html.includes('class="card tone-good" data-card="errors"'));
  t.false(/none refused/.test(html));
  const failed = renderReport({ ...a, status: 'failed', errors: [{ seq: 9, tMs: 1, code: 'MIGRATION_FAILED', message: 'migration failed (from postcopy-active)' }] });
  t.true(failed.includes('data-card="failure"'));
  t.true(failed.includes('class="card tone-bad" data-card="failure"'));
});

test('an unfinished migration puts its outstanding requests first, in an alert panel, with block, offset, address and age', (t) => {
  const a = sampleAnalysis({ ending: 'paused' });
  t.true(a.requests.outstanding.length > 0);
  const html = renderReport(a);
  const table = html.indexOf('id="table-outstanding"');
  t.true(table > 0 && table < html.indexOf('id="plot-timeline"'), 'before the plots');
  t.regex(html, /<section class="panel alert" data-panel="outstanding">/);
  for (const r of a.requests.outstanding) {
    for (const cell of [r.block, hex(r.offset), hex(r.address!), formatMs(r.ageMs), String(r.seq)]) t.true(html.includes(`>${esc(cell)}</td>`), cell);
  }
  t.regex(html, /did not complete/);
});

test('a completed migration lists (no) outstanding requests after the plots, without alarm', (t) => {
  const a = sampleAnalysis({ ending: 'completed' });
  t.is(a.requests.outstanding.length, 0);
  const html = renderReport(a);
  t.true(html.indexOf('data-panel="outstanding"') > html.indexOf('id="plot-latency-cdf"'));
  t.false(html.includes('did not complete'));
  t.regex(html, /No page requests outstanding/);
});

test('the requests are split by the channel that answered them, with their latencies', (t) => {
  const a = sampleAnalysis();
  a.requests.answeredBy.preempt = { count: 3, p50Ms: 1.25, p99Ms: 2.5, maxMs: 2.5 };
  const html = renderReport(a);
  const panel = html.slice(html.indexOf('data-panel="answered"'), html.indexOf('</section>', html.indexOf('data-panel="answered"')));
  t.true(panel.includes('>main channel (mostly pages already on their way)</td>'));
  t.true(panel.includes(`>${esc(formatMs(a.requests.answeredBy.main.p50Ms))}</td>`));
  t.true(panel.includes('>preempt channel (the urgent path)</td><td class="num">3</td>'));
  for (const ms of [1.25, 2.5]) t.true(panel.includes(`>${esc(formatMs(ms))}</td>`));
  t.false(panel.includes('zero page'), 'a channel that answered nothing is left out');
});

test('errors are listed with their sequence numbers', (t) => {
  const a = sampleAnalysis();
  const html = renderReport(a);
  const table = html.slice(html.indexOf('id="table-errors"'));
  for (const e of a.errors) {
    t.true(table.includes(`>${e.seq}</td>`));
    t.true(table.includes(esc(e.message)));
    t.true(table.includes(esc(e.code)));
  }
});

test('a damaged journal says from which sequence number it could not be read', (t) => {
  const a = sampleAnalysis();
  a.journal.unreadableFrom = 12345;
  a.journal.unreadableReason = 'segment checksum mismatch';
  const html = renderReport(a);
  t.regex(html, /class="banner bad">This journal is damaged: events from sequence number 12345 on could not be read \(segment checksum mismatch\)/);
});

test('the Gantt chart draws each vCPU with intervals, and a long wait across a pause stays one labelled bar', (t) => {
  const a = sampleAnalysis();
  const gantt = svgOf(renderReport(a), 'plot-gantt');
  for (const b of a.series.vcpuBlocked) t.true(count(gantt, `data-vcpu="${b.vcpu}"`) >= 1, `vCPU ${b.vcpu}`);
  const pause = a.pauses[0]!;
  for (const b of a.series.vcpuBlocked) {
    const across = b.intervals.find(([s, e]) => s < pause.startMs && e > pause.endMs!)!;
    t.truthy(across, `vCPU ${b.vcpu} waits across the pause`);
    t.true(gantt.includes(`>${formatMs(across[1] - across[0])}</text>`), `its ${formatMs(across[1] - across[0])} is labelled`);
    t.true(gantt.includes(`<title>vCPU ${b.vcpu} blocked ${formatMs(across[1] - across[0])}, from ${formatMs(across[0])} to ${formatMs(across[1])}</title>`), 'and has a bar of its own');
  }
});

test('a huge analysis still gives a bounded report', (t) => {
  const a = sampleAnalysis();
  const huge: Analysis = {
    ...a,
    timeline: Array.from({ length: 60_000 }, (_, i) => ({ seq: i, tMs: (i / 60_000) * a.durationMs, machine: 'faultThread', from: i % 2 ? 'running.requesting' : 'running.idle', to: i % 2 ? 'running.idle' : 'running.requesting', event: 'FAULT' })),
    requests: { ...a.requests, outstanding: Array.from({ length: 20_000 }, (_, i) => ({ block: 'pc.ram', offset: i * 4096, address: null, requestedAtMs: i / 10, ageMs: a.durationMs - i / 10, seq: i })) },
    errors: Array.from({ length: 20_000 }, (_, i) => ({ seq: i, tMs: i / 10, code: 'WRONG_STATE', message: 'refused' })),
    series: {
      received: Array.from({ length: 200_000 }, (_, i): [number, number] => [(i / 200_000) * a.durationMs, i]),
      vcpuBlocked: [0, 1].map((vcpu) => ({ vcpu, intervals: Array.from({ length: 150_000 }, (_, i): [number, number] => [i * 0.02 + vcpu * 0.005, i * 0.02 + vcpu * 0.005 + 0.01]) })),
      latencyCdf: Array.from({ length: 100_000 }, (_, i): [number, number] => [0.01 + i * 0.01, i / 100_000]),
    },
  };
  const html = renderReport(huge);
  t.true(html.length < 2_000_000, `${html.length} characters`);
  const gantt = svgOf(html, 'plot-gantt');
  for (const vcpu of [0, 1]) t.true(count(gantt, `data-vcpu="${vcpu}"`) <= MAX_BARS_PER_VCPU);
  for (const id of ['table-outstanding', 'table-errors']) {
    const start = html.indexOf(`id="${id}"`);
    const table = html.slice(start, html.indexOf('</table>', start));
    t.is(count(table, '<tr>'), MAX_TABLE_ROWS + 1, `${id}: the heading and ${MAX_TABLE_ROWS} rows`);
  }
  t.is(count(html, `… and ${groupDigits(20_000 - MAX_TABLE_ROWS)} more not listed.`), 2);
});

test('an analysis with no faults, no state changes and no pages still has every plot, saying so', (t) => {
  const a = sampleAnalysis({ ending: 'completed' });
  const empty: Analysis = {
    ...a,
    timeline: [],
    pauses: [],
    faults: { count: 0, timed: 0, unanswered: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0, histogram: [], slowest: [] },
    series: { received: [], vcpuBlocked: [], latencyCdf: [] },
  };
  const html = renderReport(empty);
  for (const id of PLOT_IDS) t.is(count(html, `id="${id}"`), 1);
  t.regex(svgOf(html, 'plot-timeline'), /no state changes/);
  t.regex(svgOf(html, 'plot-received'), /no pages received/);
  t.regex(svgOf(html, 'plot-latency-histogram'), /no faults/);
  t.false(/NaN|Infinity|undefined/.test(html), 'no broken numbers');
});
