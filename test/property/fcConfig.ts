import fc from 'fast-check';
/**
 * fast-check parameters shared by every property: the run count comes from FC_RUNS
 * (small in `npm test`, 100 000 in `npm run fuzz`), and FC_SEED replays a failure.
 * fast-check prints the seed and counterexample path of any failure itself.
 */
export function fcParams(): { numRuns: number; seed?: number } {
  const numRuns = Number(process.env.FC_RUNS ?? 200);
  const seed = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : undefined;
  return seed === undefined ? { numRuns } : { numRuns, seed };
}

/**
 * Checks `check` on every generated value and asserts that every case ran; a failure
 * carries fast-check's seed and path (replay with FC_SEED).
 */
export function forAll<T>(t: { is: (a: unknown, b: unknown, m?: string) => void }, arb: import('fast-check').Arbitrary<T>, check: (value: T) => void): void {
  let runs = 0;
  fc.assert(
    fc.property(arb, (value) => {
      runs++;
      check(value);
    }),
    fcParams(),
  );
  t.is(runs, fcParams().numRuns, 'every generated case was checked');
}
