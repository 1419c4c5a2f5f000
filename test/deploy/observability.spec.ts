import {
  APPS,
  arr,
  at,
  defaultPort,
  exposedSeries,
  isObject,
  Json,
  obj,
  promqlMetricNames,
  PROMETHEUS_SERIES,
  read,
  registeredMetrics,
  RegisteredMetric,
  str,
  yamlDocument,
} from './deploy-helpers';

const OBSERVABILITY = 'deploy/observability';
const compose = yamlDocument('docker-compose.yml');
const prometheus = yamlDocument(`${OBSERVABILITY}/prometheus.yml`);
const rules = yamlDocument(`${OBSERVABILITY}/prometheus-rules.yml`);
const datasources = yamlDocument(`${OBSERVABILITY}/grafana/provisioning/datasources/prometheus.yml`);
const providers = yamlDocument(`${OBSERVABILITY}/grafana/provisioning/dashboards/edm.yml`);
const dashboard = obj(JSON.parse(read(`${OBSERVABILITY}/grafana/dashboards/edm.json`)), 'edm.json');

/** The container path a compose service mounts `source` at. */
const mountedAt = (serviceName: string, source: string): string => {
  for (const mount of arr(at(compose, 'services', serviceName, 'volumes'), `${serviceName}.volumes`)) {
    const [from, to] = str(mount, 'volume').split(':');
    if (from === source && to) return to;
  }
  throw new Error(`${serviceName} does not mount ${source}`);
};

/** Every panel, rows' nested panels included. */
const panels = (list: Json | undefined): Json[] =>
  arr(list ?? [], 'panels').flatMap((panel) => [panel, ...panels(at(panel, 'panels') as Json | undefined)]);

const dashboardQueries = (): { where: string; expr: string }[] => {
  const out: { where: string; expr: string }[] = [];
  for (const panel of panels(dashboard['panels'])) {
    for (const target of arr(at(panel, 'targets') ?? [], 'targets')) {
      out.push({ where: `panel "${String(at(panel, 'title'))}"`, expr: str(at(target, 'expr'), 'expr') });
    }
  }
  for (const variable of arr(at(dashboard, 'templating', 'list') ?? [], 'templating')) {
    const query = at(variable, 'query');
    const text = isObject(query) ? str(query['query'], 'query.query') : str(query, 'query');
    const labelValues = /^label_values\(\s*([^,]+?)\s*,\s*[A-Za-z_]+\s*\)$/.exec(text);
    out.push({
      where: `variable ${String(at(variable, 'name'))}`,
      expr: labelValues ? (labelValues[1] as string) : text,
    });
  }
  return out;
};

const ruleList = (): { alert: string; expr: string; rule: Json }[] =>
  arr(rules['groups'], 'groups').flatMap((group) =>
    arr(at(group, 'rules'), 'rules').map((rule) => ({
      alert: str(at(rule, 'alert'), 'alert'),
      expr: str(at(rule, 'expr'), 'expr'),
      rule,
    })),
  );

describe('metric names', () => {
  let registered: Map<string, RegisteredMetric>;
  let series: Set<string>;

  beforeAll(async () => {
    registered = await registeredMetrics();
    series = exposedSeries(registered);
  });

  it('finds the metrics the code registers today, and prom-client defaults under edm_process_', () => {
    for (const name of [
      'edm_relay_active',
      'edm_relay_lag_events',
      'edm_consumer_messages',
      'edm_bus_events_received_total',
    ]) {
      expect(registered.has(name)).toBe(true);
    }
    expect(registered.get('edm_process_process_resident_memory_bytes')?.type).toBe('gauge');
    expect(series.has('edm_process_nodejs_gc_duration_seconds_sum')).toBe(true);
    expect(series.has('edm_not_a_metric')).toBe(false);
  });

  it('extracts metric names from PromQL, skipping functions, labels, ranges and groupings', () => {
    expect(
      promqlMetricNames(
        'sum by (service, type) (rate(edm_bus_events_received_total{service=~"$service", type!="x"}[$__rate_interval]))',
      ),
    ).toEqual(['edm_bus_events_received_total']);
    expect(promqlMetricNames('(sum(edm_relay_active) or vector(0)) < 1')).toEqual(['edm_relay_active']);
    expect(promqlMetricNames('up{job=~"edm-.+"} == 0 and on (instance) foo_bar offset 5m')).toEqual([
      'up',
      'foo_bar',
    ]);
    expect(
      promqlMetricNames('histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[5m]))) > 1e3'),
    ).toEqual(['x_seconds_bucket']);
  });

  it('every query of the Grafana dashboard reads only metrics the code registers', () => {
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThanOrEqual(10);
    for (const { where, expr } of queries) {
      const names = promqlMetricNames(expr);
      expect({ where, expr, reads: names.length > 0 }).toEqual({ where, expr, reads: true });
      const unknown = names.filter((name) => !series.has(name) && !PROMETHEUS_SERIES.has(name));
      expect({ where, expr, unknown }).toEqual({ where, expr, unknown: [] });
    }
  });

  it('every Prometheus alert rule reads only metrics the code registers', () => {
    for (const { alert, expr } of ruleList()) {
      const names = promqlMetricNames(expr);
      expect({ alert, reads: names.length > 0 }).toEqual({ alert, reads: true });
      const unknown = names.filter((name) => !series.has(name) && !PROMETHEUS_SERIES.has(name));
      expect({ alert, unknown }).toEqual({ alert, unknown: [] });
    }
  });
});

describe('prometheus.yml', () => {
  const jobs = arr(prometheus['scrape_configs'], 'scrape_configs');

  it.each(APPS.map(({ app }) => app))(
    'scrapes %s /metrics at its compose service name and default port',
    (app) => {
      const job = jobs.find((candidate) => at(candidate, 'job_name') === `edm-${app}`);
      expect(at(job, 'metrics_path')).toBe('/metrics');
      expect(at(job, 'static_configs', 0, 'targets')).toEqual([`${app}:${defaultPort(app)}`]);
      expect(at(compose, 'services', app)).toBeDefined();
    },
  );

  it('is mounted by the compose prometheus service, with the rules where rule_files looks', () => {
    expect(mountedAt('prometheus', `./${OBSERVABILITY}/prometheus.yml`)).toBe(
      '/etc/prometheus/prometheus.yml',
    );
    const rulesPath = mountedAt('prometheus', `./${OBSERVABILITY}/prometheus-rules.yml`);
    const patterns = arr(prometheus['rule_files'], 'rule_files').map((entry) => str(entry, 'rule_files'));
    const glob = (pattern: string): RegExp =>
      new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
    expect(patterns.some((pattern) => glob(pattern).test(rulesPath))).toBe(true);
  });
});

describe('prometheus-rules.yml', () => {
  it('has the basic alerts: a service down, no active relay, relay lag', () => {
    const alerts = ruleList().map(({ alert }) => alert);
    expect(alerts).toEqual(expect.arrayContaining(['EdmServiceDown', 'EdmNoActiveRelay', 'EdmRelayLagHigh']));
    expect(new Set(alerts).size).toBe(alerts.length);
  });

  it('gives every alert a duration, a severity and a summary', () => {
    for (const { alert, rule } of ruleList()) {
      expect({ alert, for: str(at(rule, 'for'), `${alert}.for`) }).toEqual({
        alert,
        for: expect.stringMatching(/^\d+[smh]$/),
      });
      expect(['critical', 'warning', 'info']).toContain(at(rule, 'labels', 'severity'));
      expect(str(at(rule, 'annotations', 'summary'), `${alert}.summary`).length).toBeGreaterThan(0);
    }
  });

  it('watches the scrape jobs prometheus.yml defines', () => {
    const down = ruleList().find(({ alert }) => alert === 'EdmServiceDown');
    const jobPattern = /job=~"([^"]+)"/.exec(down?.expr ?? '')?.[1] ?? '';
    for (const job of arr(prometheus['scrape_configs'], 'scrape_configs')) {
      expect(new RegExp(`^(?:${jobPattern})$`).test(str(at(job, 'job_name'), 'job_name'))).toBe(true);
    }
  });
});

describe('Grafana provisioning', () => {
  it('provisions the Prometheus data source the dashboard uses', () => {
    const [source] = arr(datasources['datasources'], 'datasources');
    expect(at(source, 'type')).toBe('prometheus');
    expect(at(source, 'url')).toBe('http://prometheus:9090');
    const uid = at(source, 'uid');
    for (const panel of panels(dashboard['panels']).filter((candidate) => at(candidate, 'type') !== 'row')) {
      expect({ panel: at(panel, 'title'), uid: at(panel, 'datasource', 'uid') }).toEqual({
        panel: at(panel, 'title'),
        uid,
      });
    }
  });

  it('loads dashboards from the folder compose mounts deploy/observability/grafana/dashboards at', () => {
    const [provider] = arr(providers['providers'], 'providers');
    expect(at(provider, 'type')).toBe('file');
    expect(at(provider, 'options', 'path')).toBe(
      mountedAt('grafana', `./${OBSERVABILITY}/grafana/dashboards`),
    );
    expect(mountedAt('grafana', `./${OBSERVABILITY}/grafana/provisioning`)).toBe('/etc/grafana/provisioning');
  });

  it('the dashboard has a uid, a title and panels with unique ids', () => {
    expect(str(dashboard['uid'], 'uid')).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(str(dashboard['title'], 'title').length).toBeGreaterThan(0);
    const ids = panels(dashboard['panels']).map((panel) => at(panel, 'id'));
    expect(new Set(ids).size).toBe(ids.length);
  });
});
