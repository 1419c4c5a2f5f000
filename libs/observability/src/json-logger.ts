import { LoggerService } from '@nestjs/common';

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevel = keyof typeof LEVELS;

/** Keys whose values never reach a log line, wherever they are nested. */
const SECRET_KEY = /(pass(word)?|secret|token|api[-_]?key|authorization|credential|signature|private)/i;

export function redact(value: unknown, depth = 0): unknown {
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value))
    out[key] = SECRET_KEY.test(key) ? '[redacted]' : redact(v, depth + 1);
  return out;
}

/** One JSON object per line on stdout, the shape log collectors expect. */
export class JsonLogger implements LoggerService {
  constructor(
    private readonly service: string,
    private readonly level: LogLevel = 'info',
    private readonly write: (line: string) => void = (line) => process.stdout.write(line + '\n'),
  ) {}

  private emit(
    level: Exclude<LogLevel, 'silent'>,
    message: unknown,
    fields: Record<string, unknown> = {},
  ): void {
    if (LEVELS[level] < LEVELS[this.level]) return;
    const text =
      message instanceof Error
        ? message.message
        : typeof message === 'string'
          ? message
          : JSON.stringify(redact(message));
    this.write(
      JSON.stringify({
        time: new Date().toISOString(),
        level,
        service: this.service,
        msg: text,
        ...(redact(fields) as object),
      }),
    );
  }

  log(message: unknown, context?: string): void {
    this.emit('info', message, context ? { context } : {});
  }
  error(message: unknown, trace?: string, context?: string): void {
    this.emit('error', message, { ...(trace ? { trace } : {}), ...(context ? { context } : {}) });
  }
  warn(message: unknown, context?: string): void {
    this.emit('warn', message, context ? { context } : {});
  }
  debug(message: unknown, context?: string): void {
    this.emit('debug', message, context ? { context } : {});
  }
  verbose(message: unknown, context?: string): void {
    this.emit('debug', message, context ? { context } : {});
  }

  /** Structured entry point for our own code. */
  event(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void {
    this.emit(level, message, fields);
  }
}
