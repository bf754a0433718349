import test from 'ava';
import { UffdBackend } from '../../src/io/backends/uffdBackend.js';
import { PAGE, layout } from './helpers.js';

test('the probe returns a structured report naming every section-10 check', (t) => {
  const report = UffdBackend.probe([layout('pc.ram', 64)]);
  t.log(JSON.stringify(report, null, 2));
  const names = report.checks.map((c) => c.name);
  t.true(names.includes('userfaultfd-open'));
  t.true(names.includes('block-page-multiples'));
  t.true(names.includes('mlock'));
  for (const c of report.checks) t.true(c.detail.length > 0, `check ${c.name} explains itself`);
  t.is(report.ok, report.checks.every((c) => c.ok));
  if (report.ok) {
    t.is(report.reason, undefined);
    for (const name of ['api-handshake', 'register-ioctls', 'test-page', 'huge-page-feature', 'thread-id']) {
      t.true(names.includes(name), name);
    }
  } else {
    t.regex(report.reason ?? '', /: /);
  }
});

test('a block whose length is not a multiple of its page size fails the probe, saying which and why', (t) => {
  const report = UffdBackend.probe([layout('pc.ram', 64), { name: 'odd', length: 3 * PAGE, hostPageSize: 2 << 20 }]);
  t.false(report.ok);
  const failed = report.checks.filter((c) => !c.ok).map((c) => c.name);
  t.true(failed.includes('block-page-multiples'));
  const check = report.checks.find((c) => c.name === 'block-page-multiples')!;
  t.regex(check.detail, /'odd'/);
  t.regex(report.reason!, /block-page-multiples|userfaultfd-open/);
});

test('UffdBackend.now() is CLOCK_MONOTONIC in nanoseconds', (t) => {
  const a = UffdBackend.now();
  const hr = Number(process.hrtime.bigint());
  const b = UffdBackend.now();
  t.true(b >= a);
  // process.hrtime is CLOCK_MONOTONIC too: the two readings agree to well within a second.
  t.true(Math.abs(hr - a) < 1e9, `now ${a} vs hrtime ${hr}`);
});
