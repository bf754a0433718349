/**
 * Puts records that arrive roughly in time order back into time order, streaming: a record
 * is held until the newest time seen is `window` past it (or more than `maxHeld` are held),
 * then released, oldest first; among equal times, arrival order is kept (a stable insertion).
 * QEMU's trace lines are written after the traced code ran, by threads that may be
 * descheduled in between, so both the trace's blocktime replay and the journal analysis of
 * imported traces need this. Pure, bounded memory.
 */
export class ReorderBuffer<T> {
  private items: T[] = [];
  private head = 0;
  private newest = -Infinity;

  constructor(
    private readonly timeOf: (item: T) => number,
    /** How far behind the newest time a record is still held, in the records' unit. */
    private readonly window: number,
    /** At most this many records held, whatever the window. */
    private readonly maxHeld: number,
    /** Called with each record in time order; it may look at the records still held. */
    private readonly release: (item: T) => void,
  ) {}

  /** Takes the next record in arrival order; releases every record now past the window. */
  push(item: T): void {
    const items = this.items;
    const time = this.timeOf(item);
    let i = items.length;
    items.push(item);
    while (i > this.head && this.timeOf(items[i - 1]!) > time) {
      items[i] = items[i - 1]!;
      i--;
    }
    items[i] = item;
    if (time > this.newest) this.newest = time;
    const horizon = this.newest - this.window;
    while (this.head < items.length && (this.timeOf(items[this.head]!) <= horizon || items.length - this.head > this.maxHeld)) {
      this.release(items[this.head++]!);
    }
    if (this.head > 4096 && this.head * 2 > items.length) {
      this.items = items.slice(this.head);
      this.head = 0;
    }
  }

  /** Releases every record still held, in time order. */
  drain(): void {
    while (this.head < this.items.length) this.release(this.items[this.head++]!);
    this.items = [];
    this.head = 0;
  }

  /** How many records are held (not yet released). */
  get heldCount(): number {
    return this.items.length - this.head;
  }

  /** The i-th record still held, oldest first (0 = the next to be released). */
  held(i: number): T {
    return this.items[this.head + i]!;
  }
}
