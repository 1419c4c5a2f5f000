import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AppConfig, ConfigError, loadConfig } from '@edm/config';
import { ApiClient } from './api';
import { OptionSpec, ParsedArgs } from './args';
import { CliError, EXIT, usageError } from './errors';
import { makeStyle, Style } from './ui';

/** Options every command takes. */
export const GLOBAL_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'api',
    kind: 'value',
    placeholder: '<url>',
    description: 'API base URL (default http://127.0.0.1:$API_PORT)',
  },
  {
    name: 'key',
    kind: 'value',
    placeholder: '<key>',
    description: 'API key (default: EDM_ADMIN_KEY, else the file $EDM_HOME/admin-key)',
  },
  { name: 'key-file', kind: 'value', placeholder: '<path>', description: 'read the API key from this file' },
  { name: 'json', kind: 'flag', description: 'machine-readable JSON on stdout, no progress output' },
  { name: 'no-color', kind: 'flag', description: 'no colours even on a terminal' },
  { name: 'help', short: 'h', kind: 'flag', description: 'show help' },
];

/** What a command runs with: its parsed arguments, output helpers, configuration and API client (both lazy). */
export class Context {
  readonly json: boolean;
  readonly style: Style;
  readonly errStyle: Style;
  readonly tty: boolean;
  private loaded: AppConfig | undefined;
  private apiClient: ApiClient | undefined;

  constructor(
    readonly args: ParsedArgs,
    readonly stdout: NodeJS.WriteStream = process.stdout,
    readonly stderr: NodeJS.WriteStream = process.stderr,
  ) {
    this.json = args.flags.has('json');
    this.tty = Boolean(stdout.isTTY) && !this.json;
    this.style = makeStyle(this.tty && !args.flags.has('no-color'));
    this.errStyle = makeStyle(Boolean(stderr.isTTY) && !args.flags.has('no-color'));
  }

  /** The validated configuration, read once through loadConfig(); a bad value is a usage error. */
  config(): AppConfig {
    if (!this.loaded) {
      try {
        this.loaded = loadConfig();
      } catch (error) {
        if (error instanceof ConfigError) throw usageError(error.message.replace(/\n\s*/g, '; '));
        throw error;
      }
    }
    return this.loaded;
  }

  value(name: string): string | undefined {
    return this.args.values.get(name);
  }

  flag(name: string): boolean {
    return this.args.flags.has(name);
  }

  number(name: string, fallback: number, { min = -Infinity, max = Infinity, integer = false } = {}): number {
    const raw = this.value(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max)
      throw usageError(
        `--${name} must be ${integer ? 'an integer' : 'a number'}${min > -Infinity ? ` ≥ ${min}` : ''}${max < Infinity ? ` and ≤ ${max}` : ''} (got "${raw}")`,
      );
    return n;
  }

  /** Whether the API URL was given on the command line (and so is not ours to start). */
  get apiGiven(): boolean {
    return this.args.values.has('api');
  }

  apiUrl(): string {
    const given = this.value('api');
    if (given === undefined) return `http://127.0.0.1:${this.config().API_PORT}`;
    let url: URL;
    try {
      url = new URL(given);
    } catch {
      throw usageError(`--api must be an http(s) URL (got "${given}")`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw usageError(`--api must be an http(s) URL (got "${given}")`);
    return given;
  }

  /** --key, then --key-file, then EDM_ADMIN_KEY, then $EDM_HOME/admin-key (written at first start). */
  apiKey(): string {
    const given = this.value('key');
    if (given !== undefined) {
      if (!given.trim()) throw usageError('--key is empty');
      return given.trim();
    }
    const explicitFile = this.value('key-file');
    if (explicitFile === undefined && this.config().EDM_ADMIN_KEY)
      return this.config().EDM_ADMIN_KEY as string;
    const file = explicitFile !== undefined ? resolve(explicitFile) : join(this.config().home, 'admin-key');
    let key: string;
    try {
      key = readFileSync(file, 'utf8').trim();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new CliError(
        EXIT.auth,
        code === 'ENOENT'
          ? `no API key: ${file} does not exist; pass --key or --key-file, set EDM_ADMIN_KEY, or start the system once (edm up)`
          : `cannot read the API key file ${file} (${code ?? String(error)})`,
      );
    }
    if (!key) throw new CliError(EXIT.auth, `the API key file ${file} is empty`);
    return key;
  }

  client(): ApiClient {
    if (!this.apiClient) {
      let key: string | undefined;
      this.apiClient = new ApiClient(this.apiUrl(), () => (key ??= this.apiKey()));
    }
    return this.apiClient;
  }

  print(text = ''): void {
    this.stdout.write(`${text}\n`);
  }

  printJson(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** A line for the operator (stderr, so stdout stays clean for --json). */
  note(text: string): void {
    this.stderr.write(`${text}\n`);
  }
}
