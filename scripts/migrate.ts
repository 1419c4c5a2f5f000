import { ConfigError, loadConfig } from '@edm/config';
import { createDataSource, ensureDatabase, runMigrations } from '@edm/persistence';

/** `npm run migrate`: applies pending migrations and exits (the Kubernetes migration Job runs this). */
async function main(): Promise<void> {
  const config = loadConfig();
  if (config.DATABASE_CREATE) await ensureDatabase(config.DATABASE_URL);
  const dataSource = createDataSource({ url: config.DATABASE_URL, poolSize: 2, applicationName: 'migrate' });
  await dataSource.initialize();
  try {
    const applied = await runMigrations(dataSource);
    process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'schema is up to date\n');
  } finally {
    await dataSource.destroy();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`migrate: ${error instanceof ConfigError ? error.message : String(error)}\n`);
  process.exit(1);
});
