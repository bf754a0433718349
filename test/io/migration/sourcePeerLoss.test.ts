import test from 'ava';
import { createServer, type Socket } from 'node:net';
import { runMigrationSource } from '../../../src/io/migration/migrationSource.js';

/**
 * The source notices a dead destination by itself (its connection closes), in precopy as
 * in postcopy, instead of waiting on the socket for ever: a fake destination on
 * 127.0.0.1 that takes the connection and then drops it.
 */
async function sourceAgainst(drop: (sock: Socket) => void): Promise<{ error: Error; ms: number }> {
  const server = createServer((sock) => {
    sock.on('error', () => {});
    drop(sock);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  const started = Date.now();
  try {
    await runMigrationSource({ port, sizeBytes: 16 << 20, hostPageSize: 4096, seed: 1, preempt: false, bandwidth: 4 << 20, dirtyRate: 0, prefetchPages: 0 }, () => {});
    throw new Error('the source finished against a destination that dropped it');
  } catch (err) {
    return { error: err as Error, ms: Date.now() - started };
  } finally {
    server.close();
  }
}

test('a destination that drops the connection during precopy: the source stops with a reason, at once', async (t) => {
  const { error, ms } = await sourceAgainst((sock) => setTimeout(() => sock.destroy(), 200));
  t.regex(error.message, /^the destination closed the main channel \(.+\) during precopy, \d+ ms after the source started$/);
  t.true(ms < 10_000, `hang guard: ${ms} ms`);
  t.log(`stopped ${ms} ms after the start (the drop was at 200 ms)`);
});

test('a destination that resets the connection at once: the source stops with a reason', async (t) => {
  const { error } = await sourceAgainst((sock) => sock.resetAndDestroy());
  // Reset before or after the connect completes: either way an error, not a wait.
  t.regex(error.message, /ECONNRESET|the destination closed the main channel/);
});
