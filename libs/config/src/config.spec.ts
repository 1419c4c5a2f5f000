import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from './config';

const home = () => mkdtempSync(join(tmpdir(), 'edm-config-'));

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig({ EDM_HOME: home() });
    expect(config.DATABASE_URL).toBe('postgres://postgres@127.0.0.1:5432/edm');
    expect(config.NATS_URL).toBe('nats://127.0.0.1:4222');
    expect([
      config.API_PORT,
      config.DISPATCHER_PORT,
      config.WEBHOOK_INGEST_PORT,
      config.MONITOR_PORT,
    ]).toEqual([3000, 3001, 3002, 3003]);
    expect(config.NATS_STREAM).toBe('EDM');
  });

  it('names every bad variable', () => {
    expect.assertions(3);
    try {
      loadConfig({
        EDM_HOME: home(),
        API_PORT: 'eighty',
        DATABASE_URL: 'mysql://x',
        NATS_DUPLICATE_WINDOW_MS: '1000',
      });
    } catch (error) {
      const problems = (error as ConfigError).problems.join('\n');
      expect(problems).toMatch(/API_PORT/);
      expect(problems).toMatch(/DATABASE_URL: must be a postgres/);
      expect(problems).toMatch(/NATS_DUPLICATE_WINDOW_MS/);
    }
  });

  it('requires an encryption key in production', () => {
    expect(() => loadConfig({ EDM_HOME: home(), NODE_ENV: 'production' })).toThrow(/EDM_ENCRYPTION_KEY/);
  });

  it('keeps a generated local key stable and private', () => {
    const dir = home();
    const first = loadConfig({ EDM_HOME: dir }).encryptionKey;
    expect(first).toHaveLength(32);
    expect(loadConfig({ EDM_HOME: dir }).encryptionKey.equals(first)).toBe(true);
    expect(statSync(join(dir, 'encryption-key')).mode & 0o777).toBe(0o600);
  });

  it('accepts a key from the environment', () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    expect(
      loadConfig({ EDM_HOME: home(), EDM_ENCRYPTION_KEY: key }).encryptionKey.equals(Buffer.alloc(32, 7)),
    ).toBe(true);
  });
});
