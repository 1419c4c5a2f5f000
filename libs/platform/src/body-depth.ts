/**
 * Deepest nesting of arrays and objects a request body may have. No payload of ours or of any
 * provider comes near it; far deeper ones parse, but later recursion (JSON.stringify, jsonb)
 * overflows on them.
 */
export const MAX_BODY_DEPTH = 64;

const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

const OPENERS = [OPEN_OBJECT, OPEN_ARRAY];

/**
 * Whether the text holds at most `limit` opening brackets (in strings or not), counted with the
 * buffer's native search: such a body cannot nest deeper than `limit`. A tenth of the time of the
 * byte-by-byte scan below on a webhook of a few hundred bytes, which runs for every request.
 */
function opensAtMost(body: Buffer, limit: number): boolean {
  let count = 0;
  for (const opener of OPENERS) {
    for (let at = body.indexOf(opener); at >= 0; at = body.indexOf(opener, at + 1)) {
      count += 1;
      if (count > limit) return false;
    }
  }
  return true;
}

/**
 * Whether JSON text nests deeper than `limit`: no, at once, when it has no more brackets than that;
 * otherwise in one pass over the bytes, skipping strings.
 */
export function nestsDeeperThan(body: Buffer, limit: number): boolean {
  if (opensAtMost(body, limit)) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i += 1) {
    const byte = body[i];
    if (inString) {
      if (byte === BACKSLASH) i += 1;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) inString = true;
    else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
      depth += 1;
      if (depth > limit) return true;
    } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) depth -= 1;
  }
  return false;
}

/** A body parser `verify` hook: refuses a body nested too deeply before it is parsed or stored. */
export function refuseDeepBodies(_request: unknown, _response: unknown, body: Buffer): void {
  if (nestsDeeperThan(body, MAX_BODY_DEPTH)) {
    throw Object.assign(new Error(`request body nests deeper than ${MAX_BODY_DEPTH} levels`), {
      type: 'entity.too.deep',
    });
  }
}
