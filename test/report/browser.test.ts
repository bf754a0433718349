import test from 'ava';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { renderReport } from '../../src/report/renderReport.js';
import { Chromium } from './chromium.js';
import { sampleAnalysis } from './sampleAnalysis.js';
import { scratchDir } from '../scratchDir.js';
import { testDeps } from '../testDeps.js';

/**
 * The report in a real browser: Chromium (found, or installed when missing, by npm test's
 * pretest step scripts/test-deps.mjs)
 * loads it from a file, with nothing in the console, nothing fetched, and every plot
 * drawn. A screenshot is left in test-output/ for people to look at. If chromium cannot
 * be started this fails with the reason: it is not optional.
 */

const OUT_DIR = fileURLToPath(new URL('../../../test-output/', import.meta.url));
const PLOT_IDS = ['plot-timeline', 'plot-received', 'plot-gantt', 'plot-latency-histogram', 'plot-latency-cdf'];

interface PlotFacts {
  id: string;
  present: boolean;
  title: string | null;
  width: number;
  height: number;
  shapes: number;
  visibleShapes: number;
}

/** Runs in the page: what each plot holds, measured by the browser's own layout. */
const MEASURE = `(() => {
  const plots = ${JSON.stringify(PLOT_IDS)}.map((id) => {
    const svg = document.getElementById(id);
    if (!svg) return { id, present: false, title: null, width: 0, height: 0, shapes: 0, visibleShapes: 0 };
    const box = svg.getBoundingClientRect();
    const shapes = [...svg.querySelectorAll('rect, path, line, polyline, circle')].filter((s) => !s.classList.contains('grid') && !s.classList.contains('axis'));
    const visible = shapes.filter((s) => { const b = s.getBBox(); return b.width > 0 || b.height > 0; });
    const title = svg.firstElementChild && svg.firstElementChild.tagName.toLowerCase() === 'title' ? svg.firstElementChild.textContent : null;
    return { id, present: svg.tagName.toLowerCase() === 'svg', title, width: box.width, height: box.height, shapes: shapes.length, visibleShapes: visible.length };
  });
  const ganttBars = {};
  for (const r of document.querySelectorAll('#plot-gantt rect.blocked')) {
    const b = r.getBBox();
    if (b.width > 0 && b.height > 0) ganttBars[r.dataset.vcpu] = (ganttBars[r.dataset.vcpu] || 0) + 1;
  }
  return { plots, ganttBars, scripts: document.scripts.length, pageWidth: document.documentElement.scrollWidth,
    outstandingRows: document.querySelectorAll('#table-outstanding tbody tr').length,
    outstandingText: document.querySelector('#table-outstanding')?.textContent ?? '', pwned: window.__pwned === 1 };
})()`;

/** Loads `html` (written to `name` in test-output/) in a fresh tab; returns the measures and what the page did. */
async function load(browser: Chromium, name: string, html: string) {
  mkdirSync(OUT_DIR, { recursive: true });
  const file = `${OUT_DIR}${name}`;
  writeFileSync(file, html);
  const url = pathToFileURL(file).href;
  const session = await browser.newPage(1200, 900);
  for (const domain of ['Page', 'Runtime', 'Log', 'Network']) await browser.send(`${domain}.enable`, {}, session);
  const loaded = browser.waitFor('Page.loadEventFired', session);
  await browser.send('Page.navigate', { url }, session);
  await loaded;
  const { result } = await browser.send('Runtime.evaluate', { expression: MEASURE, returnByValue: true }, session);
  const facts = (result as { value: { plots: PlotFacts[]; ganttBars: Record<string, number>; scripts: number; pageWidth: number; outstandingRows: number; outstandingText: string; pwned: boolean } }).value;
  const mine = browser.events.filter((e) => e.sessionId === session);
  const consoleMessages = mine.filter((e) => e.method === 'Runtime.consoleAPICalled' || e.method === 'Runtime.exceptionThrown');
  const logProblems = mine.filter((e) => e.method === 'Log.entryAdded' && ['error', 'warning'].includes((e.params.entry as { level: string }).level));
  const requests = mine.filter((e) => e.method === 'Network.requestWillBeSent').map((e) => (e.params.request as { url: string }).url);
  return { session, file, url, facts, consoleMessages, logProblems, requests };
}

/** A full-page PNG at 1200 CSS px wide. */
async function screenshot(browser: Chromium, session: string, file: string): Promise<void> {
  const { cssContentSize } = await browser.send('Page.getLayoutMetrics', {}, session);
  const height = Math.ceil((cssContentSize as { height: number }).height);
  await browser.send('Emulation.setDeviceMetricsOverride', { width: 1200, height, deviceScaleFactor: 1, mobile: false }, session);
  const { data } = await browser.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }, session);
  writeFileSync(file, Buffer.from(data as string, 'base64'));
}

async function launch(t: { fail: (m: string) => void }): Promise<Chromium | null> {
  const CHROMIUM = testDeps().chromium;
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} (from test-output/test-deps.json) not found: run npm test, whose pretest finds or installs chromium`);
    return null;
  }
  try {
    return await Chromium.launch(CHROMIUM);
  } catch (err) {
    t.fail(`cannot start ${CHROMIUM}: ${(err as Error).message}`);
    return null;
  }
}

test.serial('the report of a paused run opens in Chromium with no console errors, no requests, and every plot drawn', async (t) => {
  const analysis = sampleAnalysis({ ending: 'paused' });
  const browser = await launch(t);
  if (!browser) return;
  try {
    const page = await load(browser, 'report.html', renderReport(analysis));
    await screenshot(browser, page.session, `${OUT_DIR}report.png`);
    t.deepEqual(page.consoleMessages.map((e) => JSON.stringify(e.params)), [], 'nothing written to the console, no exception');
    t.deepEqual(page.logProblems.map((e) => JSON.stringify(e.params.entry)), [], 'no error or warning logged by the browser');
    t.deepEqual(page.requests, [page.url], 'the page loads nothing but itself');
    t.is(page.facts.scripts, 0);
    for (const plot of page.facts.plots) {
      t.true(plot.present, `${plot.id} is an <svg>`);
      t.truthy(plot.title, `${plot.id} has a <title>`);
      t.true(plot.width > 300 && plot.height > 150, `${plot.id} is laid out (${plot.width}×${plot.height})`);
      t.true(plot.visibleShapes > 0, `${plot.id} has drawn shapes`);
    }
    t.true(page.facts.pageWidth <= 1200, 'nothing is wider than the 1200 px window');
    for (const b of analysis.series.vcpuBlocked) {
      t.true((page.facts.ganttBars[String(b.vcpu)] ?? 0) >= 1, `vCPU ${b.vcpu} has blocked bars in the Gantt chart`);
    }
    t.is(page.facts.outstandingRows, analysis.requests.outstanding.length);
  } finally {
    await browser.close();
  }
});

test.serial('journal strings with markup are shown as text in the browser, never run', async (t) => {
  const hostile = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">pc.ram';
  const browser = await launch(t);
  if (!browser) return;
  try {
    const page = await load(browser, 'report-hostile.html', renderReport(sampleAnalysis({ blockName: hostile, errorMessage: hostile })));
    t.false(page.facts.pwned);
    t.is(page.facts.scripts, 0);
    t.true(page.facts.outstandingText.includes(hostile), 'the block name is shown literally');
    t.deepEqual(page.requests, [page.url], 'the <img> in the name was not fetched');
    t.deepEqual(page.consoleMessages.map((e) => JSON.stringify(e.params)), []);
  } finally {
    await browser.close();
  }
});

test.serial('the report of a real fixture journal (QEMU 7.2 `fail` capture, imported) opens in Chromium with every plot drawn', async (t) => {
  const { importQemuTrace } = await import('../../src/io/qemu/qemuImport.js');
  const { JournalReader } = await import('../../src/journal/journalReader.js');
  const { analyzeJournal } = await import('../../src/forensics/analysis.js');
  const { fixture } = await import('../fixtures.js');
  const { join } = await import('node:path');
  const journal = join(scratchDir('pcreport-'), 'fail.journal');
  await importQemuTrace({ dstTrace: fixture('fail', 'dst-trace.log.gz'), out: journal });
  const reader = JournalReader.open(journal);
  const analysis = analyzeJournal(reader);
  reader.close();
  t.is(analysis.status, 'postcopy-paused');
  const browser = await launch(t);
  if (!browser) return;
  try {
    const page = await load(browser, 'report-qemu-fail.html', renderReport(analysis, { title: 'QEMU 7.2 fixture: source killed during postcopy' }));
    await screenshot(browser, page.session, `${OUT_DIR}report-qemu-fail.png`);
    t.deepEqual(page.consoleMessages.map((e) => JSON.stringify(e.params)), []);
    t.deepEqual(page.logProblems.map((e) => JSON.stringify(e.params.entry)), []);
    t.deepEqual(page.requests, [page.url]);
    for (const plot of page.facts.plots) t.true(plot.present && plot.visibleShapes > 0, `${plot.id} drawn`);
    t.is(page.facts.outstandingRows, 2, 'the two requests QEMU never got back');
    t.true(Object.keys(page.facts.ganttBars).length >= 2, 'both vCPUs have blocked intervals');
  } finally {
    await browser.close();
  }
});

/**
 * Runs in the page (over the DevTools protocol, Runtime.evaluate): the geometry of every plot
 * as the browser laid it out: its time axis, pause bands and end-of-journal mark (getBBox, in the
 * plot's coordinates), and every text label by its box on the page (getBoundingClientRect, so a
 * rotated axis label counts as drawn), with the pairs of labels whose boxes overlap and the
 * labels that reach outside the plot.
 */
const GEOMETRY = `(() => [...document.querySelectorAll('svg.plot')].map((svg) => {
  // Labels by their boxes on the page (getBoundingClientRect: with their rotation), relative to the plot's box.
  const sb = svg.getBoundingClientRect();
  const vb = { width: sb.width, height: sb.height };
  const texts = [...svg.querySelectorAll('text')].map((t) => { const b = t.getBoundingClientRect(); return { text: t.textContent, x: b.x - sb.x, y: b.y - sb.y, w: b.width, h: b.height }; }).filter((b) => b.w > 0 && b.h > 0);
  const overlaps = [];
  for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++) {
    const p = texts[i], q = texts[j];
    if (p.x + 0.5 < q.x + q.w && q.x + 0.5 < p.x + p.w && p.y + 0.5 < q.y + q.h && q.y + 0.5 < p.y + p.h) overlaps.push(p.text + ' | ' + q.text);
  }
  const clipped = texts.filter((b) => b.x < -0.5 || b.y < -0.5 || b.x + b.w > vb.width + 0.5 || b.y + b.h > vb.height + 0.5).map((b) => b.text);
  const axisLine = [...svg.querySelectorAll('line.axis')].find((l) => l.y1.baseVal.value === l.y2.baseVal.value && l.x2.baseVal.value - l.x1.baseVal.value > 200);
  const axis = axisLine ? [axisLine.x1.baseVal.value, axisLine.x2.baseVal.value] : null;
  const pauses = [...svg.querySelectorAll('rect.pause')].map((r) => { const b = r.getBBox(); return [b.x, b.x + b.width]; });
  const ends = [...svg.querySelectorAll('line.mark-end')].map((l) => l.x1.baseVal.value);
  return { id: svg.id, overlaps, clipped, axis, pauses, ends };
}))()`;

interface PlotGeometry { id: string; overlaps: string[]; clipped: string[]; axis: [number, number] | null; pauses: Array<[number, number]>; ends: number[] }

const TIME_PLOTS = new Set(['plot-timeline', 'plot-received', 'plot-gantt', 'plot-gantt-postcopy']);

/** Issue 20: pause bands and the end of the journal inside the time axis, no label over another, none cut off. */
async function checkGeometry(t: import('ava').ExecutionContext, browser: Chromium, name: string, html: string, expectPause: boolean): Promise<void> {
  const page = await load(browser, `${name}.html`, html);
  await screenshot(browser, page.session, `${OUT_DIR}${name}.png`);
  const { result } = await browser.send('Runtime.evaluate', { expression: GEOMETRY, returnByValue: true }, page.session);
  const plots = (result as { value: PlotGeometry[] }).value;
  t.true(plots.length >= 5, `${name}: every plot measured`);
  for (const p of plots) {
    t.deepEqual(p.overlaps, [], `${name} ${p.id}: no label overlaps another`);
    t.deepEqual(p.clipped, [], `${name} ${p.id}: no label cut off at the plot's edge`);
    if (!TIME_PLOTS.has(p.id)) continue;
    t.truthy(p.axis, `${name} ${p.id}: has a time axis`);
    const [a0, a1] = p.axis!;
    for (const [x0, x1] of p.pauses) t.true(x0 >= a0 - 0.5 && x1 <= a1 + 0.5, `${name} ${p.id}: pause band ${x0}–${x1} inside the axis ${a0}–${a1}`);
    if (expectPause && p.id !== 'plot-gantt-postcopy') t.true(p.pauses.length >= 1, `${name} ${p.id}: the pause is drawn`);
    for (const x of p.ends) t.true(x >= a0 - 0.5 && x <= a1 + 0.5, `${name} ${p.id}: END mark at ${x} inside the axis`);
    if (p.id === 'plot-timeline') t.is(p.ends.length, 1, `${name}: the end of the journal is marked`);
  }
}

for (const run of ['fail', 'plain', 'preempt']) {
  test.serial(`the ${run} fixture's report: pause band and end mark inside the axis, no label overlapping another`, async (t) => {
    const { importQemuTrace } = await import('../../src/io/qemu/qemuImport.js');
    const { JournalReader } = await import('../../src/journal/journalReader.js');
    const { analyzeJournal } = await import('../../src/forensics/analysis.js');
    const { fixture } = await import('../fixtures.js');
    const { join } = await import('node:path');
    const journal = join(scratchDir('pcreport-'), `${run}.journal`);
    await importQemuTrace({ dstTrace: fixture(run, 'dst-trace.log.gz'), srcTrace: fixture(run, 'src-trace.log.gz'), stderr: fixture(run, 'dst-stdout.txt'), out: journal });
    const reader = JournalReader.open(journal);
    const analysis = analyzeJournal(reader);
    reader.close();
    const browser = await launch(t);
    if (!browser) return;
    try {
      await checkGeometry(t, browser, `report-geometry-${run}`, renderReport(analysis), run === 'fail');
    } finally {
      await browser.close();
    }
  });
}

test.serial('a kill-source run\'s report: its late pause inside the axis, no label overlapping another', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { join, resolve, dirname } = await import('node:path');
  const { JournalReader } = await import('../../src/journal/journalReader.js');
  const { analyzeJournal } = await import('../../src/forensics/analysis.js');
  const dir = scratchDir('pckill-');
  const journal = join(dir, 'kill.db');
  const main = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
  const r = spawnSync(process.execPath, [main, 'migrate', '--size', '64M', '--kill-source-at', '0.3', '--journal', journal, '--quiet'], { encoding: 'utf8', cwd: dir, timeout: 120_000 });
  t.is(r.status, 3, r.stdout + r.stderr);
  const reader = JournalReader.open(journal);
  const analysis = analyzeJournal(reader);
  reader.close();
  t.is(analysis.status, 'postcopy-paused');
  t.true(analysis.pauses[0]!.startMs <= analysis.durationMs);
  const browser = await launch(t);
  if (!browser) return;
  try {
    await checkGeometry(t, browser, 'report-geometry-kill-source', renderReport(analysis), true);
  } finally {
    await browser.close();
  }
});
