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
