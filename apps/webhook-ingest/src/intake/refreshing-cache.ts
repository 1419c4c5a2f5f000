export interface RefreshingCacheOptions {
  /** A value younger than this is answered as it is. */
  freshMs: number;
  /** Up to this age a value is still answered, while one load replaces it in the background. */
  staleMs: number;
  /** Past this many keys the cache starts over. */
  maxEntries: number;
}

/**
 * Values kept a few seconds, each loaded by one call however many requests ask for it at once.
 * Past `freshMs` a value is still answered (up to `staleMs`) while one load replaces it: when a
 * value expired outright, every request in the next few milliseconds waited for a query of its
 * own, and at 1,000 requests a second that held intake back for tens of milliseconds every 5 s
 * (docs/benchmarks.md). A background load that fails leaves the old value until `staleMs`.
 */
export class RefreshingCache<K, V> {
  private entries = new Map<K, { value: V; at: number }>();
  private readonly loading = new Map<K, Promise<V>>();

  constructor(
    private readonly load: (key: K) => Promise<V>,
    private readonly options: RefreshingCacheOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** The value at once when one is known and not too old, else undefined: then `get` loads it. */
  peek(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    const age = this.now() - entry.at;
    if (age < this.options.freshMs) return entry.value;
    if (age >= this.options.staleMs) return undefined;
    this.get(key).catch(() => undefined);
    return entry.value;
  }

  /** The value as loaded now, sharing the load already in flight for the same key. */
  get(key: K): Promise<V> {
    const inFlight = this.loading.get(key);
    if (inFlight) return inFlight;
    const loaded = this.load(key)
      .then((value) => {
        if (this.entries.size >= this.options.maxEntries && !this.entries.has(key)) this.entries = new Map();
        this.entries.set(key, { value, at: this.now() });
        return value;
      })
      .finally(() => this.loading.delete(key));
    this.loading.set(key, loaded);
    return loaded;
  }
}
