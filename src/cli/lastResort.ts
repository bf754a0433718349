/**
 * The exit codes of every `postcopy` command, and the last resort: no exception reaches
 * the user as a stack trace. What is not an expected error (a bug) is one line,
 * `postcopy <command>: internal error: <message>`, plus where the journal is when the
 * command has one; POSTCOPY_DEBUG=1 adds the stack.
 */

/** One table for every command: the README and `--help` print it. */
export const ExitCode = {
  /** Done: migrated and verified, replay matches, file written. */
  OK: 0,
  /** A negative verdict: divergence, migration failed or not verified, a process of the migration died. */
  NEGATIVE: 1,
  /** Usage error (bad option, missing argument, bad value), unreadable input, refused output. */
  USAGE: 2,
  /** Left paused: the source was lost after LISTEN, the destination stays postcopy-paused. */
  PAUSED: 3,
  /** Internal error: a bug in postcopy, never a verdict. */
  INTERNAL: 4,
} as const;

export const EXIT_CODES_HELP = `
Exit codes (every command):
  0  done: migrated and verified, replay matches, file written
  1  negative verdict: divergence, migration failed or not verified, a migration process died
  2  usage error (unknown option, missing argument, bad value), unreadable input, or an
     output refused (it is an input, or an existing journal without --force)
  3  left paused: the source was lost after LISTEN; the destination stays postcopy-paused
  4  internal error (a bug): one line on stderr; POSTCOPY_DEBUG=1 adds the stack
  130, 143  interrupted by Ctrl-C (SIGINT) or SIGTERM: one line says what was left behind
     (a partial import is removed; a migration's journal keeps what it recorded)`;

let command = '';
let journal: string | null = null;

/** The command that runs (named in the last-resort line). */
export function setCurrentCommand(name: string): void {
  command = name;
}

/** The command that runs, '' before one is chosen. */
export function commandName(): string {
  return command;
}

/** The journal the running command reads or writes (the last-resort line says where it is). */
export function setCurrentJournal(path: string | null): void {
  journal = path;
}

/** The one line of an internal error (pure). */
export function internalErrorLine(err: unknown, cmd = command, journalPath = journal): string {
  const message = err instanceof Error ? err.message : String(err);
  const firstLine = message.split('\n')[0] ?? '';
  return `postcopy${cmd ? ` ${cmd}` : ''}: internal error: ${firstLine}${journalPath ? ` (journal: ${journalPath})` : ''}`;
}

/** Prints the internal error (one line; the stack with POSTCOPY_DEBUG=1) and sets exit code 4. */
export function reportInternalError(err: unknown): void {
  process.stderr.write(`${internalErrorLine(err)}\n`);
  if (process.env.POSTCOPY_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  process.exitCode = ExitCode.INTERNAL;
}

/** Uncaught exceptions and unhandled rejections end the process as internal errors, in one line. */
export function installLastResort(): void {
  const die = (err: unknown): void => {
    reportInternalError(err);
    process.exit(ExitCode.INTERNAL);
  };
  process.on('uncaughtException', die);
  process.on('unhandledRejection', die);
}

/**
 * Fault injection for the tests of this last resort: with POSTCOPY_INJECT_INTERNAL_ERROR
 * set, a command fails as a bug would ('throw': at once; 'async': from a timer, as an
 * uncaught exception).
 */
export function injectInternalError(): void {
  const mode = process.env.POSTCOPY_INJECT_INTERNAL_ERROR;
  if (!mode) return;
  const err = new TypeError('injected internal error (POSTCOPY_INJECT_INTERNAL_ERROR)');
  if (mode === 'async') setTimeout(() => {
    throw err;
  }, 10);
  else throw err;
}
