/** A fill colour and whether text on it must be white. */
export interface StateColor {
  fill: string;
  dark: boolean;
}

const KNOWN = new Map<string, StateColor>(Object.entries({
  // PostcopyState
  NONE: { fill: '#e2e8f0', dark: false },
  ADVISE: { fill: '#c7d2fe', dark: false },
  DISCARD: { fill: '#ddd6fe', dark: false },
  LISTENING: { fill: '#93c5fd', dark: false },
  RUNNING: { fill: '#2563eb', dark: true },
  END: { fill: '#16a34a', dark: true },
  // migration status
  setup: { fill: '#e2e8f0', dark: false },
  active: { fill: '#93c5fd', dark: false },
  'postcopy-active': { fill: '#2563eb', dark: true },
  'postcopy-paused': { fill: '#f59e0b', dark: false },
  'postcopy-recover': { fill: '#fcd34d', dark: false },
  completed: { fill: '#16a34a', dark: true },
  failed: { fill: '#dc2626', dark: true },
  cancelled: { fill: '#dc2626', dark: true },
  // threads
  notStarted: { fill: '#e2e8f0', dark: false },
  running: { fill: '#60a5fa', dark: false },
  paused: { fill: '#f59e0b', dark: false },
  quitting: { fill: '#cbd5e1', dark: false },
  exited: { fill: '#94a3b8', dark: false },
  CREATED: { fill: '#60a5fa', dark: false },
  QUIT: { fill: '#94a3b8', dark: false },
}));

const OTHERS = ['#a5f3fc', '#bbf7d0', '#fbcfe8', '#fde68a', '#ddd6fe', '#fed7aa'];

/**
 * Pure: the colour of a state, the same in every lane and every report: blue running,
 * amber paused, green done, red failed. A nested state ('running.idle') takes its top
 * level's colour unless its name says paused or failed; an unknown state a stable pastel chosen from its name.
 */
export function stateColor(state: string): StateColor {
  const exact = KNOWN.get(state);
  if (exact) return exact;
  if (/fail|error/i.test(state)) return { fill: '#dc2626', dark: true };
  if (/pause/i.test(state)) return { fill: '#f59e0b', dark: false };
  const topLevel = KNOWN.get(state.split('.')[0]!);
  if (topLevel) return topLevel;
  let h = 0;
  for (const c of state) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return { fill: OTHERS[h % OTHERS.length]!, dark: false };
}
