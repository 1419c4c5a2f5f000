/* Webhook bodies come from the internet: bound their size and nesting before anything walks them. */

/** Far above any real batch (SendGrid flushes at 768 KB). */
export const MAX_WEBHOOK_BODY_CHARS = 5 * 1024 * 1024;
/** Real payloads nest fewer than ten levels; recursion over parsed values stays shallow. */
export const MAX_WEBHOOK_JSON_DEPTH = 64;

export type SafeJsonResult = { ok: true; value: unknown } | { ok: false; reason: string };

const nestingDepthExceeds = (text: string, limit: number): boolean => {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c /* \ */) i++;
      else if (ch === 0x22 /* " */) inString = false;
    } else if (ch === 0x22) inString = true;
    else if (ch === 0x7b /* { */ || ch === 0x5b /* [ */) {
      if (++depth > limit) return true;
    } else if (ch === 0x7d /* } */ || ch === 0x5d /* ] */) depth--;
  }
  return false;
};

export const parseJsonSafely = (text: string): SafeJsonResult => {
  if (text.length > MAX_WEBHOOK_BODY_CHARS) {
    return { ok: false, reason: `body exceeds ${MAX_WEBHOOK_BODY_CHARS} characters` };
  }
  if (nestingDepthExceeds(text, MAX_WEBHOOK_JSON_DEPTH)) {
    return { ok: false, reason: `JSON nests deeper than ${MAX_WEBHOOK_JSON_DEPTH} levels` };
  }
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    return { ok: false, reason: `malformed JSON: ${error instanceof Error ? error.message : 'unknown'}` };
  }
};
