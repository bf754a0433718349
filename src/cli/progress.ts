import cliProgress from 'cli-progress';

/** A progress reporter: a bar on a terminal, occasional plain lines otherwise. */
export interface Progress {
  update(done: number, total: number, fields?: Record<string, string | number>): void;
  stop(): void;
}

/**
 * Creates a progress reporter on stderr. On a terminal it draws a bar (cli-progress);
 * otherwise it prints a plain line at most every `plainEveryMs`, so logs stay readable.
 */
export function createProgress(label: string, opts: { format?: string; plainEveryMs?: number; enabled?: boolean } = {}): Progress {
  if (opts.enabled === false) return { update() {}, stop() {} };
  if (process.stderr.isTTY) {
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
    return {
      update(done, total, fields) {
        if (!started) {
          bar.start(total, done, fields);
          started = true;
        } else {
          bar.setTotal(total);
          bar.update(done, fields);
        }
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  const every = opts.plainEveryMs ?? 2000;
  let last = 0;
  return {
    update(done, total, fields) {
      const now = Date.now();
      if (now - last < every && done < total) return;
      last = now;
      const extra = fields ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${v}`).join(' ') : '';
      process.stderr.write(`${label}: ${done}/${total}${extra}\n`);
    },
    stop() {},
  };
}
