import { describe, expect, it } from 'vitest';
import {
  isMatchmakingError,
  maxMatchesPerSecond,
  PRESENCE_PLAN_LIMITS,
  presenceEventsPerMatch,
  QuotaGuard,
} from '../../src/index';
import { PresenceCallLimiter } from '../../src/strategies/presence/quotaGuard';

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('capacity formulas', () => {
  it('gives 4N + 4 presence events per match and the issue figure for 200 searchers on Free', () => {
    expect(presenceEventsPerMatch(200)).toBe(804);
    expect(maxMatchesPerSecond(PRESENCE_PLAN_LIMITS.free, 200)).toBeCloseTo(20 / 804, 6);
    expect(maxMatchesPerSecond(PRESENCE_PLAN_LIMITS.free, 201)).toBe(0);
    // 50 shards divide the channel size.
    expect(maxMatchesPerSecond(PRESENCE_PLAN_LIMITS.team, 5000, 50)).toBeCloseTo(1000 / 404, 6);
  });
});

describe('QuotaGuard', () => {
  it('estimates from counted events, at least over 5 s, scaled by the shard count', () => {
    const c = clock();
    const guard = new QuotaGuard({ plan: 'free' }, c, 1);
    guard.recordJoin(10);
    for (let n = 9; n >= 0; n -= 1) guard.recordLeave(n);
    // 1 state + (9 + 8 + ... + 0) = 46 events in < 1 s, over the 5 s floor; no arrivals to predict from.
    expect(guard.estimate()).toMatchObject({ presenceEventsPerSecond: 46 / 5, presenceBasis: 'observed' });
    // Arrivals: 10 tracks into a growing channel (1 + n each) are counted, and predict 2N + 2 per arrival.
    const growing = new QuotaGuard({ plan: 'free' }, c, 1);
    for (let n = 1; n <= 10; n += 1) growing.recordTrack(n);
    expect(growing.estimate()).toMatchObject({
      presenceEventsPerSecond: (10 / 5) * 22,
      presenceBasis: 'predicted',
    });
    const sharded = new QuotaGuard({ plan: 'free' }, c, 50);
    sharded.recordLeave(3);
    expect(sharded.estimate().presenceEventsPerSecond).toBeCloseTo((3 / 5) * 50, 5);
  });

  it('predicts the steady state from arrivals and channel size', () => {
    const c = clock();
    const guard = new QuotaGuard({ plan: 'pro' }, c, 1);
    // One arrival per second into a channel of 100: each costs 2N + 2 in steady state.
    for (let i = 0; i < 30; i += 1) {
      guard.recordTrack(100);
      c.advance(1000);
    }
    const estimate = guard.estimate();
    expect(estimate.presenceBasis).toBe('predicted');
    expect(estimate.presenceEventsPerSecond).toBeCloseTo(202, 0);
  });

  it('warns at warnAt of a limit, once per interval, worst metric first', () => {
    const c = clock();
    const guard = new QuotaGuard({ plan: 'free', warnAt: 0.5, warningIntervalMs: 10_000 }, c, 1);
    for (let n = 1; n <= 12; n += 1) guard.recordTrack(n);
    const [first, ...rest] = guard.due();
    expect(first).toMatchObject({
      code: 'quota_presence_rate',
      details: { metric: 'presenceEventsPerSecond', limit: 20, plan: 'free' },
    });
    expect(rest).toEqual([]);
    expect(guard.due()).toEqual([]);
    c.advance(10_000);
    for (let n = 1; n <= 40; n += 1) guard.recordTrack(n);
    expect(guard.due().map((w) => w.code)).toContain('quota_presence_rate');
  });

  it('forgets what it saw once it has observed nothing for a whole window', () => {
    const c = clock();
    const guard = new QuotaGuard({ plan: 'free' }, c, 1);
    for (let n = 1; n <= 20; n += 1) guard.recordTrack(n);
    expect(guard.pressing().length).toBeGreaterThan(0);
    c.advance(61_000);
    guard.recordJoin(0);
    expect(guard.pressing()).toEqual([]);
  });

  it('validates its options with messages that say what to change', () => {
    const c = clock();
    expect(() => new QuotaGuard({ plan: 'enterprise' as never }, c)).toThrowError(
      /quota.plan must be one of 'free', 'pro', 'team'/,
    );
    expect(() => new QuotaGuard({ warnAt: 2 }, c)).toThrowError(/warnAt/);
    expect(() => new QuotaGuard({ onExceed: 'panic' as never }, c)).toThrowError(/onExceed/);
    try {
      new QuotaGuard({ limits: { messagesPerSecond: -1 } }, c);
    } catch (error) {
      expect(isMatchmakingError(error, 'invalid_config')).toBe(true);
    }
    expect(new QuotaGuard('team', c).limits).toEqual(PRESENCE_PLAN_LIMITS.team);
    expect(
      new QuotaGuard({ plan: 'free', limits: { presenceEventsPerSecond: 10 } }, c).limits
        .presenceEventsPerSecond,
    ).toBe(10);
  });
});

describe('PresenceCallLimiter', () => {
  it('allows 5 track/untrack per 30 s and says how long the 6th must wait', () => {
    const limiter = new PresenceCallLimiter();
    let now = 0;
    for (let i = 0; i < 5; i += 1) {
      expect(limiter.waitMs(now)).toBe(0);
      limiter.record(now);
      now += 1000;
    }
    expect(limiter.waitMs(now)).toBe(30_050 - 5000);
    now = 30_050;
    expect(limiter.waitMs(now)).toBe(0);
    limiter.reset();
    expect(limiter.waitMs(now)).toBe(0);
  });
});
