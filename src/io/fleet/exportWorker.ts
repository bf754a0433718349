/**
 * One process of a parallel export (`postcopy export --jobs N`): receives its share of
 * the journals and the prepared output folder from its parent, exports them with its own
 * DuckDB (its own part files), reports each journal done and its summary, and exits.
 */
import { exportJournals, type ExportOptions, type WorkerMessage } from './parquetExport.js';

process.once('message', (m: { journals: string[]; out: string; opts: ExportOptions }) => {
  const send = (msg: WorkerMessage): Promise<void> => new Promise((resolve) => process.send!(msg, () => resolve()));
  exportJournals(m.journals, m.out, { ...m.opts, onJournal: (_done, _total, path) => void send({ journal: path }) })
    .then((summary) => send({ summary }))
    .catch((err: unknown) => send({ error: err instanceof Error ? err.message : String(err) }))
    .finally(() => process.disconnect());
});
