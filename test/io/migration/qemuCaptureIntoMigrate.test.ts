import test from 'ava';
import { connect } from 'node:net';
import { join } from 'node:path';
import { TARGET_PAGE_SIZE } from '../../../src/engine/constants.js';
import { EventKind } from '../../../src/engine/events.js';
import { MainStreamDecoder, ReturnPathDecoder, type ReturnPathItem } from '../../../src/engine/qemuWire/index.js';
import { runMigrationDestination } from '../../../src/io/migration/migrationDestination.js';
import { JournalReader } from '../../../src/journal/journalReader.js';
import { unpack } from 'msgpackr';
import { scratchDir } from '../../scratchDir.js';
import { loadCaptureHead, MAIN, TO_DESTINATION } from '../../engine/qemuWire/capture.js';

/**
 * A real QEMU 7.2 source's main stream (the plain capture) played into the destination
 * process of our own `migrate`: the same decoder and item feeding as `postcopy receive`
 * read it. Our migrate destination holds the one block its orchestrator gave it, so it
 * reads QEMU's opening as QEMU's destination would (PING 1 answered with PONG 1, ADVISE
 * accepted) and refuses the 6-block MEM_SIZE by name; a whole QEMU migration into our
 * engine is `postcopy receive` (test/io/qemu/receive.test.ts), which lays memory out from
 * MEM_SIZE.
 */
test('a real QEMU 7.2 main stream into the migrate destination: read as QEMU\'s, PONG 1 answered, its 6-block MEM_SIZE refused by name', async (t) => {
  const journal = join(scratchDir('pcqcap-'), 'dst.journal');
  let giveUp!: () => void;
  let listening!: (port: number) => void;
  const port = new Promise<number>((r) => (listening = r));
  const done = runMigrationDestination(
    { sizeBytes: 256 * TARGET_PAGE_SIZE, hostPageSize: 4096, vcpus: 1, workload: 'sequential-increment', seed: 1, preempt: false, journalPath: journal, backend: 'mock', faultReader: 'loop', vcpuNice: 0 },
    (m) => m.type === 'listening' && listening(m.port),
    new Promise<void>((r) => (giveUp = r)),
  );
  const stream = loadCaptureHead('plain', 'wire-main.gz', 64 * 1024).bytes(MAIN, TO_DESTINATION);
  const sock = connect({ host: '127.0.0.1', port: await port });
  const answers: ReturnPathItem[] = [];
  const decoder = new ReturnPathDecoder();
  sock.on('data', (b: Buffer) => answers.push(...decoder.push(b)));
  sock.on('error', () => {});
  // QEMU's bytes up to the end of the RAM section that holds MEM_SIZE (what comes after it
  // would be left unread at the close, and a close with unread bytes resets the connection).
  const items = new MainStreamDecoder().push(stream);
  const memSizeAt = items.findIndex((i) => i.kind === 'mem-size');
  const footer = items.slice(memSizeAt).find((i) => i.kind === 'section-footer')!;
  t.deepEqual(items.slice(0, memSizeAt + 1).map((i) => i.kind), ['header', 'configuration', 'open-return-path', 'ping', 'advise', 'section-start', 'mem-size'], 'the capture opens as the reference says');
  sock.write(stream.subarray(0, footer.offset + 5));
  await new Promise<void>((r) => sock.once('close', () => r()));
  t.deepEqual(answers.map((a) => (a.kind === 'pong' ? `pong ${a.value}` : a.kind)), ['pong 1'], 'PING 1 answered, nothing else');
  giveUp();
  t.is(await done, 3, 'the migration never started: the orchestrator gives up');
  const j = JournalReader.open(journal);
  try {
    const errors = [...j.records()].filter((e) => e.kind === EventKind.IN_STREAM_ERROR);
    t.is(errors.length, 1);
    const reason = String(unpack(errors[0]!.payload!));
    t.regex(reason, /MEM_SIZE offers 'pc\.ram' 268435456, .*'\/rom@etc\/acpi\/rsdp' 4096; this destination holds 'pc\.ram' 1048576/);
    const commands = [...j.records()].filter((e) => e.kind === EventKind.IN_COMMAND).length;
    t.is(commands, 3, 'OPEN_RETURN_PATH, PING 1 and ADVISE were engine inputs before MEM_SIZE');
  } finally {
    j.close();
  }
});
