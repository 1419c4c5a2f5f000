import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { configSchema, RawConfig } from './config.schema';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

export interface AppConfig extends Omit<RawConfig, 'EDM_ENCRYPTION_KEY'> {
  /** Absolute path of the local state folder. */
  home: string;
  /** 32-byte key used to encrypt provider credentials at rest. */
  encryptionKey: Buffer;
}

/**
 * Reads and validates the environment once. Nothing else in the code base reads `process.env`:
 * everything is handed this object.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const parsed = configSchema.safeParse(pickDefined(env));
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`),
    );
  }
  const { EDM_ENCRYPTION_KEY, ...rest } = parsed.data;
  const home = resolve(rest.EDM_HOME);
  if (!EDM_ENCRYPTION_KEY && rest.NODE_ENV === 'production') {
    throw new ConfigError(['EDM_ENCRYPTION_KEY: required when NODE_ENV=production']);
  }
  const encryptionKey = EDM_ENCRYPTION_KEY
    ? Buffer.from(EDM_ENCRYPTION_KEY, 'base64')
    : localEncryptionKey(home);
  return { ...rest, home, encryptionKey };
}

function pickDefined(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== '') out[key] = value;
  }
  return out;
}

/** Outside production a key is generated once and kept under EDM_HOME (mode 0600). */
function localEncryptionKey(home: string): Buffer {
  const file = join(home, 'encryption-key');
  if (!existsSync(file)) {
    mkdirSync(home, { recursive: true, mode: 0o700 });
    try {
      writeFileSync(file, randomBytes(32).toString('base64'), { flag: 'wx', mode: 0o600 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    chmodSync(file, 0o600);
  }
  return Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
}
