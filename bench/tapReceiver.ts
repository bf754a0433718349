/**
 * The receiving end of `tap.forward.added`, in its own process as a migration's destination
 * is: a sender in the same process as its receiver never sleeps between its write and the
 * receiver's read (one event loop, the data already there), so a same-process baseline has
 * no receiver wakeup at all, and the tap's figure was charged with one that every real
 * destination pays with or without a tap.
 *
 * It prints `{"data":PORT,"control":PORT}` on one line. Every chunk read on a data
 * connection is reported on the control connection as 16 bytes: its length and its
 * arrival time (CLOCK_MONOTONIC ns, `process.hrtime`, the sender's clock too), both f64
 * little-endian.
 */
import { createServer, type Socket } from 'node:net';

let control: Socket | null = null;

const data = createServer((s) => {
  s.setNoDelay(true);
  s.on('data', (c: Buffer) => {
    const t = Number(process.hrtime.bigint());
    const record = Buffer.allocUnsafe(16);
    record.writeDoubleLE(c.length, 0);
    record.writeDoubleLE(t, 8);
    control?.write(record);
  });
  s.on('end', () => s.end());
  s.on('error', () => {});
});

const controlServer = createServer((s) => {
  s.setNoDelay(true);
  control = s;
  s.on('error', () => {});
  s.on('close', () => process.exit(0));
});

await Promise.all([new Promise<void>((r) => data.listen(0, '127.0.0.1', r)), new Promise<void>((r) => controlServer.listen(0, '127.0.0.1', r))]);
const port = (server: typeof data): number => (server.address() as { port: number }).port;
process.stdout.write(`${JSON.stringify({ data: port(data), control: port(controlServer) })}\n`);
