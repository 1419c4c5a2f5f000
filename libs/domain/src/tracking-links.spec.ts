import { randomBytes } from 'node:crypto';
import { addTracking, clickUrl, trackingKey, verifyClick } from './tracking-links';

describe('tracking links', () => {
  const key = trackingKey(randomBytes(32));

  it('signs a click link that verifies only for its own tracking id and URL', () => {
    const link = new URL(clickUrl('https://t.example.com', key, 'abc', 'https://shop.example.com/?a=1&b=2'));
    const url = link.searchParams.get('u')!;
    const s = link.searchParams.get('s')!;
    expect(url).toBe('https://shop.example.com/?a=1&b=2');
    expect(verifyClick(key, 'abc', url, s)).toBe(true);
    expect(verifyClick(key, 'abd', url, s)).toBe(false);
    expect(verifyClick(key, 'abc', 'https://evil.example.com/', s)).toBe(false);
    expect(verifyClick(trackingKey(randomBytes(32)), 'abc', url, s)).toBe(false);
  });

  it('rewrites absolute links and adds the pixel before </body>', () => {
    const html =
      '<body><a href="https://a.example.com/x?y=1&amp;z=2">A</a> <a href="mailto:x@y.z">m</a> <a href=\'/rel\'>r</a></body>';
    const out = addTracking(html, 'https://t.example.com', key, 'abc');
    expect(out).toContain(
      'href="https://t.example.com/t/click/abc?u=https%3A%2F%2Fa.example.com%2Fx%3Fy%3D1%26z%3D2&amp;s=',
    );
    expect(out).toContain('href="mailto:x@y.z"');
    expect(out).toContain("href='/rel'");
    expect(out).toMatch(/<img src="https:\/\/t.example.com\/t\/open\/abc.gif"[^>]*><\/body>$/);
  });
});
