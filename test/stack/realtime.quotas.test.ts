import { describe, expect, it } from 'vitest';
import { REALTIME_PLANS, resolveQuotas } from '../../src/testing/realtime/quotas';
import { RateCounter } from '../../src/testing/realtime/RateCounter';

describe('REALTIME_PLANS', () => {
  it('carries the limits of Supabase’s limits page', () => {
    expect(REALTIME_PLANS.free).toEqual({
      maxConcurrentUsers: 200,
      maxEventsPerSecond: 100,
      maxJoinsPerSecond: 100,
      maxChannelsPerClient: 100,
      maxPresenceEventsPerSecond: 20,
      maxPayloadSizeInKb: 256,
      clientPresenceMaxCalls: 5,
      clientPresenceWindowMs: 30_000,
    });
    expect(REALTIME_PLANS.pro).toMatchObject({
      maxConcurrentUsers: 500,
      maxEventsPerSecond: 500,
      maxJoinsPerSecond: 500,
      maxPresenceEventsPerSecond: 50,
      maxPayloadSizeInKb: 3000,
    });
    expect(REALTIME_PLANS.team).toMatchObject({
      maxConcurrentUsers: 10_000,
      maxEventsPerSecond: 2500,
      maxJoinsPerSecond: 2500,
      maxPresenceEventsPerSecond: 1000,
    });
    expect(Object.values(REALTIME_PLANS.unlimited).filter((value) => value !== 30_000)).toEqual(
      Array(7).fill(Number.POSITIVE_INFINITY),
    );
  });

  it('fills missing limits with unlimited ones', () => {
    const quotas = resolveQuotas({ maxChannelsPerClient: 3 });
    expect(quotas.maxChannelsPerClient).toBe(3);
    expect(quotas.maxEventsPerSecond).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('RateCounter', () => {
  function counter(limit: number) {
    let now = 1_000_000;
    const rate = new RateCounter(() => now, { limit });
    return { rate, advance: (ms: number) => (now += ms) };
  }

  it('only updates the average at 5 s ticks, over the buckets seen so far', () => {
    const { rate, advance } = counter(10);
    rate.add(100);
    expect(rate.avg).toBe(0);
    advance(4999);
    expect(rate.avg).toBe(0);
    advance(1);
    expect(rate.avg).toBe(20); // 100 events in one 5 s bucket
    advance(5000);
    expect(rate.avg).toBe(10); // two buckets now
  });

  it('trips at the limit and releases once the average is under it', () => {
    const { rate, advance } = counter(2);
    rate.add(10);
    expect(rate.triggered).toBe(false);
    advance(5000);
    expect(rate.avg).toBe(2);
    expect(rate.triggered).toBe(true);
    advance(5000); // 10 events over two buckets: 1/s
    expect(rate.triggered).toBe(false);
  });

  it('averages over at most twelve buckets (one minute)', () => {
    const { rate, advance } = counter(Number.POSITIVE_INFINITY);
    rate.add(60);
    advance(5000);
    expect(rate.avg).toBe(12);
    advance(55_000);
    expect(rate.avg).toBe(1); // 60 events over 12 buckets of 5 s
    advance(5000);
    expect(rate.avg).toBe(0); // the burst left the window
  });

  it('restarts fresh after a long idle period', () => {
    const { rate, advance } = counter(Number.POSITIVE_INFINITY);
    rate.add(5);
    advance(5000);
    expect(rate.avg).toBe(1);
    advance(60 * 60_000);
    rate.add(5);
    advance(5000);
    expect(rate.avg).toBe(1); // one bucket again, not averaged over twelve empty ones
  });
});
