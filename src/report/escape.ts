const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * Pure: `text` safe inside HTML/SVG text and inside a quoted attribute. Every string that
 * comes from a journal (block names, error messages, state names) goes through this:
 * a journal is input, and a report is opened in a browser.
 */
export function esc(text: string | number): string {
  return String(text).replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}
