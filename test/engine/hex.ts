/** Test helper: bytes from a hex string with optional spaces, e.g. '00 0a ff'. */
export function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-f]/i.test(clean)) throw new Error(`bad hex in test: ${text}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Test helper: the hex of some bytes, space separated (for readable assertion failures). */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

/** Test helper: the ASCII bytes of a string as hex. */
export function asciiHex(s: string): string {
  return toHex(new TextEncoder().encode(s));
}
