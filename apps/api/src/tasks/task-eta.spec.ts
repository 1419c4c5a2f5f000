import { etaSeconds } from './task-eta';

describe('etaSeconds', () => {
  it('adds the services rates: 19 mails at 31 s and 18 s take about 217 s', () => {
    expect(etaSeconds(19, [{ intervalMs: 31_000 }, { intervalMs: 18_000 }])).toBe(217);
  });
  it('counts rates per second', () => {
    expect(etaSeconds(1_000, [{ perSecond: 10 }, { perSecond: 40, burst: 5 }])).toBe(20);
  });
  it('is unknown without a usable service or with an unpaced one, and zero when nothing is pending', () => {
    expect(etaSeconds(5, [])).toBeNull();
    expect(etaSeconds(5, [{ intervalMs: 0 }])).toBeNull();
    expect(etaSeconds(0, [])).toBe(0);
  });
});
