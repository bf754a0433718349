/** Placeholder until the native addon lands: reports the addon unavailable. */
export function mapSharedFile(_path: string, _bytes: number): Uint8Array {
  const err = new Error('native addon not built') as Error & { code: string };
  err.code = 'NATIVE_UNAVAILABLE';
  throw err;
}
