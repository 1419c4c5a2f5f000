import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { AppConfig, loadConfig } from '@edm/config';

/** The servers the test tiers use: the machine's own Postgres and NATS unless overridden. */
const POSTGRES_ADMIN_URL = process.env.EDM_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const NATS_URL = process.env.EDM_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

export interface TestEnvironment {
  /** Unique per suite: names the database, the stream and its subjects. */
  id: string;
  databaseUrl: string;
  natsUrl: string;
  stream: string;
  subjectPrefix: string;
  home: string;
  /** Environment variables for a service process of this suite. */
  env: Record<string, string>;
  config(overrides?: Record<string, string>): AppConfig;
  dispose(): Promise<void>;
}

const withDatabase = (url: string, name: string) => {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
};

/**
 * A fresh database, stream name and subject prefix for one suite, so suites running at the same
 * time on the same servers never see each other's data.
 */
export async function createTestEnvironment(suite: string): Promise<TestEnvironment> {
  const id = `${suite
    .replace(/[^a-z0-9]/gi, '_')
    .toLowerCase()
    .slice(0, 24)}_${randomBytes(4).toString('hex')}`;
  const database = `edm_t_${id}`;
  const admin = new Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${database}"`);
  await admin.end();
  const home = mkdtempSync(join(tmpdir(), `edm-${id}-`));
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    EDM_HOME: home,
    DATABASE_URL: withDatabase(POSTGRES_ADMIN_URL, database),
    NATS_URL,
    NATS_STREAM: `EDM_T_${id.toUpperCase()}`,
    NATS_SUBJECT_PREFIX: `t.${id.replace(/_/g, '-')}`,
    LOG_LEVEL: 'warn',
    EDM_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
  };
  return {
    id,
    databaseUrl: env.DATABASE_URL,
    natsUrl: NATS_URL,
    stream: env.NATS_STREAM,
    subjectPrefix: env.NATS_SUBJECT_PREFIX,
    home,
    env,
    config: (overrides = {}) => loadConfig({ ...env, ...overrides }),
    dispose: async () => {
      const client = new Client({ connectionString: POSTGRES_ADMIN_URL });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).catch(() => undefined);
      await client.end();
      await deleteStream(NATS_URL, env.NATS_STREAM);
    },
  };
}

async function deleteStream(natsUrl: string, stream: string): Promise<void> {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(stream).catch(() => undefined);
  } finally {
    await nc.close();
  }
}

/** Polls until `probe` returns a truthy value; fails with `what` after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false | null>,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
