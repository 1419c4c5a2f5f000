import { addTracking } from '@edm/domain';
import { OutgoingMail } from '@edm/providers';

export interface MailContext {
  subTaskId: string;
  taskId: string;
  trackingId: string;
  email: string;
  contactName: string | null;
  attributes: Record<string, unknown>;
  subject: string;
  html: string | null;
  text: string | null;
  from: { email: string; name?: string };
  trackingBaseUrl: string;
  /** For providers without tracking of their own (SMTP): our signed click links and open pixel. */
  linkKey: Buffer | null;
}

const escapeHtml = (value: string) =>
  value.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

/**
 * Fills `{{name}}`, `{{email}}`, `{{attributes.key}}` (or `{{key}}`) from the contact. Values are
 * HTML-escaped in HTML; a variable the contact lacks renders empty rather than as its braces.
 */
export function renderTemplate(template: string, vars: Record<string, unknown>, html: boolean): string {
  return template.replace(/\{\{\s*([A-Za-z0-9_.-]{1,100})\s*\}\}/g, (_, path: string) => {
    const key = path.startsWith('attributes.') ? path.slice('attributes.'.length) : path;
    const value = Object.hasOwn(vars, key) ? vars[key] : undefined;
    const text = value === undefined || value === null ? '' : String(value);
    return html ? escapeHtml(text) : text;
  });
}

/** The mail one sub-task sends: rendered content, our tracking id everywhere, RFC 8058 unsubscribe. */
export function renderMail(c: MailContext): OutgoingMail {
  const vars: Record<string, unknown> = { ...c.attributes, email: c.email, name: c.contactName ?? '' };
  const domain = c.from.email.split('@')[1] ?? 'localhost';
  const unsubscribe = `${c.trackingBaseUrl}/t/unsubscribe/${c.trackingId}`;
  return {
    trackingId: c.trackingId,
    taskId: c.taskId,
    subTaskId: c.subTaskId,
    // The same key on every attempt: a provider that dedupes never delivers one sub-task twice.
    idempotencyKey: c.subTaskId,
    from: c.from,
    to: { email: c.email, ...(c.contactName ? { name: c.contactName } : {}) },
    subject: renderTemplate(c.subject, vars, false),
    ...(c.html !== null
      ? {
          html: c.linkKey
            ? addTracking(renderTemplate(c.html, vars, true), c.trackingBaseUrl, c.linkKey, c.trackingId)
            : renderTemplate(c.html, vars, true),
        }
      : {}),
    ...(c.text !== null ? { text: renderTemplate(c.text, vars, false) } : {}),
    messageId: `<${c.trackingId}@${domain}>`,
    headers: {
      'X-EDM-Tracking-Id': c.trackingId,
      'List-Unsubscribe': `<${unsubscribe}>`,
      'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
    },
    customArgs: { edm_tracking_id: c.trackingId, edm_task_id: c.taskId, edm_sub_task_id: c.subTaskId },
  };
}
