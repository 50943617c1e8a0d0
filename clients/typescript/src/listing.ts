/** Listings: every item of a paged route, fetched a page at a time as they are read. */

/** One page: its items, and how to ask for the next one (null at the end). */
export interface Page<T> {
  items: T[];
  next: (() => Promise<Page<T>>) | null;
}

/**
 * Every item of a listing, newest first unless the route says otherwise. Nothing is fetched
 * until it is read: `for await (const item of listing)`, `listing.pages()`, or
 * `await listing.toArray()`.
 */
export class Listing<T> implements AsyncIterable<T> {
  constructor(private readonly first: () => Promise<Page<T>>) {}

  /** The pages in order, each fetched when the one before has been read. */
  async *pages(): AsyncGenerator<T[], void, undefined> {
    let fetch: (() => Promise<Page<T>>) | null = this.first;
    while (fetch !== null) {
      const page: Page<T> = await fetch();
      yield page.items;
      fetch = page.next;
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for await (const items of this.pages()) {
      yield* items;
    }
  }

  /** Every item, read to the end. */
  async toArray(): Promise<T[]> {
    const items: T[] = [];
    for await (const page of this.pages()) {
      items.push(...page);
    }
    return items;
  }
}
