import { UffdBackend } from '../../src/io/backends/uffdBackend.js';
import { BackendError } from '../../src/errors.js';
import { uffdTest } from './helpers.js';

uffdTest('plain precopy writes land in memory, target-page granular, and are refused once registered', (t) => {
  const b = new UffdBackend([{ name: 'pc.ram', length: 16 * 4096, hostPageSize: 4096 }]);
  try {
    const data = new Uint8Array(8192).fill(0x42);
    b.write(0, 4096, data, 0, 8192);
    t.deepEqual(b.read(0, 4096, 8192), Buffer.from(data));
    t.throws(() => b.write(0, 100, data, 0, 4096), { instanceOf: BackendError, message: /not whole target pages/ });
    t.throws(() => b.write(0, 15 * 4096, data, 0, 8192), { instanceOf: BackendError });
    b.listen(() => {});
    b.register(0);
    t.throws(() => b.write(0, 0, data, 0, 4096), { instanceOf: BackendError, message: /is registered: pages must be placed atomically/ });
  } finally {
    b.close();
  }
});

uffdTest('resize changes the used length within the mapped max length; a shrink drops the tail', (t) => {
  const b = new UffdBackend([{ name: 'pc.ram', length: 8 * 4096, maxLength: 16 * 4096, hostPageSize: 4096 }]);
  try {
    const data = new Uint8Array(4096).fill(7);
    t.throws(() => b.write(0, 10 * 4096, data, 0, 4096), { instanceOf: BackendError }, 'past the used length before the resize');
    b.resize(0, 16 * 4096);
    b.write(0, 10 * 4096, data, 0, 4096);
    t.is(b.read(0, 10 * 4096, 1)[0], 7);
    b.resize(0, 8 * 4096);
    t.throws(() => b.read(0, 10 * 4096, 1), { instanceOf: BackendError });
    b.resize(0, 16 * 4096);
    t.is(b.read(0, 10 * 4096, 1)[0], 0, 'the shrink dropped the page');
    t.throws(() => b.resize(0, 17 * 4096), { instanceOf: BackendError, message: /within the mapped/ });
  } finally {
    b.close();
  }
});
