/**
 * Entry point of the two processes of an end-to-end migration (forked by
 * `postcopy migrate` with an IPC channel): argv[2] is the role, argv[3] the options as
 * JSON. Messages go to the parent over IPC; the destination gives up on a paused
 * migration when the parent says so.
 */
import { runMigrationDestination, type DestinationOptions } from './migrationDestination.js';
import { runMigrationSource, type SourceOptions } from './migrationSource.js';

const role = process.argv[2];
const options = JSON.parse(process.argv[3] ?? '{}') as unknown;
const pending: Array<Promise<void>> = [];
/** Sends to the parent; `flushed()` waits until every message has left (before disconnecting). */
const send = (m: unknown): void => {
  // After the parent is gone there is nobody to tell: the message is dropped, not thrown.
  pending.push(new Promise((resolve) => (process.send && process.connected ? process.send(m, undefined, {}, () => resolve()) : resolve())));
};
/** Set once this process disconnects on its own, at its end. */
let finishing = false;
/** The parent is gone (killed, or it dropped us): the destination gives up (its journal closed cleanly), the source stops. */
const parentGone = new Promise<void>((resolve) => process.once('disconnect', () => {
  if (finishing) return;
  process.stderr.write(`${role}: the migrate process is gone, stopping\n`);
  if (role === 'source') process.exit(1);
  resolve();
  // Whatever still holds the event loop must not keep an orphan alive.
  setTimeout(() => process.exit(1), 3000).unref();
}));
const flushed = (): Promise<unknown> => Promise.all(pending);

async function main(): Promise<number> {
  if (role === 'source') {
    await runMigrationSource(options as SourceOptions, send);
    return 0;
  }
  if (role === 'destination') {
    const giveUp = new Promise<void>((resolve) => {
      process.on('message', (m: { type?: string }) => m?.type === 'give-up' && resolve());
      void parentGone.then(resolve);
    });
    return runMigrationDestination(options as DestinationOptions, send, giveUp);
  }
  throw new Error(`unknown role '${role}' (source or destination)`);
}

main().then(
  async (code) => {
    process.exitCode = code;
    await flushed();
    finishing = true;
    if (process.connected) process.disconnect?.();
  },
  async (err: unknown) => {
    // The parent names the failure in its one line; the stack is for debugging.
    if (process.env.POSTCOPY_DEBUG) process.stderr.write(`${role}: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
    process.exitCode = 1;
    await flushed();
    finishing = true;
    if (process.connected) process.disconnect?.();
  },
);
