/**
 * Ctrl-C (SIGINT) and SIGTERM for every command: each command registers what an
 * interruption must leave behind (a partial import is removed, so it never passes for a
 * whole one); then one line says what happened and the process exits 130 (SIGINT) or 143
 * (SIGTERM), as a shell expects of a killed command. The progress bar restores the cursor
 * on exit, so nothing else is needed for the terminal.
 */
import { commandName } from './lastResort.js';

type Cleanup = () => string | void;
const cleanups: Cleanup[] = [];
let installed = false;
/** Set while a command handles SIGINT / SIGTERM itself (tap: it stops and commits its journal). */
let takenOver = false;

/** The running command handles the signals itself until the returned function is called. */
export function takeOverInterrupts(): () => void {
  takenOver = true;
  return () => {
    takenOver = false;
  };
}

/** Runs `fn` if the command is interrupted (latest first); it may return a sentence for the user. Returns the unregister. */
export function onInterrupt(fn: Cleanup): () => void {
  cleanups.push(fn);
  return () => {
    const i = cleanups.indexOf(fn);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

/** Installs the handlers once (main.ts). */
export function installInterruptHandler(): void {
  if (installed) return;
  installed = true;
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(signal, () => {
      if (takenOver) return;
      const said: string[] = [];
      for (const fn of cleanups.splice(0).reverse()) {
        try {
          const s = fn();
          if (s) said.push(s);
        } catch (err) {
          said.push(`(cleanup failed: ${(err as Error).message})`);
        }
      }
      const name = commandName();
      if (process.stderr.isTTY) process.stderr.write('\n');
      process.stderr.write(`postcopy${name ? ` ${name}` : ''}: interrupted (${signal})${said.length ? `: ${said.join('; ')}` : ''}\n`);
      process.exit(code);
    });
  }
}
