import cliProgress from 'cli-progress';

/** A progress reporter: a bar on a terminal, occasional plain lines otherwise. */
export interface Progress {
  update(done: number, total: number, fields?: Record<string, string | number>): void;
  stop(): void;
}

/** Shows the cursor and turns line wrap back on (what a bar turned off). */
const RESTORE_TERMINAL = '\x1b[?25h\x1b[?7h';

/** Pure: whether stderr gets a drawn bar: a terminal that can draw one (not TERM=dumb). */
export function drawsBar(isTTY: boolean | undefined, term: string | undefined): boolean {
  return isTTY === true && term !== 'dumb';
}

/**
 * Creates a progress reporter on stderr. On a terminal it draws a bar (cli-progress) that
 * never runs backwards and restores the cursor and line wrap on every exit path (stop, exit,
 * Ctrl-C through cli/interrupt.ts, which exits); on TERM=dumb or a pipe it prints a plain line at most every `plainEveryMs` and
 * the finished line once, so logs stay short.
 */
export function createProgress(label: string, opts: { format?: string; plainEveryMs?: number; enabled?: boolean } = {}): Progress {
  if (opts.enabled === false) return { update() {}, stop() {} };
  if (drawsBar(process.stderr.isTTY, process.env.TERM)) {
    const bar = new cliProgress.SingleBar(
      {
        format: opts.format ?? `${label} [{bar}] {percentage}% | {value}/{total}`,
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    let stopped = false;
    let shown = 0;
    const restore = (): void => {
      if (process.stderr.isTTY) process.stderr.write(RESTORE_TERMINAL);
    };
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      if (started) bar.stop();
      restore();
      process.removeListener('exit', restore);
    };
    return {
      update(done, total, fields) {
        if (stopped) return;
        // Never backwards: a total that grows does not pull the bar back.
        shown = Math.max(shown, total > 0 ? done / total : 0);
        if (!started) {
          process.once('exit', restore);
          bar.start(total, done, fields);
          started = true;
        } else {
          bar.setTotal(total);
          bar.update(Math.max(done, Math.ceil(shown * total)), fields);
        }
      },
      stop,
    };
  }
  const every = opts.plainEveryMs ?? 2000;
  // The first line after one interval, not at once: a short command prints only its finished line, never a stale 0/total.
  let last = Date.now();
  let finished = false;
  return {
    update(done, total, fields) {
      const now = Date.now();
      const end = done >= total;
      // The finished line once (a caller may report done == total many times), else one line per interval.
      if (end ? finished : now - last < every || done <= 0) return;
      if (end) finished = true;
      last = now;
      const extra = fields ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${v}`).join(' ') : '';
      process.stderr.write(`${label}: ${total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 100}%${extra}\n`);
    },
    stop() {},
  };
}
