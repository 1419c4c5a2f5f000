/** Terminal output without dependencies: colours (TTY only), tables, progress bars, a redrawn live area. */

const ESC = '\u001b';
const ANSI = new RegExp(`${ESC}\\[[0-9;]*[A-Za-z]`, 'g');
const ANSI_SPLIT = new RegExp(`(${ESC}\\[[0-9;]*[A-Za-z])`);

export interface Style {
  readonly enabled: boolean;
  bold(text: string): string;
  dim(text: string): string;
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  blue(text: string): string;
  magenta(text: string): string;
  cyan(text: string): string;
}

export function makeStyle(enabled: boolean): Style {
  const wrap = (open: number, close: number) => (text: string) =>
    enabled ? `\x1b[${open}m${text}\x1b[${close}m` : text;
  return {
    enabled,
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    red: wrap(31, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    blue: wrap(34, 39),
    magenta: wrap(35, 39),
    cyan: wrap(36, 39),
  };
}

export const visibleLength = (text: string): number => [...text.replace(ANSI, '')].length;

const pad = (text: string, width: number, align: 'left' | 'right') => {
  const fill = ' '.repeat(Math.max(0, width - visibleLength(text)));
  return align === 'right' ? fill + text : text + fill;
};

/** Cuts a line to `width` visible characters, keeping colour codes intact. */
export function truncate(text: string, width: number): string {
  if (visibleLength(text) <= width) return text;
  let out = '';
  let shown = 0;
  for (const part of text.split(ANSI_SPLIT)) {
    if (part.startsWith('\x1b[')) {
      out += part;
      continue;
    }
    for (const ch of part) {
      if (shown >= width - 1) break;
      out += ch;
      shown += 1;
    }
  }
  return `${out}…${text.includes('\x1b[') ? '\x1b[0m' : ''}`;
}

export interface Column<T> {
  header: string;
  value: (row: T) => string | number | null | undefined;
  align?: 'left' | 'right';
  /** Longer cells are cut with an ellipsis. */
  max?: number;
  colour?: (text: string, row: T) => string;
}

/** A plain-text table: a header, a rule, one line per row, an optional footer row under another rule. */
export function renderTable<T>(
  rows: readonly T[],
  columns: readonly Column<T>[],
  style: Style,
  footer?: T,
): string {
  const all = footer ? [...rows, footer] : [...rows];
  const cells = all.map((row) =>
    columns.map((c) => {
      const raw = c.value(row);
      const text = raw === null || raw === undefined || raw === '' ? '-' : String(raw);
      return c.max ? truncate(text, c.max) : text;
    }),
  );
  const widths = columns.map((c, i) =>
    Math.max(visibleLength(c.header), ...cells.map((r) => visibleLength(r[i]))),
  );
  const line = (values: string[], colour: boolean, row?: T) =>
    values
      .map((v, i) => {
        const column = columns[i];
        const padded = pad(v, widths[i], column.align ?? 'left');
        return colour && row !== undefined && column.colour ? column.colour(padded, row) : padded;
      })
      .join('  ')
      .trimEnd();
  const rule = style.dim(widths.map((w) => '─'.repeat(w)).join('  '));
  const out = [
    style.bold(
      line(
        columns.map((c) => c.header),
        false,
      ),
    ),
    rule,
    ...cells.slice(0, rows.length).map((r, i) => line(r, true, rows[i])),
  ];
  if (footer) out.push(rule, style.bold(line(cells[cells.length - 1], false)));
  return out.join('\n');
}

/** `██████░░░░` on a terminal, `######....` elsewhere. */
export function progressBar(done: number, total: number, width: number, unicode: boolean): string {
  const fraction = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const full = Math.round(fraction * width);
  const [on, off] = unicode ? ['█', '░'] : ['#', '.'];
  return on.repeat(full) + off.repeat(width - full);
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1_000);
  if (minutes < 60) return `${minutes} m ${String(seconds).padStart(2, '0')} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} m`;
}

/** "12 s ago" from an ISO date, or "-". */
export function formatAge(date: string | null | undefined, now = Date.now()): string {
  if (!date) return '-';
  const at = new Date(date).getTime();
  return Number.isNaN(at) ? '-' : `${formatDuration(Math.max(0, now - at))} ago`;
}

/** `2024-05-01 12:00:03` in local time, or "-". */
export function formatTime(date: string | null | undefined): string {
  if (!date) return '-';
  const d = new Date(date);
  if (Number.isNaN(d.getTime())) return '-';
  const two = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/**
 * A block of lines kept at the bottom of a terminal and redrawn in place, with log lines printed
 * above it. Off a terminal nothing is redrawn: `update` prints its compact line when it changed.
 */
export class LiveArea {
  private drawn = 0;
  private lastCompact = '';
  private lines: string[] = [];

  constructor(
    private readonly stream: NodeJS.WriteStream,
    readonly tty: boolean,
  ) {}

  log(line: string): void {
    if (!this.tty) {
      this.stream.write(`${line}\n`);
      return;
    }
    this.clear();
    this.stream.write(`${this.fit(line)}\n`);
    this.draw();
  }

  /** `lines` are drawn on a terminal; `compact` is printed elsewhere, when it differs from the last one. */
  update(lines: string[], compact: string): void {
    if (!this.tty) {
      if (compact !== this.lastCompact) this.stream.write(`${compact}\n`);
      this.lastCompact = compact;
      return;
    }
    this.clear();
    this.lines = lines;
    this.draw();
  }

  /** Leaves the last drawing on screen and stops managing it. */
  done(): void {
    this.drawn = 0;
    this.lines = [];
  }

  private fit(line: string): string {
    return truncate(line, Math.max(20, (this.stream.columns || 120) - 1));
  }

  private clear(): void {
    if (this.drawn > 0) this.stream.write(`\x1b[${this.drawn}F\x1b[J`);
    this.drawn = 0;
  }

  private draw(): void {
    if (!this.lines.length) return;
    this.stream.write(`${this.lines.map((l) => this.fit(l)).join('\n')}\n`);
    this.drawn = this.lines.length;
  }
}
