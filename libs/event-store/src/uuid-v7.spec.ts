import { uuidv7 } from './uuid-v7';

describe('uuidv7', () => {
  it('gives distinct RFC 9562 version 7 ids, in creation order, stamped with the current time', () => {
    const before = Date.now();
    const ids = Array.from({ length: 10_000 }, () => uuidv7());
    const after = Date.now();
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids)
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect([...ids].sort()).toEqual(ids);
    const stamp = (id: string) => parseInt(id.replace(/-/g, '').slice(0, 12), 16);
    expect(stamp(ids[0])).toBeGreaterThanOrEqual(before);
    // A millisecond whose 4,096 sequence numbers ran out borrows the next one.
    expect(stamp(ids[ids.length - 1])).toBeLessThanOrEqual(after + 5);
  });

  it('draws fresh random bits for every id (no repeated tail across the pooled bytes)', () => {
    const tails = Array.from({ length: 1_000 }, () => uuidv7().slice(-12));
    expect(new Set(tails).size).toBe(tails.length);
  });
});
