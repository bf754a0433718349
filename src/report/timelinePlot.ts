import type { Analysis } from '../forensics/analysisTypes.js';
import { MACHINE_NAMES } from '../engine/events.js';
import { stateColor } from './stateColors.js';
import { el, svgPlot, text } from './svg.js';
import { PLOT_WIDTH, TIME_LEFT, pauseBands, timeAxis, timeScale } from './timeAxis.js';
import { formatMs } from '../text.js';

/** One bar of a lane: a state held from startMs to endMs, or a burst of changes too quick to draw one by one. */
interface Segment {
  state: string;
  startMs: number;
  endMs: number;
  event: string;
  seq: number | null;
  /** > 1: a burst of this many state changes, each narrower than a few pixels. */
  changes: number;
}

const LANE_HEIGHT = 30;
const TOP = 26;
const MIN_SEGMENT_PX = 3;
/** Hatching for bursts of quick state changes. */
const BURST_PATTERN = '<defs><pattern id="burst" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#e2e8f0"/><line x1="0" y1="0" x2="0" y2="6" stroke="#64748b" stroke-width="2"/></pattern></defs>';
const LANE_TITLES: Record<string, string> = { postcopy: 'postcopy state', migration: 'migration status', faultThread: 'fault thread', preemptThread: 'preempt thread' };

/**
 * Pure: the state timeline: one lane per state machine, one coloured bar per state it
 * held, pauses shaded. Bursts of changes narrower than a few pixels are drawn as one
 * hatched bar, so the size of the plot does not grow with the journal.
 */
export function timelinePlot(a: Analysis): string {
  const x = timeScale(a.durationMs);
  const msPerPx = Math.max(a.durationMs, 1) / (x.range[1] - x.range[0]);
  const machines = machineOrder(a);
  const axisY = TOP + Math.max(1, machines.length) * LANE_HEIGHT + 6;
  let body = BURST_PATTERN + timeAxis(x, axisY, TOP - 16) + pauseBands(a, x, TOP - 16, axisY, true);
  machines.forEach((machine, i) => {
    const y = TOP + i * LANE_HEIGHT;
    body += text(TIME_LEFT - 10, y + LANE_HEIGHT / 2 + 2, LANE_TITLES[machine] ?? machine, { class: 'lane-label', 'text-anchor': 'end' });
    const segments = coalesce(segmentsOf(a, machine), MIN_SEGMENT_PX * msPerPx);
    for (const s of segments) body += segmentBar(machine, s, x, y);
  });
  if (machines.length === 0) body += text(PLOT_WIDTH / 2, TOP + LANE_HEIGHT / 2, 'no state changes in this journal', { class: 'empty', 'text-anchor': 'middle' });
  return svgPlot('plot-timeline', 'State timeline: the state of each machine over time', PLOT_WIDTH, axisY + 46, body);
}

function machineOrder(a: Analysis): string[] {
  const seen = new Set(a.timeline.map((e) => e.machine));
  const known = MACHINE_NAMES.filter((m) => seen.has(m));
  return [...known, ...[...seen].filter((m) => !(MACHINE_NAMES as readonly string[]).includes(m))];
}

/** Pure: the states one machine held, from t = 0 (its first `from`) to the end of the journal. */
function segmentsOf(a: Analysis, machine: string): Segment[] {
  const changes = a.timeline.filter((e) => e.machine === machine);
  if (changes.length === 0) return [];
  const out: Segment[] = [{ state: changes[0]!.from, startMs: 0, endMs: changes[0]!.tMs, event: 'initial state', seq: null, changes: 1 }];
  changes.forEach((c, i) => {
    const end = i + 1 < changes.length ? changes[i + 1]!.tMs : Math.max(a.durationMs, c.tMs);
    out.push({ state: c.to, startMs: c.tMs, endMs: end, event: c.event, seq: c.seq, changes: 1 });
  });
  return out.filter((s) => s.endMs > s.startMs || s === out[out.length - 1]);
}

/** Pure: runs of two or more consecutive segments each shorter than `minMs` become one burst segment. */
function coalesce(segments: Segment[], minMs: number): Segment[] {
  const out: Segment[] = [];
  let run: Segment[] = [];
  const flush = () => {
    if (run.length === 1) out.push(run[0]!);
    else if (run.length > 1) {
      const states = [...new Set(run.map((s) => s.state))];
      out.push({ state: states.slice(0, 4).join(' / ') + (states.length > 4 ? ' / …' : ''), startMs: run[0]!.startMs, endMs: run[run.length - 1]!.endMs, event: run[0]!.event, seq: run[0]!.seq, changes: run.length });
    }
    run = [];
  };
  for (const s of segments) {
    if (s.endMs - s.startMs < minMs) run.push(s);
    else {
      flush();
      out.push(s);
    }
  }
  flush();
  return out;
}

function segmentBar(machine: string, s: Segment, x: (v: number) => number, y: number): string {
  const x0 = x(s.startMs);
  const w = Math.max(1, x(s.endMs) - x0);
  const h = LANE_HEIGHT - 8;
  const burst = s.changes > 1;
  const color = stateColor(s.state);
  const tip = burst
    ? `${machine}: ${s.changes} state changes between ${formatMs(s.startMs)} and ${formatMs(s.endMs)} (${s.state}), too quick to draw one by one`
    : `${machine}: ${s.state} from ${formatMs(s.startMs)} to ${formatMs(s.endMs)} (${formatMs(s.endMs - s.startMs)})${s.seq === null ? '' : `, entered on ${s.event} at sequence number ${s.seq}`}`;
  let out = el('rect', { x: x0, y: y + 4, width: w, height: h, rx: 2, fill: burst ? 'url(#burst)' : color.fill, class: 'state', 'data-state': s.state }, '', tip);
  const label = (burst ? [`${s.changes} changes`] : [s.state, s.state.split('.')[0]!]).find((l) => w >= l.length * 6.4 + 8);
  if (label !== undefined) {
    out += text(x0 + 4, y + 4 + h / 2 + 4, label, { class: burst || !color.dark ? 'bar-label' : 'bar-label on-dark' });
  }
  return out;
}
