import { existsSync } from 'node:fs';
import {
  APPS,
  AppName,
  appMainCommand,
  arr,
  at,
  CONFIG_KEYS,
  configDefault,
  configSchemaOf,
  defaultPort,
  isConfigKey,
  JsonObject,
  MIGRATE_COMMAND,
  obj,
  path,
  PRODUCTION_REQUIRED,
  str,
  yamlDocument,
} from './deploy-helpers';

const compose = yamlDocument('docker-compose.yml');
const services = obj(compose['services'], 'services');
const service = (name: string): JsonObject => obj(services[name], `services.${name}`);
const volumes = obj(compose['volumes'], 'volumes');

/** depends_on in its long form: { service: condition }. */
const dependsOn = (name: string): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [dependency, spec] of Object.entries(
    obj(service(name)['depends_on'] ?? {}, `${name}.depends_on`),
  )) {
    out[dependency] = str(at(spec, 'condition'), `${name}.depends_on.${dependency}.condition`);
  }
  return out;
};

const healthcheck = (name: string): string[] =>
  arr(at(service(name), 'healthcheck', 'test'), `${name}.healthcheck.test`).map((part) =>
    str(part, `${name}.healthcheck.test`),
  );

const environment = (name: string): Record<string, string> => {
  const env = obj(service(name)['environment'] ?? {}, `${name}.environment`);
  return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, String(value)]));
};

/** Compose duration (`30s`, `1m30s`) in milliseconds. */
const duration = (value: unknown): number => {
  let total = 0;
  const text = str(value, 'duration');
  for (const match of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total +=
      Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as 'ms' | 's' | 'm' | 'h'];
  }
  return total;
};

const edmServices = [...APPS.map(({ app }) => app as string), 'migrate'];

describe('docker-compose.yml', () => {
  it('defines the dependencies, the migration, the four services and the observability stack', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['postgres', 'nats', 'migrate', ...APPS.map(({ app }) => app), 'prometheus', 'grafana'].sort(),
    );
  });

  it('runs Postgres 16 (alpine) on a volume, healthy when pg_isready says so', () => {
    const postgres = service('postgres');
    expect(str(postgres['image'], 'postgres.image')).toMatch(/^postgres:16(\.\d+)*-alpine$/);
    expect(arr(postgres['volumes'], 'postgres.volumes')).toContain('postgres-data:/var/lib/postgresql/data');
    expect(healthcheck('postgres').join(' ')).toContain('pg_isready');
  });

  it('runs NATS 2.9+ with JetStream on a volume, healthy when the monitoring port says JetStream is up', () => {
    const nats = service('nats');
    const [major, minor] = (/^nats:(\d+)\.(\d+)/.exec(str(nats['image'], 'nats.image')) ?? [])
      .slice(1)
      .map(Number);
    expect((major ?? 0) * 100 + (minor ?? 0)).toBeGreaterThanOrEqual(209);
    const command = arr(nats['command'], 'nats.command').map(String);
    expect(command).toContain('-js');
    expect(command.join(' ')).toContain('-sd /data');
    expect(command.join(' ')).toContain('-m 8222');
    expect(arr(nats['volumes'], 'nats.volumes')).toContain('nats-data:/data');
    expect(healthcheck('nats').join(' ')).toContain('http://127.0.0.1:8222/healthz?js-enabled-only=true');
  });

  it('runs the migrations once, after Postgres is healthy, from the image it builds', () => {
    const migrate = service('migrate');
    expect(arr(migrate['command'], 'migrate.command')).toEqual(MIGRATE_COMMAND);
    expect(String(migrate['restart'])).toBe('no');
    expect(dependsOn('migrate')).toEqual({ postgres: 'service_healthy' });
    expect(at(migrate, 'build', 'context')).toBe('.');
    expect(existsSync(path(str(at(migrate, 'build', 'dockerfile'), 'migrate.build.dockerfile')))).toBe(true);
  });

  describe.each(APPS.map(({ app }) => app))('%s', (app: AppName) => {
    const port = defaultPort(app);

    it('runs the one image with the command that picks the service', () => {
      expect(service(app)['image']).toBe(service('migrate')['image']);
      expect(service(app)['build']).toBeUndefined();
      expect(arr(service(app)['command'], `${app}.command`)).toEqual(appMainCommand(app));
    });

    it('is healthy when GET /health/ready on its port answers 2xx', () => {
      const test = healthcheck(app);
      expect(test[0]).toBe('CMD');
      const script = test.join(' ');
      expect(script).toContain(`fetch('http://127.0.0.1:${port}/health/ready')`);
      expect(script).toContain('r.ok ? 0 : 1');
    });

    it('starts after Postgres and NATS are healthy and the migration completed', () => {
      expect(dependsOn(app)).toEqual({
        postgres: 'service_healthy',
        nats: 'service_healthy',
        migrate: 'service_completed_successfully',
      });
    });

    it('publishes only its own port, if any', () => {
      for (const mapping of arr(service(app)['ports'] ?? [], `${app}.ports`)) {
        expect(String(mapping).split(':').pop()).toBe(String(port));
      }
    });

    it('stops within its grace period: stop_grace_period > SHUTDOWN_TIMEOUT_MS', () => {
      const shutdown = Number(
        environment(app)['SHUTDOWN_TIMEOUT_MS'] ?? configDefault('SHUTDOWN_TIMEOUT_MS'),
      );
      expect(duration(service(app)['stop_grace_period'])).toBeGreaterThan(shutdown);
    });
  });

  it.each(edmServices)('%s sets only configuration variables the services read', (name) => {
    const unknown = Object.keys(environment(name)).filter((key) => !CONFIG_KEYS.has(key));
    expect(unknown).toEqual([]);
  });

  it.each(edmServices)('%s runs in production with every variable production requires', (name) => {
    const env = environment(name);
    expect(env['NODE_ENV']).toBe('production');
    for (const key of PRODUCTION_REQUIRED)
      expect({ key, value: env[key] ?? '' }).toEqual({ key, value: expect.stringMatching(/\S/) });
    expect(env['EDM_ENCRYPTION_KEY']).toMatch(/^\$\{EDM_ENCRYPTION_KEY:\?/); // required from the environment, never a default
  });

  it.each(edmServices)('%s reaches Postgres and NATS by their compose service names', (name) => {
    const env = environment(name);
    expect(new URL(str(env['DATABASE_URL'], 'DATABASE_URL')).host).toBe('postgres:5432');
    expect(env['NATS_URL']).toBe('nats://nats:4222');
  });

  it('sets values the config schema accepts wherever no ${...} substitution is involved', () => {
    for (const name of edmServices) {
      for (const [key, value] of Object.entries(environment(name))) {
        if (value.includes('${') || !isConfigKey(key)) continue;
        expect({ name, key, value, valid: configSchemaOf(key).safeParse(value).success }).toEqual({
          name,
          key,
          value,
          valid: true,
        });
      }
    }
  });

  it('keeps EDM_HOME on a volume for the api (its generated admin key survives a re-creation)', () => {
    const home = environment('api')['EDM_HOME'];
    expect(arr(service('api')['volumes'], 'api.volumes')).toContain(`api-home:${home}`);
  });

  it('puts Prometheus and Grafana in the observability profile only', () => {
    for (const [name, spec] of Object.entries(services)) {
      const profiles = at(spec, 'profiles');
      if (name === 'prometheus' || name === 'grafana') expect(profiles).toEqual(['observability']);
      else expect(profiles).toBeUndefined();
    }
    expect(dependsOn('grafana')).toEqual({ prometheus: 'service_healthy' });
  });

  it('mounts files and folders that exist, and declares every named volume it uses', () => {
    for (const [name, spec] of Object.entries(services)) {
      for (const mount of arr(at(spec, 'volumes') ?? [], `${name}.volumes`)) {
        const source = str(mount, `${name}.volumes`).split(':')[0] ?? '';
        if (source.startsWith('./'))
          expect({ name, source, exists: existsSync(path(source)) }).toEqual({ name, source, exists: true });
        else expect({ name, source, declared: source in volumes }).toEqual({ name, source, declared: true });
      }
    }
  });

  it('gives every long-running service a health check', () => {
    for (const name of Object.keys(services).filter(
      (candidate) => candidate !== 'migrate' && candidate !== 'grafana',
    )) {
      expect({ name, test: healthcheck(name).length > 0 }).toEqual({ name, test: true });
    }
  });
});
