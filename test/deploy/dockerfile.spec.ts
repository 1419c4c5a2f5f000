import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';
import {
  APPS,
  at,
  appMainCommand,
  buildOutputs,
  buildSources,
  runtimeImports,
  defaultPort,
  DockerStage,
  execForm,
  MIGRATE_COMMAND,
  obj,
  parseDockerfile,
  path,
  read,
  str,
  yamlDocument,
  yamlDocuments,
  filesUnder,
  isObject,
  arr,
} from './deploy-helpers';
import ts from 'typescript';

const stages = parseDockerfile(read('Dockerfile'));
const stage = (name: string): DockerStage => {
  const found = stages.find((candidate) => candidate.name === name);
  if (!found) throw new Error(`Dockerfile has no stage ${name}`);
  return found;
};
const runs = (target: DockerStage): string[] =>
  target.instructions
    .filter((instruction) => instruction.keyword === 'RUN')
    .map((instruction) => instruction.args);
const copies = (target: DockerStage): string[][] =>
  target.instructions
    .filter((instruction) => instruction.keyword === 'COPY')
    .map((instruction) => instruction.args.split(/\s+/));

/** Every command the deployment files run in the image: compose `command`s and Kubernetes container commands. */
function deploymentCommands(): { where: string; command: string[] }[] {
  const out: { where: string; command: string[] }[] = [];
  const compose = yamlDocument('docker-compose.yml');
  for (const [name, service] of Object.entries(obj(compose['services'], 'services'))) {
    const command = obj(service, name)['command'];
    if (Array.isArray(command) && command[0] === 'node')
      out.push({ where: `compose ${name}`, command: command.map(String) });
  }
  for (const file of filesUnder('deploy/k8s', ['.yaml', '.yml'])) {
    for (const doc of yamlDocuments(file)) {
      if (!isObject(doc) || (doc['kind'] !== 'Deployment' && doc['kind'] !== 'Job')) continue;
      for (const container of arr(at(doc, 'spec', 'template', 'spec', 'containers') ?? [], file)) {
        const command = at(container, 'command');
        if (command !== undefined)
          out.push({
            where: `${file} ${String(at(container, 'name'))}`,
            command: arr(command, file).map(String),
          });
      }
    }
  }
  return out;
}

describe('Dockerfile', () => {
  it('has the stages deps, build and runtime, in that order', () => {
    expect(stages.map((candidate) => candidate.name)).toEqual(['deps', 'build', 'runtime']);
  });

  it('installs every dependency with npm ci from the lock file alone in the deps stage', () => {
    const deps = stage('deps');
    expect(deps.from).toMatch(/^node:20(\.\d+)*-slim$/);
    expect(copies(deps)).toContainEqual(['package.json', 'package-lock.json', './']);
    const install = runs(deps).find((command) => command.includes('npm ci'));
    expect(install).toBeDefined();
    expect(install).not.toContain('--omit=dev');
  });

  it('builds from the deps stage with npm run build, copying every folder tsconfig.build.json compiles', () => {
    const build = stage('build');
    expect(build.from).toBe('deps');
    expect(runs(build)).toContain('npm run build');
    const copied = copies(build).flatMap((parts) => parts.slice(0, -1));
    expect(copied).toEqual(expect.arrayContaining(['tsconfig.json', 'tsconfig.build.json']));
    const buildConfig = ts.readConfigFile(path('tsconfig.build.json'), (file) => ts.sys.readFile(file));
    const include = arr(obj(buildConfig.config, 'tsconfig.build.json')['include'], 'include').map((entry) =>
      str(entry, 'include'),
    );
    for (const folder of include) expect(copied).toContain(folder);
  });

  it('has a build script in package.json that compiles tsconfig.build.json (tsc + tsc-alias)', () => {
    const scripts = obj(obj(JSON.parse(read('package.json')), 'package.json')['scripts'] ?? {}, 'scripts');
    const build = str(scripts['build'], 'scripts.build');
    expect(build).toContain('tsc -p tsconfig.build.json');
    expect(build).toContain('tsc-alias -p tsconfig.build.json');
  });

  it('runs on node:20-slim with production dependencies and the compiled dist/ only', () => {
    const runtime = stage('runtime');
    expect(runtime.from).toMatch(/^node:20(\.\d+)*-slim$/);
    expect(runs(runtime).some((command) => /npm ci\b.*--omit=dev/.test(command))).toBe(true);
    expect(copies(runtime)).toContainEqual(['--from=build', '/app/dist', './dist']);
    expect(runtime.instructions.find((instruction) => instruction.keyword === 'WORKDIR')?.args).toBe('/app');
    expect(stage('build').instructions.find((instruction) => instruction.keyword === 'WORKDIR')?.args).toBe(
      '/app',
    );
  });

  it('runs as a non-root user', () => {
    const users = stage('runtime').instructions.filter((instruction) => instruction.keyword === 'USER');
    expect(users.length).toBeGreaterThan(0);
    const user = users[users.length - 1]?.args.split(':')[0];
    expect(user).not.toBe('root');
    expect(user).not.toBe('0');
  });

  it('exposes the four service ports (the config defaults)', () => {
    const exposed = stage('runtime')
      .instructions.filter((instruction) => instruction.keyword === 'EXPOSE')
      .flatMap((instruction) => instruction.args.split(/\s+/).map((port) => Number(port.split('/')[0])));
    expect(exposed.sort()).toEqual(APPS.map(({ app }) => defaultPort(app)).sort());
  });

  it('starts a service built by npm run build by default', () => {
    const cmd = stage('runtime')
      .instructions.filter((instruction) => instruction.keyword === 'CMD')
      .pop();
    expect(cmd).toBeDefined();
    const command = execForm(cmd?.args ?? '');
    expect(APPS.map(({ app }) => appMainCommand(app))).toContainEqual(command);
  });
});

describe('what the image runs', () => {
  const outputs = buildOutputs();

  it.each(APPS.map(({ app }) => app))('the build produces dist/apps/%s/src/main.js', (app) => {
    expect(outputs).toContain(appMainCommand(app)[1]);
  });

  it('the build produces dist/scripts/migrate.js', () => {
    expect(outputs).toContain(MIGRATE_COMMAND[1]);
  });

  it('every node command of docker-compose.yml and deploy/k8s runs a file the build produces', () => {
    const commands = deploymentCommands();
    expect(commands.length).toBeGreaterThanOrEqual(10);
    for (const { where, command } of commands) {
      expect({ where, node: command[0] }).toEqual({ where, node: 'node' });
      expect({ where, file: outputs.has(command[1] ?? '') }).toEqual({ where, file: true });
    }
  });
});

describe('production dependencies (npm ci --omit=dev)', () => {
  it('are found by reading what a file loads at run time (type-only imports are erased)', () => {
    const fixture = join(mkdtempSync(join(tmpdir(), 'edm-deploy-')), 'fixture.ts');
    writeFileSync(
      fixture,
      "import type { A } from 'a';\nimport { b } from 'b';\nexport type { C } from 'c';\nexport * from 'd';\n" +
        "const e = require('e');\nvoid import('f');\nexport const g: A = b(e);\n",
    );
    expect(runtimeImports(fixture)).toEqual(['b', 'd', 'e', 'f']);
  });

  it('include every package the compiled code loads at run time', () => {
    const packageJson = obj(JSON.parse(read('package.json')), 'package.json');
    const dependencies = new Set(Object.keys(obj(packageJson['dependencies'], 'dependencies')));
    const missing: string[] = [];
    for (const file of buildSources()) {
      for (const specifier of runtimeImports(file)) {
        if (specifier.startsWith('.') || specifier.startsWith('node:') || specifier.startsWith('@edm/'))
          continue;
        const name = specifier.startsWith('@')
          ? specifier.split('/').slice(0, 2).join('/')
          : (specifier.split('/')[0] ?? '');
        if (builtinModules.includes(name) || dependencies.has(name)) continue;
        missing.push(`${name} (${relative(path(), file)})`);
      }
    }
    expect(missing).toEqual([]);
  });
});

describe('.dockerignore', () => {
  const patterns = read('.dockerignore')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const toRegExp = (pattern: string): RegExp =>
    new RegExp(
      `^${pattern
        .replace(/^\//, '')
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*\//g, '(?:.*/)?')
        .replace(/\*/g, '[^/]*')
        .replace(/\?/g, '[^/]')}(?:/.*)?$`,
    );
  const ignored = (file: string): boolean => {
    let result = false;
    for (const pattern of patterns) {
      if (pattern.startsWith('!')) {
        if (toRegExp(pattern.slice(1)).test(file)) result = false;
      } else if (toRegExp(pattern).test(file)) {
        result = true;
      }
    }
    return result;
  };

  it('keeps everything the build copies in the build context', () => {
    const needed = stages.flatMap((target) =>
      copies(target)
        .filter((parts) => !parts.some((part) => part.startsWith('--from=')))
        .flatMap((parts) => parts.slice(0, -1)),
    );
    expect(needed.length).toBeGreaterThan(0);
    for (const file of needed) {
      expect({ file, exists: existsSync(path(file)) }).toEqual({ file, exists: true });
      expect({ file, ignored: ignored(file) }).toEqual({ file, ignored: false });
    }
    expect(ignored('apps/api/src/main.ts')).toBe(false);
    expect(ignored('libs/config/src/config.schema.ts')).toBe(false);
  });

  it('keeps host dependencies, build output, local state and secrets out of the context', () => {
    for (const file of [
      'node_modules/x/index.js',
      'dist/apps/api/src/main.js',
      '.edm/admin-key',
      '.edm/encryption-key',
      '.env',
      '.git/HEAD',
    ]) {
      expect({ file, ignored: ignored(file) }).toEqual({ file, ignored: true });
    }
  });
});
