import { randomBytes } from 'node:crypto';
import {
  keepMaskedSecrets,
  maskSecretOptions,
  openSecretOptions,
  sealSecretOptions,
  SECRET_MASK,
} from './secret-options';

describe('secret options', () => {
  const key = randomBytes(32);
  const options = {
    webhookAppKey: 'app-key-canary',
    webhookPassword: 'password-canary',
    webhookSignatureScheme: 'hmac-sha256',
    latencyMs: 5,
    webhookUsername: 'hook',
  };

  it('seals every secret-named string and nothing else, and opens them back', () => {
    const sealed = sealSecretOptions(key, options);
    expect(JSON.stringify(sealed)).not.toMatch(/canary/);
    expect(sealed).toMatchObject({
      webhookSignatureScheme: 'hmac-sha256',
      latencyMs: 5,
      webhookUsername: 'hook',
    });
    expect(sealed.webhookAppKey).toMatch(/^sealed:v1\./);
    expect(openSecretOptions(key, sealed)).toEqual(options);
  });

  it('does not seal twice, and leaves values stored before sealing readable', () => {
    const once = sealSecretOptions(key, options);
    expect(sealSecretOptions(key, once)).toEqual(once);
    expect(openSecretOptions(key, options)).toEqual(options);
  });

  it('treats a value that only looks sealed, or was sealed with another key, as a plain secret', () => {
    const foreign = sealSecretOptions(randomBytes(32), { webhookAppKey: 'x' }).webhookAppKey as string;
    const sealed = sealSecretOptions(key, { webhookAppKey: foreign, webhookSigningKey: 'sealed:v1.a.b.c' });
    expect(openSecretOptions(key, sealed)).toEqual({
      webhookAppKey: foreign,
      webhookSigningKey: 'sealed:v1.a.b.c',
    });
  });

  it('masks every secret-named string and nothing else', () => {
    expect(maskSecretOptions(sealSecretOptions(key, options))).toEqual({
      ...options,
      webhookAppKey: SECRET_MASK,
      webhookPassword: SECRET_MASK,
    });
  });

  it('gives a masked secret sent back the stored value, and takes any other value as given', () => {
    const stored = sealSecretOptions(key, options);
    const given = { ...maskSecretOptions(stored), webhookPassword: 'rotated', latencyMs: 9 };
    expect(keepMaskedSecrets(given, stored)).toEqual({
      ...given,
      webhookAppKey: stored.webhookAppKey,
    });
  });

  it('leaves out a masked secret with nothing stored behind it, and keeps a mask-like non-secret', () => {
    expect(keepMaskedSecrets({ webhookSigningKey: SECRET_MASK, label: SECRET_MASK }, {})).toEqual({
      label: SECRET_MASK,
    });
  });
});
