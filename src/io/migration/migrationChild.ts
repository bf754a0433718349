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
  pending.push(new Promise((resolve) => (process.send ? process.send(m, undefined, {}, () => resolve()) : resolve())));
};
const flushed = (): Promise<unknown> => Promise.all(pending);

async function main(): Promise<number> {
  if (role === 'source') {
    await runMigrationSource(options as SourceOptions, send);
    return 0;
  }
  if (role === 'destination') {
    const giveUp = new Promise<void>((resolve) => process.on('message', (m: { type?: string }) => m?.type === 'give-up' && resolve()));
    return runMigrationDestination(options as DestinationOptions, send, giveUp);
  }
  throw new Error(`unknown role '${role}' (source or destination)`);
}

main().then(
  async (code) => {
    process.exitCode = code;
    await flushed();
    process.disconnect?.();
  },
  async (err: unknown) => {
    process.stderr.write(`${role}: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
    process.exitCode = 1;
    await flushed();
    process.disconnect?.();
  },
);
