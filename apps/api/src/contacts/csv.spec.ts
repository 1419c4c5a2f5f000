import { parseCsv } from './csv';

describe('parseCsv', () => {
  it('reads quotes, embedded commas, doubled quotes and line breaks', () => {
    expect(parseCsv('email,name\r\n"a@x.com","Doe, ""J"""\nb@x.com,"two\nlines"\n')).toEqual([
      ['email', 'name'],
      ['a@x.com', 'Doe, "J"'],
      ['b@x.com', 'two\nlines'],
    ]);
  });
  it('skips blank lines and a byte-order mark', () => {
    expect(parseCsv('\ufeffemail\n\na@x.com')).toEqual([['email'], ['a@x.com']]);
  });
  it('refuses an unterminated quote', () => {
    expect(() => parseCsv('email\n"a@x.com')).toThrow(/unterminated/);
  });
});
