import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { configShape } from './config.schema';

/** The README's configuration table must name every variable, and only those, with its real default. */
describe('README configuration table', () => {
  const readme = readFileSync(resolve(__dirname, '../../../README.md'), 'utf8');
  const rows = new Map([...readme.matchAll(/^\| `([A-Z_]+)` \| (.+?) \|/gm)].map((m) => [m[1], m[2].trim()]));

  it('lists exactly the variables of the schema', () => {
    expect([...rows.keys()].sort()).toEqual(Object.keys(configShape).sort());
  });

  it.each(Object.entries(configShape))('gives the default of %s', (name, schema) => {
    const parsed = schema.safeParse(undefined);
    const expected = parsed.success && parsed.data !== undefined ? `\`${String(parsed.data)}\`` : '(none)';
    expect(rows.get(name)).toBe(expected);
  });
});
