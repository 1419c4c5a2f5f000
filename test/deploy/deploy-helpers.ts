/**
 * Shared by the deployment tests (test/deploy/*.spec.ts): loading YAML, a small kustomize renderer,
 * Kubernetes schema validation, the config contract, the metrics the code registers, and a PromQL
 * metric-name extractor. Nothing here runs Docker or a cluster.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1';
import { ConfigVariable, configShape } from '../../libs/config/src/config.schema';

export const ROOT = resolve(__dirname, '..', '..');
export const path = (...parts: string[]): string => join(ROOT, ...parts);
export const read = (file: string): string => readFileSync(path(file), 'utf8');

// ---------------------------------------------------------------------------------------------
// JSON-shaped values and narrowing helpers (YAML and JSON documents are `unknown` until checked).

export type Json = null | boolean | number | string | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}

export const isObject = (value: unknown): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

export function obj(value: unknown, what: string): JsonObject {
  if (!isObject(value)) throw new Error(`${what}: expected a mapping, got ${JSON.stringify(value)}`);
  return value;
}

export function arr(value: unknown, what: string): Json[] {
  if (!Array.isArray(value)) throw new Error(`${what}: expected a list, got ${JSON.stringify(value)}`);
  return value as Json[];
}

export function str(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new Error(`${what}: expected a string, got ${JSON.stringify(value)}`);
  return value;
}

export function num(value: unknown, what: string): number {
  if (typeof value !== 'number') throw new Error(`${what}: expected a number, got ${JSON.stringify(value)}`);
  return value;
}

/** The value at `keys` below `root`, or undefined when any step is missing. */
export function at(root: unknown, ...keys: (string | number)[]): unknown {
  let current: unknown = root;
  for (const key of keys) {
    if (typeof key === 'number') {
      if (!Array.isArray(current)) return undefined;
      current = current[key];
    } else {
      if (!isObject(current)) return undefined;
      current = current[key];
    }
  }
  return current;
}

// ---------------------------------------------------------------------------------------------
// YAML

/** Every document of a YAML file (merge keys `<<` enabled, as docker compose reads them). */
export function yamlDocuments(file: string): Json[] {
  const documents = parseAllDocuments(read(file), { merge: true, prettyErrors: true });
  const list = Array.isArray(documents) ? documents : [documents];
  const out: Json[] = [];
  for (const document of list) {
    const problems = [...document.errors, ...document.warnings];
    if (problems.length > 0) throw new Error(`${file}: ${problems.map((p) => p.message).join('; ')}`);
    const value: unknown = document.toJS({ maxAliasCount: 1000 });
    if (value !== null && value !== undefined) out.push(value as Json);
  }
  return out;
}

export function yamlDocument(file: string): JsonObject {
  const documents = yamlDocuments(file);
  if (documents.length !== 1)
    throw new Error(`${file}: expected one YAML document, found ${documents.length}`);
  return obj(documents[0], file);
}

/** Files under `dir` (relative to the repository root) whose name ends with one of `extensions`. */
export function filesUnder(dir: string, extensions: string[]): string[] {
  const out: string[] = [];
  const walk = (relativeDir: string): void => {
    for (const entry of readdirSync(path(relativeDir))) {
      const child = join(relativeDir, entry);
      if (statSync(path(child)).isDirectory()) walk(child);
      else if (extensions.some((extension) => entry.endsWith(extension))) out.push(child);
    }
  };
  walk(dir);
  return out.sort();
}

// ---------------------------------------------------------------------------------------------
// The applications and the config contract

export const APPS = [
  { app: 'api', portKey: 'API_PORT' },
  { app: 'dispatcher', portKey: 'DISPATCHER_PORT' },
  { app: 'webhook-ingest', portKey: 'WEBHOOK_INGEST_PORT' },
  { app: 'monitor', portKey: 'MONITOR_PORT' },
] as const satisfies readonly { app: string; portKey: ConfigVariable }[];

export type AppName = (typeof APPS)[number]['app'];

export const CONFIG_KEYS: ReadonlySet<string> = new Set(Object.keys(configShape));

export const isConfigKey = (key: string): key is ConfigVariable => CONFIG_KEYS.has(key);

export function configSchemaOf(key: ConfigVariable): z.ZodType {
  return configShape[key];
}

/** The value the config schema gives a variable that is not set (undefined: no default). */
export function configDefault(key: ConfigVariable): unknown {
  const result = configSchemaOf(key).safeParse(undefined);
  return result.success ? result.data : undefined;
}

export function defaultPort(app: AppName): number {
  const entry = APPS.find((candidate) => candidate.app === app);
  if (!entry) throw new Error(`unknown app ${app}`);
  return num(configDefault(entry.portKey), entry.portKey);
}

/** Variables production cannot run without: no default, and required or checked at start-up. */
export const PRODUCTION_REQUIRED: readonly ConfigVariable[] = ['DATABASE_URL', 'EDM_ENCRYPTION_KEY'];

export const appMainCommand = (app: AppName): string[] => ['node', `dist/apps/${app}/src/main.js`];
export const MIGRATE_COMMAND = ['node', 'dist/scripts/migrate.js'];

function buildConfig(): ts.ParsedCommandLine {
  const configFile = path('tsconfig.build.json');
  const loaded = ts.readConfigFile(configFile, (file) => ts.sys.readFile(file));
  if (loaded.error) throw new Error(ts.flattenDiagnosticMessageText(loaded.error.messageText, '\n'));
  return ts.parseJsonConfigFileContent(loaded.config, ts.sys, dirname(configFile));
}

/** The TypeScript sources `npm run build` compiles (absolute paths), from tsconfig.build.json. */
export function buildSources(): string[] {
  return buildConfig().fileNames.filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'));
}

/**
 * The JavaScript files `npm run build` produces, relative to the repository root (`dist/...`),
 * computed the way tsc does from tsconfig.build.json: its file list and its rootDir/outDir.
 */
export function buildOutputs(): Set<string> {
  const parsed = buildConfig();
  const rootDir = parsed.options.rootDir ?? ROOT;
  const outDir = parsed.options.outDir;
  if (!outDir) throw new Error('tsconfig.build.json has no outDir');
  const outputs = new Set<string>();
  for (const file of buildSources()) {
    const emitted = join(outDir, relative(rootDir, file)).replace(/\.ts$/, '.js');
    outputs.add(relative(ROOT, emitted).split('\\').join('/'));
  }
  return outputs;
}

/** Module specifiers a source file loads at run time (type-only imports and exports are erased). */
export function runtimeImports(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      if (!node.importClause?.isTypeOnly) out.push(node.moduleSpecifier.text);
    } else if (
      ts.isExportDeclaration(node) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      if (!node.isTypeOnly) out.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node)) {
      const [argument] = node.arguments;
      const isRequire = ts.isIdentifier(node.expression) && node.expression.text === 'require';
      const isDynamicImport = node.expression.kind === ts.SyntaxKind.ImportKeyword;
      if ((isRequire || isDynamicImport) && argument && ts.isStringLiteral(argument)) out.push(argument.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Kubernetes: schema validation and a small kustomize renderer

interface Validatable {
  validate(): void;
}

const MODELS: Record<string, (data: JsonObject) => Validatable> = {
  'v1/ConfigMap': (data) => new ConfigMap(data as unknown as ConstructorParameters<typeof ConfigMap>[0]),
  'v1/Secret': (data) => new Secret(data as unknown as ConstructorParameters<typeof Secret>[0]),
  'v1/Service': (data) => new Service(data as unknown as ConstructorParameters<typeof Service>[0]),
  'apps/v1/Deployment': (data) =>
    new Deployment(data as unknown as ConstructorParameters<typeof Deployment>[0]),
  'batch/v1/Job': (data) => new Job(data as unknown as ConstructorParameters<typeof Job>[0]),
  'autoscaling/v2/HorizontalPodAutoscaler': (data) =>
    new HorizontalPodAutoscaler(data as unknown as ConstructorParameters<typeof HorizontalPodAutoscaler>[0]),
  'policy/v1/PodDisruptionBudget': (data) =>
    new PodDisruptionBudget(data as unknown as ConstructorParameters<typeof PodDisruptionBudget>[0]),
  'networking.k8s.io/v1/Ingress': (data) =>
    new Ingress(data as unknown as ConstructorParameters<typeof Ingress>[0]),
};

export const KNOWN_KINDS = Object.keys(MODELS);

export const kindKey = (resource: JsonObject): string =>
  `${str(resource['apiVersion'], 'apiVersion')}/${str(resource['kind'], 'kind')}`;

export const resourceName = (resource: JsonObject): string =>
  str(at(resource, 'metadata', 'name'), 'metadata.name');

export const resourceId = (resource: JsonObject): string =>
  `${str(resource['kind'], 'kind')}/${resourceName(resource)}`;

/** Validates against the Kubernetes OpenAPI schema (kubernetes-models); throws with the problems. */
export function validateResource(resource: JsonObject): void {
  const model = MODELS[kindKey(resource)];
  if (!model) throw new Error(`${resourceId(resource)}: no schema for ${kindKey(resource)}`);
  model(resource).validate();
}

const KUSTOMIZATION_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'images', 'replicas', 'patches']);

export interface Kustomization {
  dir: string;
  resources: string[];
  patches: string[];
  images: { name: string; newName?: string; newTag?: string }[];
  replicas: { name: string; count: number }[];
}

/** Reads a kustomization.yaml; only the fields this renderer understands are allowed. */
export function readKustomization(dir: string): Kustomization {
  const file = join(dir, 'kustomization.yaml');
  const doc = yamlDocument(file);
  if (doc['apiVersion'] !== 'kustomize.config.k8s.io/v1beta1' || doc['kind'] !== 'Kustomization') {
    throw new Error(`${file}: not a kustomize.config.k8s.io/v1beta1 Kustomization`);
  }
  const unknown = Object.keys(doc).filter((key) => !KUSTOMIZATION_FIELDS.has(key));
  if (unknown.length > 0) throw new Error(`${file}: fields this test cannot render: ${unknown.join(', ')}`);
  const list = (key: string): Json[] => (doc[key] === undefined ? [] : arr(doc[key], `${file} ${key}`));
  return {
    dir,
    resources: list('resources').map((entry) => str(entry, `${file} resources`)),
    patches: list('patches').map((entry) => {
      const patch = obj(entry, `${file} patches`);
      if (Object.keys(patch).some((key) => key !== 'path')) {
        throw new Error(`${file}: only strategic-merge patches given by path are supported`);
      }
      return str(patch['path'], `${file} patches.path`);
    }),
    images: list('images').map((entry) => {
      const image = obj(entry, `${file} images`);
      return {
        name: str(image['name'], 'images.name'),
        ...(image['newName'] === undefined ? {} : { newName: str(image['newName'], 'images.newName') }),
        ...(image['newTag'] === undefined ? {} : { newTag: String(image['newTag']) }),
      };
    }),
    replicas: list('replicas').map((entry) => {
      const replica = obj(entry, `${file} replicas`);
      return { name: str(replica['name'], 'replicas.name'), count: num(replica['count'], 'replicas.count') };
    }),
  };
}

/** List fields merged by key (strategic merge patch); other lists are replaced. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
};

export function strategicMerge(target: Json, patch: Json, field = ''): Json {
  if (isObject(target) && isObject(patch)) {
    const out: JsonObject = { ...target };
    for (const [key, value] of Object.entries(patch)) {
      if (key === '$patch') continue;
      out[key] = key in target ? strategicMerge(target[key] as Json, value, key) : value;
    }
    return out;
  }
  const mergeKey = MERGE_KEYS[field];
  if (mergeKey && Array.isArray(target) && Array.isArray(patch)) {
    const out = [...target];
    for (const item of patch) {
      const index = out.findIndex(
        (existing) => isObject(existing) && isObject(item) && existing[mergeKey] === item[mergeKey],
      );
      if (index >= 0) out[index] = strategicMerge(out[index] as Json, item, '');
      else out.push(item);
    }
    return out;
  }
  return patch;
}

function setImages(resource: Json, images: Kustomization['images']): Json {
  if (Array.isArray(resource)) return resource.map((item) => setImages(item, images));
  if (!isObject(resource)) return resource;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(resource)) {
    if (key === 'image' && typeof value === 'string') {
      const [name, tag] = value.split(':');
      const rule = images.find((image) => image.name === name);
      out[key] = rule ? `${rule.newName ?? name}:${rule.newTag ?? tag ?? 'latest'}` : value;
    } else {
      out[key] = setImages(value, images);
    }
  }
  return out;
}

/** Renders a kustomization the way `kustomize build` would for the features used here. */
export function renderKustomization(dir: string): JsonObject[] {
  const kustomization = readKustomization(dir);
  let resources: JsonObject[] = [];
  for (const entry of kustomization.resources) {
    const target = join(dir, entry);
    if (existsSync(path(target)) && statSync(path(target)).isDirectory())
      resources.push(...renderKustomization(target));
    else resources.push(...yamlDocuments(target).map((doc) => obj(doc, target)));
  }
  for (const patchFile of kustomization.patches) {
    for (const patchDoc of yamlDocuments(join(dir, patchFile))) {
      const patch = obj(patchDoc, patchFile);
      const index = resources.findIndex((resource) => resourceId(resource) === resourceId(patch));
      if (index < 0)
        throw new Error(`${patchFile}: patches ${resourceId(patch)}, which the base does not have`);
      if (patch['$patch'] === 'delete') resources = resources.filter((_, i) => i !== index);
      else resources[index] = obj(strategicMerge(resources[index] as Json, patch), resourceId(patch));
    }
  }
  for (const { name, count } of kustomization.replicas) {
    const index = resources.findIndex(
      (resource) => resource['kind'] === 'Deployment' && resourceName(resource) === name,
    );
    if (index < 0) throw new Error(`${dir}: replicas for ${name}, which has no Deployment`);
    resources[index] = obj(strategicMerge(resources[index] as Json, { spec: { replicas: count } }), name);
  }
  return resources.map((resource) => obj(setImages(resource, kustomization.images), resourceId(resource)));
}

/** Kubernetes resource quantities: cpu (`100m`, `1`) and memory (`192Mi`, `1Gi`). */
export function quantity(value: unknown): number {
  const text = String(value);
  const match = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(text);
  if (!match) throw new Error(`not a quantity: ${text}`);
  const factors: Record<string, number> = {
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
  };
  return Number(match[1]) * (match[2] ? (factors[match[2]] ?? Number.NaN) : 1);
}

// ---------------------------------------------------------------------------------------------
// Metrics the code registers, and the metric names a PromQL expression reads

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary';

export interface RegisteredMetric {
  name: string;
  type: MetricType;
  source: string;
}

const isSourceFile = (file: string): boolean =>
  file.endsWith('.ts') && !/\.(spec|int-spec|e2e-spec)\.ts$/.test(file) && !file.endsWith('.d.ts');

/**
 * Every metric the services can export: the names passed to `metrics.counter|gauge|histogram(...)`
 * (or to prom-client constructors) anywhere in apps/ and libs/, plus prom-client's default process
 * metrics under the prefix the code passes to `collectDefaultMetrics`.
 */
export async function registeredMetrics(): Promise<Map<string, RegisteredMetric>> {
  const found = new Map<string, RegisteredMetric>();
  const prefixes = new Set<string>();
  const helperCall =
    /\.(counter|gauge|histogram)\s*(?:<[^>()]*>)?\s*\(\s*(['"`])([a-zA-Z_:][a-zA-Z0-9_:]*)\2/g;
  const constructorCall =
    /new\s+(Counter|Gauge|Histogram|Summary)\s*(?:<[^>()]*>)?\s*\(\s*\{\s*name:\s*(['"`])([a-zA-Z_:][a-zA-Z0-9_:]*)\2/g;
  const defaults = /collectDefaultMetrics\s*\(\s*\{[^}]*prefix:\s*(['"`])([a-zA-Z_:][a-zA-Z0-9_:]*)\1/g;
  for (const file of [...filesUnder('apps', ['.ts']), ...filesUnder('libs', ['.ts'])].filter(isSourceFile)) {
    const source = read(file);
    for (const match of source.matchAll(helperCall)) {
      found.set(match[3] as string, { name: match[3] as string, type: match[1] as MetricType, source: file });
    }
    for (const match of source.matchAll(constructorCall)) {
      const type = (match[1] as string).toLowerCase() as MetricType;
      found.set(match[3] as string, { name: match[3] as string, type, source: file });
    }
    for (const match of source.matchAll(defaults)) prefixes.add(match[2] as string);
  }
  for (const prefix of prefixes) {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix });
    for (const metric of await registry.getMetricsAsJSON()) {
      found.set(metric.name, {
        name: metric.name,
        type: String(metric.type) as MetricType,
        source: `prom-client default metrics (${prefix})`,
      });
    }
    registry.clear();
  }
  return found;
}

/** The series names a registered metric exposes (histograms and summaries add suffixes). */
export function exposedSeries(metrics: Map<string, RegisteredMetric>): Set<string> {
  const series = new Set<string>();
  for (const { name, type } of metrics.values()) {
    series.add(name);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) series.add(name + suffix);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) series.add(name + suffix);
  }
  return series;
}

/** Series Prometheus itself produces for every scrape target. */
export const PROMETHEUS_SERIES = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);

const PROMQL_WORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'inf',
  'nan',
]);

/** The metric names a PromQL expression selects (strings, label matchers, ranges, groupings skipped). */
export function promqlMetricNames(expression: string): string[] {
  let text = expression.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ');
  text = text.replace(/\{[^}]*\}/g, ' ').replace(/\[[^\]]*\]/g, ' ');
  text = text.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  text = text.replace(/\boffset\s+-?[0-9a-zA-Z]+/g, ' ');
  text = text.replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, ' ');
  const names: string[] = [];
  for (const match of text.matchAll(/(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const rest = text.slice((match.index ?? 0) + match[0].length).trimStart();
    if (rest.startsWith('(')) continue; // a function or aggregation
    if (PROMQL_WORDS.has(match[0].toLowerCase())) continue;
    names.push(match[0]);
  }
  return [...new Set(names)];
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

export interface DockerInstruction {
  keyword: string;
  args: string;
  line: number;
}

export interface DockerStage {
  name: string;
  from: string;
  instructions: DockerInstruction[];
}

/** Splits a Dockerfile into stages (comments dropped, `\` continuations joined, ARG defaults applied to FROM). */
export function parseDockerfile(text: string): DockerStage[] {
  const instructions: DockerInstruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) return;
    if (pending === '') start = index + 1;
    if (line.startsWith('#')) return;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      return;
    }
    const full = (pending + line).trim();
    pending = '';
    const [keyword = '', ...rest] = full.split(/\s+/);
    instructions.push({ keyword: keyword.toUpperCase(), args: rest.join(' '), line: start });
  });
  const args = new Map<string, string>();
  const stages: DockerStage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'ARG' && stages.length === 0) {
      const [name = '', value = ''] = instruction.args.split('=');
      args.set(name, value);
    } else if (instruction.keyword === 'FROM') {
      const [image = '', as, name] = instruction.args.split(/\s+/);
      const from = image.replace(
        /\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g,
        (_, key: string) => args.get(key) ?? '',
      );
      stages.push({
        name: as?.toUpperCase() === 'AS' && name ? name : String(stages.length),
        from,
        instructions: [],
      });
    } else if (stages.length > 0) {
      stages[stages.length - 1]?.instructions.push(instruction);
    }
  }
  return stages;
}

/** The JSON (exec) form of CMD/ENTRYPOINT/... as a list, or the shell form split on blanks. */
export function execForm(args: string): string[] {
  const trimmed = args.trim();
  if (trimmed.startsWith('['))
    return arr(JSON.parse(trimmed), 'exec form').map((part) => str(part, 'exec form'));
  return trimmed.split(/\s+/);
}
