import { MAX_BODY_DEPTH, nestsDeeperThan, refuseDeepBodies } from './body-depth';

const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

describe('nestsDeeperThan', () => {
  it('measures arrays and objects alike', () => {
    expect(nestsDeeperThan(Buffer.from(nested(3)), 3)).toBe(false);
    expect(nestsDeeperThan(Buffer.from(nested(4)), 3)).toBe(true);
    expect(nestsDeeperThan(Buffer.from('{"a":{"b":[{"c":1}]}}'), 4)).toBe(false);
    expect(nestsDeeperThan(Buffer.from('{"a":{"b":[{"c":[1]}]}}'), 4)).toBe(true);
  });

  it('ignores brackets inside strings, escaped quotes included', () => {
    expect(nestsDeeperThan(Buffer.from(JSON.stringify({ a: '[[[[[[{{{{' })), 1)).toBe(false);
    expect(nestsDeeperThan(Buffer.from(JSON.stringify({ a: 'say "[[[[" \\ ok' })), 1)).toBe(false);
  });

  it('counts siblings once, not cumulatively', () => {
    expect(nestsDeeperThan(Buffer.from(JSON.stringify(Array.from({ length: 1_000 }, () => [[1]]))), 3)).toBe(
      false,
    );
  });
});

describe('refuseDeepBodies', () => {
  it('passes bodies up to the limit and refuses deeper ones with a body-parser error type', () => {
    expect(() => refuseDeepBodies(null, null, Buffer.from(nested(MAX_BODY_DEPTH)))).not.toThrow();
    expect(() => refuseDeepBodies(null, null, Buffer.from(nested(100_000)))).toThrow(
      expect.objectContaining({ type: 'entity.too.deep' }),
    );
  });
});
