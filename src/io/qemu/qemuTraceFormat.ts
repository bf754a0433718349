/**
 * Renders a parsed QEMU trace event back to the text QEMU printed after its name, from
 * the catalogue's printf format: the inverse of the parser's argument matching. Used to
 * keep trace lines that have no structured journal event (TR_NOTE's `text`) without
 * holding on to every raw line.
 */
import { QEMU_TRACE_EVENTS, type TraceEvent } from '../../engine/qemuTraceEvents.js';

/** Pure: the arguments of `e` as QEMU's log backend printed them (`%p` 0 as "(nil)", a NULL `%s` as "(null)"). */
export function formatTraceArgs(e: TraceEvent): string {
  const spec = QEMU_TRACE_EVENTS[e.kind];
  const format: string = spec.format;
  const fields: readonly string[] = spec.fields;
  const values = e as unknown as Record<string, string | number | null>;
  let out = '';
  let k = 0;
  for (let i = 0; i < format.length; i++) {
    const ch = format[i]!;
    if (ch !== '%') {
      out += ch;
      continue;
    }
    let j = i + 1;
    while (j < format.length && 'lzhjt'.includes(format[j]!)) j++;
    const v = values[fields[k++]!];
    switch (format[j]) {
      case 's':
        out += v === null ? '(null)' : String(v);
        break;
      case 'p':
        out += v === 0 ? '(nil)' : '0x' + Number(v).toString(16);
        break;
      case 'x':
        out += Number(v).toString(16);
        break;
      case 'X':
        out += Number(v).toString(16).toUpperCase();
        break;
      default:
        out += String(v);
    }
    i = j;
  }
  return out;
}

/** Pure: the whole log line of `e` (`tid@sec.usec:name args`, or `name args` without a timestamp). */
export function formatTraceLine(e: TraceEvent): string {
  const args = formatTraceArgs(e);
  if (e.timeUs < 0) return `${e.kind} ${args}`;
  const usec = e.timeUs % 1e6;
  return `${e.tid}@${(e.timeUs - usec) / 1e6}.${String(usec).padStart(6, '0')}:${e.kind} ${args}`;
}
