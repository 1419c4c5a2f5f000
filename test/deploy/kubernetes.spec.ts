import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../libs/config/src/config';
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
  filesUnder,
  isConfigKey,
  isObject,
  JsonObject,
  KNOWN_KINDS,
  kindKey,
  MIGRATE_COMMAND,
  num,
  obj,
  path,
  PRODUCTION_REQUIRED,
  quantity,
  read,
  readKustomization,
  renderKustomization,
  resourceId,
  resourceName,
  str,
  validateResource,
  yamlDocuments,
} from './deploy-helpers';

const BASE = 'deploy/k8s/base';
const PRODUCTION = 'deploy/k8s/overlays/production';
const AUTOSCALED: readonly AppName[] = ['dispatcher', 'webhook-ingest'];
const IMAGE = 'edm-dispatch';

const rendered = { base: renderKustomization(BASE), production: renderKustomization(PRODUCTION) };
type Render = keyof typeof rendered;

const find = (render: Render, kind: string, name: string): JsonObject => {
  const found = rendered[render].find(
    (resource) => resource['kind'] === kind && resourceName(resource) === name,
  );
  if (!found) throw new Error(`${render}: no ${kind}/${name}`);
  return found;
};
const deployment = (render: Render, app: AppName): JsonObject => find(render, 'Deployment', `edm-${app}`);
const podSpec = (workload: JsonObject): JsonObject =>
  obj(at(workload, 'spec', 'template', 'spec'), `${resourceId(workload)} pod spec`);
const container = (workload: JsonObject, name: string): JsonObject => {
  const found = arr(podSpec(workload)['containers'], 'containers').find(
    (candidate) => at(candidate, 'name') === name,
  );
  return obj(found, `${resourceId(workload)} container ${name}`);
};
const configMap = (render: Render): Record<string, string> => {
  const data = obj(find(render, 'ConfigMap', 'edm-config')['data'], 'edm-config data');
  return Object.fromEntries(
    Object.entries(data).map(([key, value]) => [key, str(value, `edm-config ${key}`)]),
  );
};
const baseSecret = (): Record<string, string> => {
  const data = obj(find('base', 'Secret', 'edm-secrets')['stringData'], 'edm-secrets stringData');
  return Object.fromEntries(
    Object.entries(data).map(([key, value]) => [key, str(value, `edm-secrets ${key}`)]),
  );
};
const configNumber = (render: Render, key: 'SHUTDOWN_TIMEOUT_MS' | 'HEALTH_CHECK_TIMEOUT_MS'): number =>
  Number(configMap(render)[key] ?? configDefault(key));
const labelsMatch = (selector: unknown, labels: unknown): boolean =>
  Object.entries(obj(selector, 'selector')).every(([key, value]) => at(labels, key) === value);

/** A probe's or a Service's port, named or numbered, resolved against the container's ports. */
const resolvePort = (target: unknown, ports: unknown): number => {
  if (typeof target === 'number') return target;
  const named = arr(ports, 'ports').find((port) => at(port, 'name') === target);
  return num(at(named, 'containerPort'), `port ${String(target)}`);
};

describe('deploy/k8s files', () => {
  it.each(filesUnder('deploy/k8s', ['.yaml', '.yml']))('%s parses as YAML', (file) => {
    expect(yamlDocuments(file).length).toBeGreaterThan(0);
  });

  it('the base kustomization lists every manifest of the base folder, and each exists', () => {
    const kustomization = readKustomization(BASE);
    const manifests = readdirSync(path(BASE)).filter(
      (file) => /\.ya?ml$/.test(file) && file !== 'kustomization.yaml',
    );
    expect([...kustomization.resources].sort()).toEqual(manifests.sort());
  });

  it('the production kustomization refers to a base folder and patch files that exist', () => {
    const kustomization = readKustomization(PRODUCTION);
    for (const resource of kustomization.resources) {
      const target = path(join(PRODUCTION, resource));
      expect(
        existsSync(target) &&
          statSync(target).isDirectory() &&
          existsSync(join(target, 'kustomization.yaml')),
      ).toBe(true);
    }
    expect(kustomization.patches.length).toBeGreaterThan(0);
    const files = readdirSync(path(PRODUCTION)).filter(
      (file) => /\.ya?ml$/.test(file) && file !== 'kustomization.yaml',
    );
    expect([...kustomization.patches].sort()).toEqual(files.sort());
  });

  it.each(filesUnder(BASE, ['.yaml']).filter((file) => !file.endsWith('kustomization.yaml')))(
    '%s: every resource validates against the Kubernetes schema',
    (file) => {
      for (const doc of yamlDocuments(file)) {
        const resource = obj(doc, file);
        expect(KNOWN_KINDS).toContain(kindKey(resource));
        expect(() => validateResource(resource)).not.toThrow();
      }
    },
  );
});

describe.each(['base', 'production'] as const)('rendered %s', (render) => {
  const resources = rendered[render];

  it('validates against the Kubernetes schemas, with DNS-1123 names and no namespace', () => {
    for (const resource of resources) {
      expect(() => validateResource(resource)).not.toThrow();
      expect(resourceName(resource)).toMatch(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
      expect(at(resource, 'metadata', 'namespace')).toBeUndefined();
    }
  });

  it('holds exactly the expected resources', () => {
    const expected = [
      'ConfigMap/edm-config',
      ...(render === 'base' ? ['Secret/edm-secrets'] : []),
      'Job/edm-migrate',
      'Ingress/edm',
      ...APPS.flatMap(({ app }) => [
        `Deployment/edm-${app}`,
        `Service/edm-${app}`,
        `PodDisruptionBudget/edm-${app}`,
      ]),
      ...AUTOSCALED.map((app) => `HorizontalPodAutoscaler/edm-${app}`),
    ];
    expect(resources.map(resourceId).sort()).toEqual(expected.sort());
  });

  it('sets only configuration variables the services read, with values the config schema accepts', () => {
    for (const [key, value] of Object.entries(configMap(render))) {
      expect({ key, known: CONFIG_KEYS.has(key) }).toEqual({ key, known: true });
      if (isConfigKey(key))
        expect({ key, value, valid: configSchemaOf(key).safeParse(value).success }).toEqual({
          key,
          value,
          valid: true,
        });
    }
    for (const resource of resources.filter(
      (candidate) => candidate['kind'] === 'Deployment' || candidate['kind'] === 'Job',
    )) {
      for (const item of arr(podSpec(resource)['containers'], 'containers')) {
        for (const variable of arr(at(item, 'env') ?? [], 'env')) {
          const name = str(at(variable, 'name'), 'env.name');
          expect({ where: resourceId(resource), name, known: CONFIG_KEYS.has(name) }).toEqual({
            where: resourceId(resource),
            name,
            known: true,
          });
        }
      }
    }
  });

  it('runs in production, migrations at start-up kept on (lock-protected), EDM_HOME absolute', () => {
    const config = configMap(render);
    expect(config['NODE_ENV']).toBe('production');
    expect(config['MIGRATIONS_RUN']).toBe('true');
    expect(config['EDM_HOME']).toMatch(/^\//);
  });

  it('uses one image for every workload', () => {
    const images = new Set<string>();
    for (const resource of resources.filter(
      (candidate) => candidate['kind'] === 'Deployment' || candidate['kind'] === 'Job',
    )) {
      for (const item of arr(podSpec(resource)['containers'], 'containers'))
        images.add(str(at(item, 'image'), 'image'));
    }
    expect(images.size).toBe(1);
    const [image = ''] = [...images];
    expect(image.split(':')[0]?.endsWith(IMAGE)).toBe(true);
  });

  describe.each(APPS.map(({ app }) => app))('%s Deployment', (app: AppName) => {
    const workload = deployment(render, app);
    const main = container(workload, app);
    const port = defaultPort(app);

    it('runs the service with its command and listens on the config default port', () => {
      expect(arr(main['command'], 'command')).toEqual(appMainCommand(app));
      expect(main['args']).toBeUndefined();
      expect(arr(main['ports'], 'ports').map((entry) => at(entry, 'containerPort'))).toEqual([port]);
      const portKey = APPS.find((entry) => entry.app === app)?.portKey ?? '';
      const configured = configMap(render)[portKey];
      if (configured !== undefined) expect(Number(configured)).toBe(port);
    });

    it('probes /health/live (startup, liveness) and /health/ready (readiness) on its port', () => {
      for (const [probe, expected] of [
        ['startupProbe', '/health/live'],
        ['livenessProbe', '/health/live'],
        ['readinessProbe', '/health/ready'],
      ] as const) {
        expect(at(main, probe, 'httpGet', 'path')).toBe(expected);
        expect(resolvePort(at(main, probe, 'httpGet', 'port'), main['ports'])).toBe(port);
      }
      const readinessTimeout = num(at(main, 'readinessProbe', 'timeoutSeconds'), 'readiness timeoutSeconds');
      expect(readinessTimeout * 1000).toBeGreaterThan(configNumber(render, 'HEALTH_CHECK_TIMEOUT_MS'));
      const startup =
        num(at(main, 'startupProbe', 'periodSeconds'), 'startup period') *
        num(at(main, 'startupProbe', 'failureThreshold'), 'startup threshold');
      expect(startup).toBeGreaterThanOrEqual(120);
    });

    it('reads edm-config and edm-secrets as environment (the Secret is required)', () => {
      expect(main['envFrom']).toEqual([
        { configMapRef: { name: 'edm-config' } },
        { secretRef: { name: 'edm-secrets' } },
      ]);
    });

    it('gets longer to terminate than the preStop sleep plus SHUTDOWN_TIMEOUT_MS', () => {
      const preStop = arr(at(main, 'lifecycle', 'preStop', 'exec', 'command') ?? ['sleep', '0'], 'preStop');
      expect(preStop[0]).toBe('sleep');
      const grace = num(podSpec(workload)['terminationGracePeriodSeconds'], 'terminationGracePeriodSeconds');
      expect(grace * 1000).toBeGreaterThan(
        configNumber(render, 'SHUTDOWN_TIMEOUT_MS') + Number(preStop[1]) * 1000,
      );
    });

    it('runs as non-root with a read-only root file system; EDM_HOME and /tmp are emptyDirs', () => {
      const pod = podSpec(workload);
      expect(at(pod, 'securityContext', 'runAsNonRoot')).toBe(true);
      expect(num(at(pod, 'securityContext', 'runAsUser'), 'runAsUser')).toBeGreaterThan(0);
      expect(at(main, 'securityContext', 'readOnlyRootFilesystem')).toBe(true);
      expect(at(main, 'securityContext', 'allowPrivilegeEscalation')).toBe(false);
      expect(at(main, 'securityContext', 'capabilities', 'drop')).toEqual(['ALL']);
      const volumes = arr(pod['volumes'], 'volumes');
      for (const mountPath of [configMap(render)['EDM_HOME'], '/tmp']) {
        const mount = arr(main['volumeMounts'], 'volumeMounts').find(
          (candidate) => at(candidate, 'mountPath') === mountPath,
        );
        const volume = volumes.find((candidate) => at(candidate, 'name') === at(mount, 'name'));
        expect({ mountPath, emptyDir: isObject(at(volume, 'emptyDir')) }).toEqual({
          mountPath,
          emptyDir: true,
        });
      }
    });

    it('requests and limits cpu and memory, limits at least the requests', () => {
      for (const resource of ['cpu', 'memory']) {
        const request = quantity(at(main, 'resources', 'requests', resource));
        const limit = quantity(at(main, 'resources', 'limits', resource));
        expect(request).toBeGreaterThan(0);
        expect(limit).toBeGreaterThanOrEqual(request);
      }
    });

    it('selects its own pods, and is exposed by a Service on the same port', () => {
      const labels = at(workload, 'spec', 'template', 'metadata', 'labels');
      expect(labelsMatch(at(workload, 'spec', 'selector', 'matchLabels'), labels)).toBe(true);
      const service = find(render, 'Service', `edm-${app}`);
      expect(labelsMatch(at(service, 'spec', 'selector'), labels)).toBe(true);
      for (const { app: other } of APPS.filter((entry) => entry.app !== app)) {
        expect(
          labelsMatch(
            at(service, 'spec', 'selector'),
            at(deployment(render, other), 'spec', 'template', 'metadata', 'labels'),
          ),
        ).toBe(false);
      }
      const [servicePort] = arr(at(service, 'spec', 'ports'), 'service ports');
      expect(at(servicePort, 'port')).toBe(port);
      expect(resolvePort(at(servicePort, 'targetPort'), main['ports'])).toBe(port);
      expect(at(workload, 'spec', 'template', 'metadata', 'annotations', 'prometheus.io/port')).toBe(
        String(port),
      );
      expect(at(workload, 'spec', 'template', 'metadata', 'annotations', 'prometheus.io/path')).toBe(
        '/metrics',
      );
    });

    it('has a PodDisruptionBudget that lets a node drain', () => {
      const budget = find(render, 'PodDisruptionBudget', `edm-${app}`);
      expect(
        labelsMatch(
          at(budget, 'spec', 'selector', 'matchLabels'),
          at(workload, 'spec', 'template', 'metadata', 'labels'),
        ),
      ).toBe(true);
      expect(at(budget, 'spec', 'maxUnavailable')).toBe(1);
    });

    it(
      AUTOSCALED.includes(app)
        ? 'is scaled by an autoscaling/v2 HPA, not by a replica count'
        : 'has a fixed replica count and no HPA',
      () => {
        const hpa = rendered[render].find(
          (resource) =>
            resource['kind'] === 'HorizontalPodAutoscaler' && resourceName(resource) === `edm-${app}`,
        );
        if (!AUTOSCALED.includes(app)) {
          expect(hpa).toBeUndefined();
          expect(num(at(workload, 'spec', 'replicas'), 'replicas')).toBeGreaterThanOrEqual(2);
          return;
        }
        expect(at(workload, 'spec', 'replicas')).toBeUndefined();
        expect(at(hpa, 'apiVersion')).toBe('autoscaling/v2');
        expect(at(hpa, 'spec', 'scaleTargetRef')).toEqual({
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          name: `edm-${app}`,
        });
        const min = num(at(hpa, 'spec', 'minReplicas'), 'minReplicas');
        expect(min).toBeGreaterThanOrEqual(2);
        expect(num(at(hpa, 'spec', 'maxReplicas'), 'maxReplicas')).toBeGreaterThan(min);
        const metric = arr(at(hpa, 'spec', 'metrics'), 'metrics').find(
          (entry) => at(entry, 'resource', 'name') === 'cpu',
        );
        expect(at(metric, 'resource', 'target', 'type')).toBe('Utilization');
        expect(at(main, 'resources', 'requests', 'cpu')).toBeDefined();
      },
    );
  });

  it('routes /api/v1 and /api/docs to the api and /api/webhooks to webhook-ingest', () => {
    const ingress = find(render, 'Ingress', 'edm');
    const routes = new Map<string, string>();
    for (const rule of arr(at(ingress, 'spec', 'rules'), 'rules')) {
      for (const route of arr(at(rule, 'http', 'paths'), 'paths')) {
        const serviceName = str(at(route, 'backend', 'service', 'name'), 'backend');
        const service = find(render, 'Service', serviceName);
        const portName = at(route, 'backend', 'service', 'port', 'name');
        expect(arr(at(service, 'spec', 'ports'), 'ports').some((port) => at(port, 'name') === portName)).toBe(
          true,
        );
        routes.set(str(at(route, 'path'), 'path'), serviceName);
      }
    }
    expect(routes.get('/api/v1')).toBe('edm-api');
    expect(routes.get('/api/docs')).toBe('edm-api');
    expect(routes.get('/api/webhooks')).toBe('edm-webhook-ingest');
    expect(
      [...routes.keys()].some((route) => route.startsWith('/health') || route.startsWith('/metrics')),
    ).toBe(false);
  });

  it('runs the migrations in a Job like the services: same image, config, secrets and security', () => {
    const job = find(render, 'Job', 'edm-migrate');
    const migrate = container(job, 'migrate');
    const api = container(deployment(render, 'api'), 'api');
    expect(arr(migrate['command'], 'command')).toEqual(MIGRATE_COMMAND);
    expect(['Never', 'OnFailure']).toContain(podSpec(job)['restartPolicy']);
    expect(migrate['image']).toBe(api['image']);
    expect(migrate['envFrom']).toEqual(api['envFrom']);
    expect(migrate['securityContext']).toEqual(api['securityContext']);
    expect(podSpec(job)['securityContext']).toEqual(podSpec(deployment(render, 'api'))['securityContext']);
    expect(num(at(job, 'spec', 'ttlSecondsAfterFinished'), 'ttlSecondsAfterFinished')).toBeGreaterThan(0);
  });
});

describe('configuration and secrets', () => {
  const secret = baseSecret();

  it('edm-config and edm-secrets together set every variable production requires', () => {
    const keys = new Set([...Object.keys(configMap('base')), ...Object.keys(secret)]);
    for (const key of PRODUCTION_REQUIRED) expect({ key, set: keys.has(key) }).toEqual({ key, set: true });
    for (const key of PRODUCTION_REQUIRED)
      expect({ key, inSecret: key in secret }).toEqual({ key, inSecret: true });
  });

  it('the Secret only holds configuration variables, as stringData, marked as placeholders', () => {
    const resource = find('base', 'Secret', 'edm-secrets');
    expect(resource['data']).toBeUndefined();
    expect(Object.keys(secret).every((key) => CONFIG_KEYS.has(key))).toBe(true);
    expect(at(resource, 'metadata', 'annotations', 'edm/placeholder')).toBe('true');
    expect(read(`${BASE}/secret.yaml`)).toMatch(/PLACEHOLDERS/);
  });

  it('every placeholder is refused by the config schema, so an unedited Secret cannot start a service', () => {
    for (const [key, value] of Object.entries(secret)) {
      expect(value).toContain('REPLACE-ME');
      if (isConfigKey(key))
        expect({ key, accepted: configSchemaOf(key).safeParse(value).success }).toEqual({
          key,
          accepted: false,
        });
    }
    expect(() => loadConfig({ ...configMap('base'), ...secret })).toThrow(/Invalid configuration/);
  });

  it('edm-config with real secrets is a valid production configuration', () => {
    const config = loadConfig({
      ...configMap('base'),
      DATABASE_URL: 'postgres://edm:secret@db.internal:5432/edm',
      EDM_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
      EDM_ADMIN_KEY: 'a'.repeat(32),
    });
    expect(config.NODE_ENV).toBe('production');
    expect(config.encryptionKey).toHaveLength(32);
    expect(config.SHUTDOWN_TIMEOUT_MS).toBe(Number(configMap('base')['SHUTDOWN_TIMEOUT_MS']));
  });

  it('production requires the Secret to exist with the keys the README tells operators to create', () => {
    const readme = read('deploy/k8s/README.md');
    for (const key of Object.keys(secret)) expect(readme).toContain(`--from-literal=${key}=`);
  });
});

describe('production overlay', () => {
  it('pins the image to a registry and a tag other than latest', () => {
    const image = str(container(deployment('production', 'api'), 'api')['image'], 'image');
    expect(image).toMatch(/^[a-z0-9.-]+\.[a-z]+\/.+:.+$/);
    expect(image.endsWith(':latest')).toBe(false);
  });

  it('runs more replicas than the base, at least three of the autoscaled services (one per zone)', () => {
    for (const app of ['api', 'monitor'] as const) {
      expect(num(at(deployment('production', app), 'spec', 'replicas'), 'replicas')).toBeGreaterThanOrEqual(
        num(at(deployment('base', app), 'spec', 'replicas'), 'replicas'),
      );
    }
    expect(num(at(deployment('production', 'api'), 'spec', 'replicas'), 'replicas')).toBeGreaterThanOrEqual(
      3,
    );
    for (const app of AUTOSCALED) {
      expect(
        num(
          at(find('production', 'HorizontalPodAutoscaler', `edm-${app}`), 'spec', 'minReplicas'),
          'minReplicas',
        ),
      ).toBeGreaterThanOrEqual(3);
    }
  });

  it.each(APPS.map(({ app }) => app))('gives %s higher limits than the base', (app) => {
    for (const resource of ['cpu', 'memory']) {
      const base = quantity(at(container(deployment('base', app), app), 'resources', 'limits', resource));
      const production = quantity(
        at(container(deployment('production', app), app), 'resources', 'limits', resource),
      );
      expect({ resource, higher: production > base }).toEqual({ resource, higher: true });
    }
  });

  it('does not ship the placeholder Secret, and serves a host over TLS', () => {
    expect(rendered.production.some((resource) => resource['kind'] === 'Secret')).toBe(false);
    const ingress = find('production', 'Ingress', 'edm');
    expect(arr(at(ingress, 'spec', 'tls'), 'tls').length).toBeGreaterThan(0);
    expect(at(ingress, 'spec', 'rules', 0, 'host')).toBe(at(ingress, 'spec', 'tls', 0, 'hosts', 0));
  });

  it('notes that the JetStream stream must run at three replicas (R3)', () => {
    expect(read(`${PRODUCTION}/kustomization.yaml`)).toMatch(/R3/);
  });
});

describe('deploy/k8s/README.md', () => {
  const readme = read('deploy/k8s/README.md');

  it('covers NATS (official Helm chart, JetStream R3), Postgres (managed or CloudNativePG) and migrations', () => {
    expect(readme).toMatch(/Helm chart/);
    expect(readme).toMatch(/R3/);
    expect(readme).toMatch(/--replicas 3/);
    expect(readme).toMatch(/CloudNativePG/);
    expect(readme).toMatch(/managed service/);
    expect(readme).toMatch(/MIGRATIONS_RUN/);
  });

  it('names every file of the base', () => {
    for (const resource of readKustomization(BASE).resources) expect(readme).toContain(resource);
  });
});
