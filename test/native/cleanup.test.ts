import { UffdBackend } from '../../src/io/backends/uffdBackend.js';
import { PAGE, anonFds, layout, seededBytes, startPager, threadsNamed, uffdRegisteredMappings, uffdTest } from './helpers.js';

uffdTest('close() with vCPUs blocked on missing pages: they resume, and no registered range, fd or thread is left', async (t) => {
  const uffdFdsBefore = anonFds('[userfaultfd]');
  const eventFdsBefore = anonFds('[eventfd]');
  t.deepEqual(threadsNamed('uffd-reader'), []);
  t.deepEqual(threadsNamed('vcpu-'), []);
  t.deepEqual(uffdRegisteredMappings(), []);

  const pages = 64;
  const backend = new UffdBackend([layout('pc.ram', pages), layout('rom', 4)]);
  const pager = startPager(backend, [seededBytes(pages * PAGE, 1), seededBytes(4 * PAGE, 2)]);
  backend.register(0);
  backend.register(1);
  const status = backend.status();
  // One userfault fd and one quit eventfd more; one reader thread; both blocks registered.
  t.deepEqual(anonFds('[userfaultfd]'), [...uffdFdsBefore, status.fd].sort((a, b) => a - b));
  t.true(anonFds('[eventfd]').includes(status.eventFd));
  t.deepEqual(threadsNamed('uffd-reader'), [status.readerTid]);
  t.is(uffdRegisteredMappings().length, 2);

  // Serve nothing: both vCPUs end up blocked in the kernel on their first page.
  pager.serving = false;
  const run = backend.startVcpus({ pattern: 'sequential-increment', vcpus: 2 });
  while (pager.faults.length < 2) await new Promise((r) => setTimeout(r, 5));
  t.deepEqual(threadsNamed('vcpu-').sort(), [...run.tids].sort());
  t.true(backend.vcpuReports().every((r) => !r.finished && r.blockedAt !== 0));

  backend.close();
  const reports = await run.done;
  t.true(reports.every((r) => r.finished), 'unregister woke the blocked vCPUs and they were joined');
  t.deepEqual(anonFds('[userfaultfd]'), uffdFdsBefore);
  t.deepEqual(anonFds('[eventfd]'), eventFdsBefore);
  t.deepEqual(threadsNamed('uffd-reader'), []);
  t.deepEqual(threadsNamed('vcpu-'), []);
  for (const tid of [status.readerTid, ...run.tids]) t.false(threadsNamed('').includes(tid), `thread ${tid} is gone`);
  t.deepEqual(uffdRegisteredMappings(), []);
  const after = backend.status();
  t.is(after.fd, -1);
  t.is(after.eventFd, -1);
  t.false(after.readerRunning);
});

uffdTest('unregister() leaves no registered range and missing pages then read as zeros', (t) => {
  const backend = new UffdBackend([layout('pc.ram', 8)]);
  try {
    backend.listen(() => {});
    backend.register(0);
    t.is(uffdRegisteredMappings().length, 1);
    backend.unregister(0);
    t.deepEqual(uffdRegisteredMappings(), []);
    t.deepEqual(backend.status().registered, [false]);
    t.true(backend.read(0, 0, 8 * PAGE).every((x) => x === 0));
  } finally {
    backend.close();
  }
});

uffdTest('stopVcpus names the vCPUs still blocked on missing pages, and succeeds once their pages are placed', async (t) => {
  const pages = 16;
  const backend = new UffdBackend([layout('pc.ram', pages)]);
  try {
    const pager = startPager(backend, [seededBytes(pages * PAGE, 4)]);
    pager.serving = false;
    backend.register(0);
    const run = backend.startVcpus({ pattern: 'sequential-increment', vcpus: 1 });
    while (pager.faults.length < 1) await new Promise((r) => setTimeout(r, 5));
    const base = backend.hostAddress(0);
    const err = t.throws(() => backend.stopVcpus(50));
    t.regex(err!.message, new RegExp(`vCPU 0 \\(tid ${run.tids[0]}\\) at 0x${base.toString(16)}`));
    // Place the page it waits for: it finishes that access, sees the stop flag and ends.
    backend.zero(0, 0, PAGE);
    const reports = backend.stopVcpus(5000);
    t.true(reports[0]!.finished);
    t.is(reports[0]!.accesses, 1);
    t.deepEqual(await run.done, reports);
  } finally {
    backend.close();
  }
});

uffdTest('event-loop reader: close() with a vCPU blocked leaves no registered range, fd or thread, and starts no reader thread', async (t) => {
  const uffdFdsBefore = anonFds('[userfaultfd]');
  const backend = new UffdBackend([layout('pc.ram', 16)], { readerMode: 'loop' });
  const pager = startPager(backend, [seededBytes(16 * PAGE, 1)]);
  pager.serving = false;
  backend.register(0);
  t.deepEqual(threadsNamed('uffd-reader'), []);
  t.is(backend.status().eventFd, -1);
  t.is(anonFds('[userfaultfd]').length, uffdFdsBefore.length + 1);
  const run = backend.startVcpus({ pattern: 'sequential-increment' });
  while (pager.faults.length < 1) await new Promise((r) => setTimeout(r, 5));
  backend.close();
  t.true((await run.done).every((r) => r.finished));
  t.deepEqual(anonFds('[userfaultfd]'), uffdFdsBefore);
  t.deepEqual(threadsNamed('vcpu-'), []);
  t.deepEqual(uffdRegisteredMappings(), []);
});
