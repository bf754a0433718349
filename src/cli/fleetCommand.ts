import { UsageError } from '../errors.js';
import { Fleet, type FleetAnswer, type WorstBy } from '../io/fleet/fleetQuery.js';
import { columns } from './inspectCommand.js';

export interface FleetCommandOptions {
  worst?: string;
  by?: string;
  causes?: boolean;
  groupBy?: string;
  sql?: string;
  json?: boolean;
}

/**
 * `postcopy fleet <folder>`: questions about many migrations, answered by DuckDB over the
 * Parquet files `postcopy export --parquet <folder>` wrote. One question per run: the
 * summary (default), `--worst N [--by blocktime|p99]`, `--causes` (failures and pauses by
 * cause), `--group-by COL` (percentiles per value of a migrations column) or `--sql`.
 * Exit 0 answered, 2 usage error, no export in the folder, or a query DuckDB refuses.
 */
export async function fleetCommand(folder: string, opts: FleetCommandOptions): Promise<number> {
  const asked = [opts.worst !== undefined && '--worst', opts.causes && '--causes', opts.groupBy !== undefined && '--group-by', opts.sql !== undefined && '--sql'].filter(Boolean);
  if (asked.length > 1) throw new UsageError(`one question at a time: ${asked.join(' and ')} were both given`);
  if (opts.by !== undefined && opts.worst === undefined) throw new UsageError('--by ranks --worst: give --worst N too');
  const by = (opts.by ?? 'blocktime') as WorstBy;
  if (by !== 'blocktime' && by !== 'p99') throw new UsageError(`--by must be blocktime or p99, got '${opts.by}'`);
  const n = opts.worst === undefined ? 0 : Number(opts.worst);
  if (opts.worst !== undefined && !(Number.isSafeInteger(n) && n >= 1)) throw new UsageError(`--worst must be a whole number >= 1, got '${opts.worst}'`);
  if (opts.sql !== undefined && opts.sql.trim() === '') throw new UsageError('--sql needs a query');

  const fleet = await Fleet.open(folder);
  try {
    if (opts.causes) {
      const { failures, pauses } = await fleet.causes();
      if (opts.json) print({ folder: fleet.folder, question: 'causes', failures, pauses });
      else console.log([`Migrations that did not complete, by cause (${failures.rows.length} cause(s)):`, ...table(failures), '', `Pauses by cause (${pauses.rows.length} cause(s)):`, ...table(pauses)].join('\n'));
      return 0;
    }
    let question: string;
    let answer: FleetAnswer;
    let title: string;
    if (opts.worst !== undefined) {
      question = 'worst';
      answer = await fleet.worst(n, by);
      title = `The ${n} worst migration(s) by ${by === 'blocktime' ? 'exact blocktime' : 'served-request p99 (request → placement)'}:`;
    } else if (opts.groupBy !== undefined) {
      question = 'group-by';
      answer = await fleet.percentilesBy(opts.groupBy);
      title = `Percentiles across migrations, by ${opts.groupBy}:`;
    } else if (opts.sql !== undefined) {
      question = 'sql';
      answer = await fleet.sql(opts.sql);
      title = '';
    } else {
      question = 'summary';
      answer = await fleet.summary();
      title = `Fleet ${fleet.folder}:`;
    }
    if (opts.json) {
      print({ folder: fleet.folder, question, ...(question === 'worst' ? { by } : {}), ...(question === 'group-by' ? { groupBy: opts.groupBy } : {}), ...answer });
    } else if (question === 'summary') {
      // One row: a field per line reads better than a wide table.
      const row = answer.rows[0] ?? {};
      console.log([title, ...columns(answer.columns.map((c) => [c, cell(row[c])]), [false, true])].join('\n'));
    } else {
      console.log([...(title ? [title] : []), ...table(answer), `(${answer.rows.length} row(s))`].join('\n'));
    }
    return 0;
  } finally {
    fleet.close();
  }
}

function print(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

/** Pure: a value as a table cell ('—' for null). */
function cell(v: unknown): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function table(a: FleetAnswer): string[] {
  if (a.rows.length === 0) return ['  (none)'];
  const numeric = a.columns.map((c) => a.rows.every((r) => r[c] === null || typeof r[c] === 'number'));
  return columns([a.columns, ...a.rows.map((r) => a.columns.map((c) => cell(r[c])))], numeric);
}
