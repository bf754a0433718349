import fc from 'fast-check';

/**
 * fast-check parameters for one property, from the environment:
 * - `FC_RUNS`: runs per property (default 200; `npm run fuzz` sets 100 000);
 * - `FC_SEED`: the seed of a reported failure: the same values are generated again;
 * - `FC_PATH`: with FC_SEED, the counterexample path of a reported failure: fast-check
 *   replays exactly that (already shrunk) case, without generating or shrinking again,
 *   and stops at the first failure (`endOnFailure`).
 *
 * A failure report prints both (`FC_SEED=… FC_PATH=…`); paste them in front of the test
 * command. FC_PATH without FC_SEED is refused: a path means nothing without its seed.
 */
export interface PropertyParams {
  numRuns: number;
  seed?: number;
  path?: string;
  endOnFailure?: boolean;
}

/** The parameters `FC_RUNS`, `FC_SEED` and `FC_PATH` ask for (see PropertyParams). */
export function fcParams(env: Readonly<Record<string, string | undefined>> = process.env): PropertyParams {
  const numRuns = Number(env['FC_RUNS'] ?? 200);
  const seedText = env['FC_SEED'];
  const path = env['FC_PATH'];
  if (path !== undefined && seedText === undefined) throw new Error('FC_PATH replays a path of a given seed: set FC_SEED too');
  if (seedText === undefined) return { numRuns };
  const seed = Number(seedText);
  if (!Number.isInteger(seed)) throw new Error(`FC_SEED=${seedText} is not an integer`);
  return path === undefined ? { numRuns, seed } : { numRuns, seed, path, endOnFailure: true };
}

/**
 * The message of a failure as a person needs it: fast-check 4 keeps the property's own
 * error in `cause` (which test runners such as ava do not print), so this puts that
 * error's message (and the causes under it) after fast-check's report, and ends with the
 * line to replay it.
 */
export function failureMessage<Ts>(details: fc.RunDetails<Ts>): string {
  const report = fc.defaultReportMessage(details) ?? 'property failed';
  const lines = [report];
  let cause: unknown = details.errorInstance;
  for (let depth = 0; cause !== undefined && cause !== null && depth < 5; depth++) {
    if (cause instanceof Error) {
      if (!report.includes(cause.message)) lines.push(`Caused by: ${cause.stack ?? cause.message}`);
      cause = cause.cause;
    } else {
      lines.push(`Caused by: ${String(cause)}`);
      break;
    }
  }
  if (details.failed && details.counterexamplePath !== null) {
    lines.push(`Replay this case without shrinking: FC_SEED=${details.seed} FC_PATH=${details.counterexamplePath}`);
  }
  return lines.join('\n');
}

/**
 * Checks a property (sync or async) with `fcParams()` merged under `params`, and throws
 * an Error carrying failureMessage() on failure. Returns the run's details.
 */
export function assertProperty<Ts>(property: fc.IProperty<Ts>, params?: fc.Parameters<Ts>): fc.RunDetails<Ts>;
export function assertProperty<Ts>(property: fc.IAsyncProperty<Ts>, params?: fc.Parameters<Ts>): Promise<fc.RunDetails<Ts>>;
export function assertProperty<Ts>(property: fc.IRawProperty<Ts>, params: fc.Parameters<Ts> = {}): fc.RunDetails<Ts> | Promise<fc.RunDetails<Ts>> {
  const merged: fc.Parameters<Ts> = { ...fcParams(), ...params };
  if (property.isAsync()) {
    return (fc.check(property, merged) as Promise<fc.RunDetails<Ts>>).then(throwOnFailure);
  }
  return throwOnFailure(fc.check(property, merged) as fc.RunDetails<Ts>);
}

function throwOnFailure<Ts>(details: fc.RunDetails<Ts>): fc.RunDetails<Ts> {
  if (details.failed) throw new Error(failureMessage(details), { cause: details.errorInstance });
  return details;
}

/** The assertion `forAll` needs: ava's `t` fits, and so does any `{ is }`. */
export interface Asserter {
  is(actual: unknown, expected: unknown, message?: string): void;
}

/**
 * Checks `check` on every generated value (it throws to fail) and asserts that every case
 * ran; a failure prints the check's own message, the counterexample and the FC_SEED /
 * FC_PATH to replay it.
 */
export function forAll<T>(t: Asserter, arb: fc.Arbitrary<T>, check: (value: T) => void): void {
  let runs = 0;
  const details = assertProperty(
    fc.property(arb, (value) => {
      runs++;
      check(value);
    }),
  );
  if (fcParams().path === undefined) t.is(runs, details.numRuns, 'every generated case was checked');
}
