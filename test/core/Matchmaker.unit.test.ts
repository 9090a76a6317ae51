import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type CancelOutcome,
  createMatchmaker,
  isMatchmakingError,
  Matchmaker,
  MatchmakingError,
  type MatchmakingStrategy,
  MemoryMatchmakingHub,
  type SearchInfo,
  type SearchOutcome,
  type StrategyListener,
} from '../../src/index';
import { recordEvents } from '../conformance/suite';

/** A strategy whose backend answers are scripted by the test. */
class ScriptedStrategy implements MatchmakingStrategy {
  readonly kind = 'memory' as const;
  listener: StrategyListener | undefined;
  search_: SearchInfo | undefined;
  searchResult: () => Promise<SearchOutcome> = async () => ({ status: 'searching' });
  cancelResult: () => Promise<CancelOutcome> = async () => ({ status: 'cancelled' });
  closed = 0;
  calls: string[] = [];

  async search(search: SearchInfo, listener: StrategyListener): Promise<SearchOutcome> {
    this.calls.push('search');
    this.search_ = search;
    this.listener = listener;
    return this.searchResult();
  }
  async cancel(): Promise<CancelOutcome> {
    this.calls.push('cancel');
    return this.cancelResult();
  }
  async close(): Promise<void> {
    this.closed += 1;
  }
}

const match = {
  matchId: 'm1',
  userIds: ['alice', 'bob'] as const,
  createdAt: '2026-01-01T00:00:00.000Z',
  strategy: 'memory' as const,
  criteria: {},
};

afterEach(() => {
  vi.useRealTimers();
});

describe('Matchmaker', () => {
  it('reports waitedMs from the injected clock', async () => {
    let now = 1_000;
    const strategy = new ScriptedStrategy();
    const m = new Matchmaker(strategy, { environment: { clock: { now: () => now } } });
    await m.start();
    now = 1_750;
    strategy.listener!.matched(strategy.search_!.searchId, { match, userId: 'bob' });
    expect(m.getSnapshot()).toMatchObject({
      status: 'matched',
      match: { waitedMs: 750, partnerId: 'alice' },
    });
  });

  it('forwards strategy warnings as `warning` events without changing state', async () => {
    const strategy = new ScriptedStrategy();
    const m = new Matchmaker(strategy);
    const events = recordEvents(m);
    await m.start();
    const before = m.getSnapshot();
    strategy.listener!.warning?.({
      code: 'quota_presence_rate',
      message: 'slow down',
      details: { estimate: 18 },
    });
    expect(events.at(-1)).toEqual({
      type: 'warning',
      code: 'quota_presence_rate',
      message: 'slow down',
      details: { estimate: 18 },
    });
    expect(m.getSnapshot()).toBe(before);
    await m.close();
    strategy.listener!.warning?.({ code: 'late', message: 'after close', details: {} });
    expect(events.filter((e) => e.type === 'warning')).toHaveLength(1);
  });

  it('handles a match that arrives before the backend confirms the search', async () => {
    const strategy = new ScriptedStrategy();
    strategy.searchResult = async () => {
      strategy.listener!.matched(strategy.search_!.searchId, { match, userId: 'alice' });
      return { status: 'searching' };
    };
    const m = new Matchmaker(strategy);
    const events = recordEvents(m);
    await m.start();
    expect(events.map((e) => e.type)).toEqual(['state', 'searching', 'state', 'matched', 'state']);
    expect(m.getSnapshot().status).toBe('matched');
  });

  it('treats a match returned by search() as searching then matched', async () => {
    const strategy = new ScriptedStrategy();
    strategy.searchResult = async () => ({ status: 'matched', match, userId: 'alice' });
    const m = new Matchmaker(strategy);
    const events = recordEvents(m);
    await m.start();
    expect(events.map((e) => e.type)).toEqual(['state', 'searching', 'state', 'matched', 'state']);
  });

  it('ignores a duplicate match and any ending after the first', async () => {
    const strategy = new ScriptedStrategy();
    const m = new Matchmaker(strategy);
    const events = recordEvents(m);
    await m.start();
    const id = strategy.search_!.searchId;
    strategy.listener!.matched(id, { match, userId: 'alice' });
    strategy.listener!.matched(id, { match: { ...match, matchId: 'm2' }, userId: 'alice' });
    strategy.listener!.ended(id, 'expired');
    expect(events.filter((e) => e.type === 'matched')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'cancelled')).toHaveLength(0);
  });

  it('ignores outcomes for a search that is no longer current', async () => {
    const strategy = new ScriptedStrategy();
    const m = new Matchmaker(strategy);
    await m.start();
    const old = strategy.search_!.searchId;
    await m.start({ restart: true });
    strategy.listener!.matched(old, { match, userId: 'alice' });
    expect(m.getSnapshot().status).toBe('searching');
  });

  it('a failed start gives a fatal error event and the error snapshot, and rejects', async () => {
    const strategy = new ScriptedStrategy();
    strategy.searchResult = async () => {
      throw new TypeError('fetch failed');
    };
    const m = new Matchmaker(strategy);
    const events = recordEvents(m);
    const error = await m.start().catch((e: unknown) => e);
    expect(isMatchmakingError(error, 'unavailable')).toBe(true);
    expect((error as MatchmakingError).cause).toBeInstanceOf(TypeError);
    expect(m.getSnapshot()).toMatchObject({ status: 'error', error: { code: 'unavailable' } });
    expect(events.map((e) => e.type)).toEqual(['state', 'error', 'state']);
    expect(events[1]).toMatchObject({ fatal: true });
  });

  it('a search ended by an error gives error (fatal) then cancelled', async () => {
    const strategy = new ScriptedStrategy();
    const m = new Matchmaker(strategy);
    const events = recordEvents(m);
    await m.start();
    const error = new MatchmakingError('rate_limited', 'Too many presence messages per second');
    strategy.listener!.ended(strategy.search_!.searchId, 'error', error);
    expect(events.slice(-3).map((e) => e.type)).toEqual(['error', 'cancelled', 'state']);
    expect(m.getSnapshot()).toMatchObject({ status: 'cancelled', reason: 'error', error });
  });

  it('non-fatal strategy errors change no state', async () => {
    const strategy = new ScriptedStrategy();
    const m = new Matchmaker(strategy);
    const events = recordEvents(m);
    await m.start();
    const before = m.getSnapshot();
    strategy.listener!.error(new MatchmakingError('unavailable', 'socket dropped, reconnecting'));
    expect(m.getSnapshot()).toBe(before);
    expect(events.at(-1)).toMatchObject({ type: 'error', fatal: false });
  });

  it('cancels on the client after searchTimeoutMs (fake timers)', async () => {
    vi.useFakeTimers();
    const strategy = new ScriptedStrategy();
    const m = new Matchmaker(strategy, { searchTimeoutMs: 10_000 });
    await m.start();
    await vi.advanceTimersByTimeAsync(9_999);
    expect(m.getSnapshot().status).toBe('searching');
    await vi.advanceTimersByTimeAsync(1);
    expect(m.getSnapshot()).toMatchObject({ status: 'cancelled', reason: 'timeout' });
    expect(strategy.calls).toEqual(['search', 'cancel']);
  });

  it('a match clears the timeout', async () => {
    vi.useFakeTimers();
    const strategy = new ScriptedStrategy();
    const m = new Matchmaker(strategy, { searchTimeoutMs: 1_000 });
    await m.start();
    strategy.listener!.matched(strategy.search_!.searchId, { match, userId: 'alice' });
    await vi.advanceTimersByTimeAsync(5_000);
    expect(m.getSnapshot().status).toBe('matched');
    expect(strategy.calls).toEqual(['search']);
  });

  it('cancel that loses the race to a match resolves false and reports the match', async () => {
    const strategy = new ScriptedStrategy();
    strategy.cancelResult = async () => ({ status: 'matched', match, userId: 'alice' });
    const m = new Matchmaker(strategy);
    await m.start();
    expect(await m.cancel()).toBe(false);
    expect(m.getSnapshot()).toMatchObject({ status: 'matched', match: { partnerId: 'bob' } });
  });

  it('close is idempotent, closes the strategy once and silences everything', async () => {
    const strategy = new ScriptedStrategy();
    const m = new Matchmaker(strategy);
    const listener = vi.fn();
    m.on('state', listener);
    await m.start();
    const searchId = strategy.search_!.searchId;
    await Promise.all([m.close(), m.close()]);
    expect(strategy.closed).toBe(1);
    listener.mockClear();
    strategy.listener!.matched(searchId, { match, userId: 'alice' });
    expect(listener).not.toHaveBeenCalled();
    expect(m.getSnapshot().status).toBe('closed');
    expect(await m.cancel()).toBe(false);
  });

  it('on() returns an unsubscribe and once() fires once', async () => {
    const strategy = new ScriptedStrategy();
    const m = new Matchmaker(strategy);
    const on = vi.fn();
    const once = vi.fn();
    const off = m.on('state', on);
    m.once('state', once);
    await m.start();
    expect(once).toHaveBeenCalledTimes(1);
    expect(on).toHaveBeenCalledTimes(2);
    off();
    await m.cancel();
    expect(on).toHaveBeenCalledTimes(2);
  });

  it('subscribe and getSnapshot work unbound (useSyncExternalStore passes them around)', async () => {
    const m = new Matchmaker(new ScriptedStrategy());
    const { subscribe, getSnapshot } = m;
    const listener = vi.fn();
    const unsubscribe = subscribe(listener);
    await m.start();
    expect(getSnapshot().status).toBe('searching');
    expect(listener).toHaveBeenCalledTimes(2);
    unsubscribe();
  });
});

describe('configuration errors say how to fix them', () => {
  it('rejects a bad searchTimeoutMs', () => {
    expect(() => new Matchmaker(new ScriptedStrategy(), { searchTimeoutMs: -5 })).toThrowError(
      /searchTimeoutMs must be a positive number/,
    );
  });

  it('rejects unknown strategies, listing the available ones', () => {
    expect(() => createMatchmaker({ strategy: 'carrier-pigeon' } as never)).toThrowError(
      /Unknown strategy "carrier-pigeon". Use one of 'presence', 'sharded-presence', 'queue', 'service', 'memory'/,
    );
  });

  it('rejects a memory config without a hub', () => {
    const error = (() => {
      try {
        createMatchmaker({ strategy: 'memory', userId: 'a' } as never);
      } catch (e) {
        return e;
      }
    })();
    expect(isMatchmakingError(error, 'invalid_config')).toBe(true);
    expect((error as MatchmakingError).details).toEqual({ field: 'hub' });
  });

  it('accepts a strategy object', async () => {
    const m = createMatchmaker({ strategy: new ScriptedStrategy() });
    await m.start();
    expect(m.getSnapshot().status).toBe('searching');
  });

  it('createMatchmaker memory works end to end', async () => {
    const hub = new MemoryMatchmakingHub();
    const a = createMatchmaker({ strategy: 'memory', hub, userId: 'a' });
    const b = createMatchmaker({ strategy: 'memory', hub, userId: 'b' });
    await a.start();
    await b.start();
    await Promise.resolve();
    expect(a.getSnapshot()).toMatchObject({ status: 'matched', match: { partnerId: 'b' } });
  });

  it.each([
    [[1, 2], /plain object/],
    [{ 'bad key': 'x' }, /is not allowed/],
    [{ lang: null }, /must be a string, number or boolean/],
    [{ n: Number.NaN }, /finite number/],
    [{ s: 'x'.repeat(201) }, /limit is 200/],
  ])('rejects criteria %j', async (criteria, message) => {
    const m = new Matchmaker(new ScriptedStrategy());
    expect(() => m.start({ criteria: criteria as never })).toThrowError(message);
    expect(m.getSnapshot().status).toBe('idle');
  });
});
