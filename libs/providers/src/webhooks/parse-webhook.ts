import { parseEngagelabWebhook } from './engagelab.parser';
import { parseMailgunWebhook } from './mailgun.parser';
import type { ParseWebhookResult, WebhookHeaders, WebhookProvider } from './parsed-mail-event';
import { parsePostmarkWebhook } from './postmark.parser';
import { parseJsonSafely } from './safe-json';
import { parseSandboxWebhook } from './sandbox.parser';
import { parseSendgridWebhook } from './sendgrid.parser';
import { parseSesWebhook } from './ses.parser';

const parseByProvider = (provider: WebhookProvider, body: unknown, rawBody: string): ParseWebhookResult => {
  switch (provider) {
    case 'engagelab':
      return parseEngagelabWebhook(body);
    case 'sendgrid':
      return parseSendgridWebhook(body);
    case 'mailgun':
      return parseMailgunWebhook(body);
    case 'ses':
      return parseSesWebhook(body);
    case 'postmark':
      return parsePostmarkWebhook(body, rawBody);
    case 'sandbox':
      return parseSandboxWebhook(body);
    default:
      return { kind: 'invalid', reason: `unknown provider ${JSON.stringify(provider)}` };
  }
};

/**
 * Reads a webhook body the ingest has already stored. Never throws: anything it cannot read
 * becomes `invalid` with a reason. Signatures are checked separately, on the raw bytes.
 * Every provider we read posts JSON, so headers are accepted for future format negotiation only.
 */
export const parseWebhook = (
  provider: WebhookProvider,
  rawBody: string,
  _headers: WebhookHeaders = {},
): ParseWebhookResult => {
  try {
    if (typeof rawBody !== 'string') return { kind: 'invalid', reason: 'body is not a string' };
    const json = parseJsonSafely(rawBody);
    if (!json.ok) return { kind: 'invalid', reason: json.reason };
    return parseByProvider(provider, json.value, rawBody);
  } catch (error) {
    // Defence in depth: a parser bug must cost one event, not the ingest.
    return {
      kind: 'invalid',
      reason: `parser failure: ${error instanceof Error ? error.message : 'unknown'}`,
    };
  }
};
