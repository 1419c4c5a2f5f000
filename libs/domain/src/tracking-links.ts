import { createHmac, timingSafeEqual } from 'node:crypto';

/** A key of its own for link signatures, derived from the platform key so no new secret is needed. */
export const trackingKey = (platformKey: Buffer): Buffer =>
  createHmac('sha256', platformKey).update('edm tracking links v1').digest();

const signature = (key: Buffer, trackingId: string, url: string) =>
  createHmac('sha256', key).update(`${trackingId}\n${url}`).digest('base64url').slice(0, 22);

/**
 * Click tracking redirects only to URLs that were in the mail: each rewritten link carries a
 * signature of (tracking id, URL), so the endpoint cannot be used as an open redirect.
 */
export function clickUrl(base: string, key: Buffer, trackingId: string, url: string): string {
  return `${base}/t/click/${trackingId}?u=${encodeURIComponent(url)}&s=${signature(key, trackingId, url)}`;
}

export function verifyClick(key: Buffer, trackingId: string, url: string, given: string): boolean {
  const expected = Buffer.from(signature(key, trackingId, url));
  const actual = Buffer.from(given);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

export const openPixelUrl = (base: string, trackingId: string) => `${base}/t/open/${trackingId}.gif`;

/** Rewrites absolute http(s) links of an HTML body for click tracking and adds the open pixel. */
export function addTracking(html: string, base: string, key: Buffer, trackingId: string): string {
  const rewritten = html.replace(
    /(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?:\/\/[^"']+)\2/gi,
    (_, start: string, quote: string, url: string) => {
      const original = url.replace(/&amp;/g, '&');
      return `${start}${quote}${clickUrl(base, key, trackingId, original).replace(/&/g, '&amp;')}${quote}`;
    },
  );
  const pixel = `<img src="${openPixelUrl(base, trackingId)}" width="1" height="1" alt="" style="display:none">`;
  return /<\/body>/i.test(rewritten) ? rewritten.replace(/<\/body>/i, `${pixel}</body>`) : rewritten + pixel;
}
