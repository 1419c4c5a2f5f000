import { RefreshingCache } from './refreshing-cache';

/** A load the test resolves or fails by hand, counting the calls. */
function manualLoads() {
  const calls: { key: string; resolve: (v: string) => void; reject: (e: Error) => void }[] = [];
  const load = (key: string) =>
    new Promise<string>((resolve, reject) => calls.push({ key, resolve, reject }));
  return { calls, load };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('RefreshingCache', () => {
  let clock = 0;
  const options = { freshMs: 5_000, staleMs: 60_000, maxEntries: 3 };

  beforeEach(() => {
    clock = 1_000_000;
  });

  /** A cache that has loaded `value` for key 'a', with its loads so far (one). */
  async function holding(value: string) {
    const { calls, load } = manualLoads();
    const cache = new RefreshingCache(load, options, () => clock);
    const first = cache.get('a');
    calls[0].resolve(value);
    await first;
    return { calls, cache };
  }

  it('loads a value once however many ask for it at once', async () => {
    const { calls, load } = manualLoads();
    const cache = new RefreshingCache(load, options, () => clock);
    expect(cache.peek('a')).toBeUndefined();
    const asked = Array.from({ length: 50 }, () => cache.get('a'));
    expect(calls).toHaveLength(1);
    calls[0].resolve('row a');
    expect(await Promise.all(asked)).toEqual(Array(50).fill('row a'));
    expect(cache.peek('a')).toBe('row a');
  });

  it('answers an expired value at once while one load replaces it, then answers the new one', async () => {
    const { calls, cache } = await holding('old');

    clock += 5_000;
    // Past freshMs: every request still answered at once, and only one reload goes out.
    for (let i = 0; i < 100; i += 1) expect(cache.peek('a')).toBe('old');
    expect(calls).toHaveLength(2);
    calls[1].resolve('new');
    await settle();
    expect(cache.peek('a')).toBe('new');
    expect(calls).toHaveLength(2);
  });

  it('keeps the old value when a reload fails, until it is too old to answer', async () => {
    const { calls, cache } = await holding('old');

    clock += 6_000;
    expect(cache.peek('a')).toBe('old');
    calls[1].reject(new Error('database away'));
    await settle();
    expect(cache.peek('a')).toBe('old');
    expect(calls).toHaveLength(3);

    clock += 60_000;
    expect(cache.peek('a')).toBeUndefined();
    const again = cache.get('a');
    // The reload already in flight is shared, not doubled.
    expect(calls).toHaveLength(3);
    calls[2].reject(new Error('database away'));
    await expect(again).rejects.toThrow('database away');
  });

  it('caches a value that says nothing is there, and starts over past maxEntries', async () => {
    const loads: string[] = [];
    const cache = new RefreshingCache(
      async (key: string) => {
        loads.push(key);
        return key === 'none' ? null : key.toUpperCase();
      },
      options,
      () => clock,
    );
    expect(await cache.get('none')).toBeNull();
    expect(cache.peek('none')).toBeNull();
    for (const key of ['b', 'c']) await cache.get(key);
    expect(cache.peek('b')).toBe('B');
    await cache.get('d');
    expect(cache.peek('b')).toBeUndefined();
    expect(cache.peek('d')).toBe('D');
    expect(loads).toEqual(['none', 'b', 'c', 'd']);
  });
});
