import { configShape } from './config.schema';

describe('HTTP_TRUST_PROXY', () => {
  const parse = (value: string | undefined) => configShape.HTTP_TRUST_PROXY.safeParse(value);

  it.each([
    [undefined, false],
    ['false', false],
    ['true', true],
    ['1', 1],
    ['loopback', ['loopback']],
    ['10.0.0.0/8, fd00::/8,192.0.2.1', ['10.0.0.0/8', 'fd00::/8', '192.0.2.1']],
    ['uniquelocal,loopback', ['uniquelocal', 'loopback']],
  ])('reads %s as the Express setting %j', (value, expected) => {
    expect(parse(value)).toEqual({ success: true, data: expected });
  });

  it.each(['yes', '10.0.0.0/33', 'fd00::/129', '10.0.0.1/8/8', 'localhost', '10.0.0.0/8,,'])(
    'refuses %s',
    (value) => {
      expect(parse(value).success).toBe(false);
    },
  );
});
