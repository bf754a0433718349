import test from 'ava';
import { createServer, connect, Socket } from 'node:net';
import { BackendError } from '../../src/errors.js';
import { setTcpNotSentLowat } from '../../src/native/socketOptions.js';

/** TCP_NOTSENT_LOWAT through the addon, on a real TCP connection on 127.0.0.1. */
test('TCP_NOTSENT_LOWAT is set on a connected socket and read back from the kernel', async (t) => {
  const server = createServer((s) => s.on('error', () => {}));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const sock = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port }, () => resolve(s));
    s.once('error', reject);
  });
  try {
    t.is(setTcpNotSentLowat(sock, 128 * 1024), 128 * 1024);
    t.is(setTcpNotSentLowat(sock, 16 * 1024), 16 * 1024, 'set again: the new value holds');
    const err = t.throws(() => setTcpNotSentLowat(sock, 0));
    t.true(err instanceof BackendError, 'a byte count of 0 is refused with a typed error');
    t.regex(err!.message, /setTcpNotSentLowat: the byte count must be a positive 32-bit integer/);
  } finally {
    sock.destroy();
    server.close();
  }
});

test('a socket without a file descriptor (never connected) is refused with a typed error, not a crash', (t) => {
  const err = t.throws(() => setTcpNotSentLowat(new Socket(), 4096));
  t.true(err instanceof BackendError);
  t.regex(err!.message, /no file descriptor/);
});
