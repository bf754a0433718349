import { answeringChannels, splitErrors, type Analysis } from '../forensics/analysisTypes.js';
import { esc } from './escape.js';
import { groupDigits, hex, formatMs } from '../text.js';

/** Rows listed per table at most; the rest is counted, so a huge journal keeps a small report. */
export const MAX_TABLE_ROWS = 200;

/** A column: its heading, how to show a row's cell (plain text), and whether it holds numbers. */
interface Column<T> { head: string; cell: (row: T) => string; numeric?: boolean }

/** Pure: an HTML table of at most MAX_TABLE_ROWS rows, every cell escaped, with "and N more" below. */
export function table<T>(id: string, columns: Array<Column<T>>, rows: readonly T[], empty: string): string {
  if (rows.length === 0) return `<p class="empty-table" id="${esc(id)}">${esc(empty)}</p>`;
  const head = columns.map((c) => `<th${c.numeric ? ' class="num"' : ''}>${esc(c.head)}</th>`).join('');
  const body = rows.slice(0, MAX_TABLE_ROWS).map((r) => `<tr>${columns.map((c) => `<td${c.numeric ? ' class="num"' : ''}>${esc(c.cell(r))}</td>`).join('')}</tr>`).join('');
  const more = rows.length > MAX_TABLE_ROWS ? `<p class="more">… and ${groupDigits(rows.length - MAX_TABLE_ROWS)} more not listed.</p>` : '';
  return `<table id="${esc(id)}"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>${more}`;
}

/** Pure: the pages requested and never placed, oldest first: block, offset, host address, age. */
export function outstandingTable(a: Analysis): string {
  return table('table-outstanding', [
    { head: 'seq', cell: (r) => String(r.seq), numeric: true },
    { head: 'block', cell: (r) => r.block },
    { head: 'offset', cell: (r) => hex(r.offset), numeric: true },
    { head: 'host address', cell: (r) => (r.address === null ? '—' : hex(r.address)), numeric: true },
    { head: 'requested at', cell: (r) => formatMs(r.requestedAtMs), numeric: true },
    { head: 'age at end', cell: (r) => formatMs(r.ageMs), numeric: true },
  ], a.requests.outstanding, 'No page requests outstanding: every requested page was placed.');
}

/** Pure: the inputs the engine refused, with their sequence numbers. */
export function errorsTable(a: Analysis): string {
  const failures = new Set(splitErrors(a).failures);
  return table('table-errors', [
    { head: 'seq', cell: (r) => String(r.seq), numeric: true },
    { head: 'time', cell: (r) => formatMs(r.tMs), numeric: true },
    { head: 'kind', cell: (r) => (failures.has(r) ? 'failure' : 'refused input') },
    { head: 'code', cell: (r) => r.code },
    { head: 'message', cell: (r) => r.message },
  ], a.errors, a.status === 'completed' ? 'No errors: no input was refused.' : 'No failure reported and no input refused: see the banner at the top for why the migration stopped.');
}

/** Pure: the slowest faults, slowest first. */
export function slowestFaultsTable(a: Analysis): string {
  return table('table-slowest', [
    { head: 'seq', cell: (r) => String(r.seq), numeric: true },
    { head: 'time', cell: (r) => formatMs(r.tMs), numeric: true },
    { head: 'vCPU', cell: (r) => (r.vcpu < 0 ? '—' : String(r.vcpu)), numeric: true },
    { head: 'block', cell: (r) => r.block },
    { head: 'offset', cell: (r) => hex(r.offset), numeric: true },
    { head: 'latency', cell: (r) => (r.unanswered ? `≥ ${formatMs(r.latencyMs)} (still waiting)` : formatMs(r.latencyMs)), numeric: true },
  ], a.faults.slowest, 'No faults.');
}

/** Pure: the RAM blocks of the journal. */
export function blocksTable(a: Analysis): string {
  return table('table-blocks', [
    { head: 'block', cell: (r) => r.name },
    { head: 'length', cell: (r) => `${groupDigits(r.length)} B (${hex(r.length)})`, numeric: true },
    { head: 'host page size', cell: (r) => `${groupDigits(r.hostPageSize)} B`, numeric: true },
  ], a.journal.blocks, 'No RAM blocks recorded.');
}

/** Pure: the requests by the channel whose page answered them, with their request → placement latency. */
export function answeredByTable(a: Analysis): string {
  return table('table-answered', [
    { head: 'answered by', cell: (r) => r.name },
    { head: 'requests', cell: (r) => groupDigits(r.answered.count), numeric: true },
    { head: 'p50', cell: (r) => formatMs(r.answered.p50Ms), numeric: true },
    { head: 'p99', cell: (r) => formatMs(r.answered.p99Ms), numeric: true },
    { head: 'max', cell: (r) => formatMs(r.answered.maxMs), numeric: true },
  ], answeringChannels(a), 'No page request was answered.');
}

/** Pure: a tap journal's connections: role, times, bytes each way, errors and where decoding stopped. */
export function tapConnectionsTable(a: Analysis): string {
  return table('table-tap-connections', [
    { head: 'id', cell: (r) => String(r.id), numeric: true },
    { head: 'role', cell: (r) => r.role },
    { head: 'opened', cell: (r) => formatMs(r.openedMs), numeric: true },
    { head: 'closed', cell: (r) => (r.closedMs === null ? 'open at the end' : formatMs(r.closedMs)), numeric: true },
    { head: 'to destination', cell: (r) => `${groupDigits(r.bytesToDestination)} B`, numeric: true },
    { head: 'to source', cell: (r) => `${groupDigits(r.bytesToSource)} B`, numeric: true },
    { head: 'notes', cell: (r) => [r.error === null ? '' : `error: ${r.error}`, ...r.undecoded.map((u) => `not decoded ${u.direction} from byte ${groupDigits(u.fromByte)}: ${u.reason}`)].filter((x) => x).join('; ') },
  ], a.tap?.connections ?? [], 'No connection.');
}

/** Pure: a tap journal's requests in flight at each break (requested, no page after them then), oldest first. */
export function tapBreaksTable(a: Analysis): string {
  const rows = (a.tap?.breaks ?? []).flatMap((b, n) => b.requests.map((q) => ({ n: n + 1, breakMs: b.tMs, ...q })));
  return table('table-tap-breaks', [
    { head: 'break', cell: (r) => `${r.n} at ${formatMs(r.breakMs)}`, numeric: true },
    { head: 'block', cell: (r) => r.block },
    { head: 'offset', cell: (r) => hex(r.offset), numeric: true },
    { head: 'requested at', cell: (r) => formatMs(r.requestedAtMs), numeric: true },
    { head: 'age at the break', cell: (r) => formatMs(r.ageMs), numeric: true },
  ], rows, a.tap?.breaks.length ? 'No request was in flight at the break(s).' : 'No break.');
}
