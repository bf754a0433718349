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
