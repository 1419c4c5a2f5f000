import { normaliseEmail } from './email-address';
import { openCredentials, sealCredentials } from './credentials-vault';
import { randomBytes } from 'node:crypto';

describe('normaliseEmail', () => {
  it.each([
    ['  Alice@Example.COM ', 'alice@example.com'],
    ["o'brien+tag@mail.example.co.uk", "o'brien+tag@mail.example.co.uk"],
  ])('normalises %p', (input, expected) => expect(normaliseEmail(input)).toBe(expected));

  it.each([
    '',
    'plain',
    'a@b',
    'two@@example.com',
    'a@b@example.com',
    '.a@example.com',
    'a..b@example.com',
    'a@-x.com',
    `${'a'.repeat(65)}@example.com`,
    "x@example.com'; DROP TABLE contacts;--",
    42,
    null,
  ])('rejects %p', (input) => expect(normaliseEmail(input)).toBeNull());
});

describe('credentials vault', () => {
  const key = randomBytes(32);
  it('round-trips and hides the plain text', () => {
    const sealed = sealCredentials(key, { apiKey: 'SG.secret' });
    expect(sealed).not.toContain('SG.secret');
    expect(openCredentials(key, sealed)).toEqual({ apiKey: 'SG.secret' });
  });
  it('refuses a tampered or foreign ciphertext', () => {
    const sealed = sealCredentials(key, { apiKey: 'x' });
    expect(() => openCredentials(randomBytes(32), sealed)).toThrow();
    expect(() => openCredentials(key, sealed.slice(0, -2) + 'AA')).toThrow();
  });
});
