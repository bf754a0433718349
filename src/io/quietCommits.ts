/**
 * A live destination's journal commits its segments at quiet moments: a commit holds the
 * event loop for 1–5 ms, and a page request outstanding meanwhile waits that long for its
 * page. The crash tail keeps every record safe in between; at most `atLatestMs` pass
 * without a commit. Shared by migrate's destination and `receive`.
 */
import type { JournalWriter } from '../journal/journalWriter.js';

/** How often a commit is considered, and how long it may wait for a quiet moment. */
const COMMIT_EVERY_MS = 50;
const COMMIT_AT_LATEST_MS = 500;

/**
 * Starts committing `writer` whenever `busy()` is false (or `atLatestMs` passed since the
 * last commit); returns the stop.
 */
export function commitAtQuietMoments(writer: JournalWriter, busy: () => boolean, atLatestMs = COMMIT_AT_LATEST_MS): () => void {
  let lastCommitMs = performance.now();
  const timer = setInterval(() => {
    if (busy() && performance.now() - lastCommitMs < atLatestMs) return;
    lastCommitMs = performance.now();
    writer.flush();
  }, COMMIT_EVERY_MS);
  return () => clearInterval(timer);
}
