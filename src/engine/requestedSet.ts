/**
 * The requested set (reference section 3): host pages asked of the source and not yet
 * placed, keyed by host page key (block base + host page offset, see RamBlock.base).
 * A Map keeps insertion order, so iteration (re-sending after recovery, listing the
 * outstanding requests) is deterministic: oldest request first.
 */
export class RequestedSet {
  /** key -> time (ns) of the first request for that host page. */
  private readonly pending = new Map<number, number>();
  /** Host pages ever added (a page requested twice while outstanding counts once). */
  added = 0;

  /** Adds `key` when not present; returns whether it was added. */
  add(key: number, timeNs: number): boolean {
    if (this.pending.has(key)) return false;
    this.pending.set(key, timeNs);
    this.added++;
    return true;
  }

  has(key: number): boolean {
    return this.pending.has(key);
  }

  /** Removes `key`; returns the time it was first requested, or -1 when it was not requested. */
  remove(key: number): number {
    const t = this.pending.get(key);
    if (t === undefined) return -1;
    this.pending.delete(key);
    return t;
  }

  /** Outstanding requests: the count QEMU traces as `total`. */
  get size(): number {
    return this.pending.size;
  }

  /** Outstanding [key, first request time] pairs, oldest first. */
  entries(): IterableIterator<[number, number]> {
    return this.pending.entries();
  }

  /** Plain data for snapshots (pure). */
  toJSON(): { added: number; pending: Array<[number, number]> } {
    return { added: this.added, pending: [...this.pending.entries()] };
  }

  /** Replaces the contents with a snapshot's (toJSON's output). */
  load(data: { added: number; pending: Array<[number, number]> }): void {
    this.pending.clear();
    for (const [k, t] of data.pending) this.pending.set(k, t);
    this.added = data.added;
  }
}
