import test from 'ava';
import { connect, createServer, type Socket } from 'node:net';
import { withReadBuffer } from '../../../src/io/qemu/readBufferSocket.js';

/** pure: `bytes` bytes of a pattern that shows any reordering or loss. */
function pattern(bytes: number): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i += 4) out.writeUInt32LE(i >>> 2, i);
  return out;
}

test('an accepted connection read into one reused buffer: every byte in order, the views reused, end and close as before, the server free to close', async (t) => {
  const sent = pattern(8 << 20);
  const chunks: Buffer[] = [];
  let largest = 0;
  const views = new Set<ArrayBufferLike>();
  let socket: Socket | null = null;
  const ended = new Promise<void>((resolve) => {
    const server = createServer({ pauseOnConnect: true }, (accepted) => {
      socket = withReadBuffer(accepted, (chunk) => {
        largest = Math.max(largest, chunk.length);
        views.add(chunk.buffer);
        chunks.push(Buffer.from(chunk)); // the view is valid during the call only
      }, 256 * 1024);
      socket.on('end', () => socket!.end());
      socket.on('close', () => server.close(() => resolve()));
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      const client = connect(port, '127.0.0.1', () => {
        for (let at = 0; at < sent.length; at += 100_000) client.write(sent.subarray(at, at + 100_000));
        client.end();
      });
      client.on('error', () => {});
    });
  });
  await ended;
  t.true(Buffer.concat(chunks).equals(sent), 'the bytes arrived whole and in order');
  t.is(views.size, 1, 'every read landed in the same buffer');
  t.true(largest <= 256 * 1024, `no read beyond the buffer (largest ${largest})`);
  t.not(socket, null);
});
