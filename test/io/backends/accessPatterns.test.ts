import test from 'ava';
import { DEFAULT_TOUCH_OFFSET, expectedMemory, forEachPlannedAccess, hotSet, vcpuShare } from '../../../src/io/backends/accessPatterns.js';
import { BackendError } from '../../../src/errors.js';
import { PAGE } from './helpers.js';

test('shares are consecutive, cover every page once, and the last vCPU takes the remainder', (t) => {
  t.deepEqual([0, 1, 2].map((i) => vcpuShare(10, 3, i)), [
    { first: 0, count: 3 },
    { first: 3, count: 3 },
    { first: 6, count: 4 },
  ]);
});

test('sequential-increment touches every page of the block `passes` times at the touch offset', (t) => {
  const counts = new Map<number, number>();
  const byVcpu: number[][] = [[], [], []];
  forEachPlannedAccess({ pattern: 'sequential-increment', vcpus: 3, seed: 0, passes: 2, touchOffset: 7 }, 10 * PAGE, (offset, vcpu) => {
    counts.set(offset, (counts.get(offset) ?? 0) + 1);
    byVcpu[vcpu]!.push(Math.floor(offset / PAGE));
  });
  t.deepEqual([...counts.keys()].sort((a, b) => a - b), Array.from({ length: 10 }, (_, p) => p * PAGE + 7));
  t.true([...counts.values()].every((c) => c === 2));
  t.deepEqual(byVcpu[2], [6, 7, 8, 9, 6, 7, 8, 9]);
});

test('expectedMemory adds one per access and wraps at 256', (t) => {
  const source = new Uint8Array(2 * PAGE).fill(0xff);
  const out = expectedMemory(source, { pattern: 'sequential-increment', vcpus: 1, seed: 0, passes: 2 });
  t.is(out[DEFAULT_TOUCH_OFFSET], 1);
  t.is(out[PAGE + DEFAULT_TOUCH_OFFSET], 1);
  t.is(out[0], 0xff);
  t.is(source[DEFAULT_TOUCH_OFFSET], 0xff, 'the source is not modified');
});

test('the hot set depends on the seed only, and stays inside the block', (t) => {
  const a = hotSet({ pattern: 'hot-set', vcpus: 1, seed: 4, hotSetPages: 16 }, 1000);
  const b = hotSet({ pattern: 'hot-set', vcpus: 8, seed: 4, hotSetPages: 16 }, 1000);
  const c = hotSet({ pattern: 'hot-set', vcpus: 1, seed: 5, hotSetPages: 16 }, 1000);
  t.deepEqual(a, b);
  t.notDeepEqual(a, c);
  t.true(a.every((p) => Number.isInteger(p) && p >= 0 && p < 1000));
  t.is(hotSet({ pattern: 'hot-set', vcpus: 1, seed: 4, hotSetPages: 16 }, 5).length, 5);
});

test('plans with bad fields are refused naming the field', (t) => {
  const bad = (plan: object, re: RegExp): void => {
    t.throws(() => forEachPlannedAccess({ pattern: 'random', vcpus: 1, seed: 1, ...plan }, 8 * PAGE, () => {}), { instanceOf: BackendError, message: re });
  };
  bad({ vcpus: 0 }, /vcpus/);
  bad({ passes: -1 }, /passes/);
  bad({ accessesPerVcpu: 1.5 }, /accessesPerVcpu/);
  bad({ hotSetPages: 0 }, /hotSetPages/);
  bad({ hotFraction: 2 }, /hotFraction/);
  bad({ touchOffset: PAGE }, /touchOffset/);
});
