import { describe, expect, it } from 'vitest';
import { RateSearch } from '../../bench/lib/RateSearch';
import { judgeSustained, stringField } from '../../bench/lib/serviceLoad';
import { readServiceBenchSizes } from '../../bench/service.bench';

/** Run a search against a system that sustains every rate up to `capacity`. */
function searchUpTo(capacity: number, search: RateSearch): number[] {
  const tried: number[] = [];
  for (let rate = search.next; rate !== undefined; rate = search.next) {
    tried.push(rate);
    search.record(rate, rate <= capacity);
  }
  return tried;
}

describe('RateSearch', () => {
  it('doubles until a rate fails, then bisects to within the precision', () => {
    const search = new RateSearch({ start: 1_000, steps: 10, granularity: 100, precision: 1.15 });
    expect(searchUpTo(3_300, search)).toEqual([1_000, 2_000, 4_000, 3_000, 3_500, 3_300]);
    expect(search.best).toBe(3_300);
    expect(search.lowestFailed).toBe(3_500);
    expect(search.describe()).toBe('1,000 ok, 2,000 ok, 4,000 failed, 3,000 ok, 3,500 failed, 3,300 ok');
  });

  it('halves from the start rate when even that fails, and stops at the step budget', () => {
    const search = new RateSearch({ start: 1_000, steps: 3, granularity: 100 });
    expect(searchUpTo(200, search)).toEqual([1_000, 500, 300]);
    expect(search.best).toBe(0);
    expect(search.next).toBeUndefined();
  });

  it('never tries a rate twice and rounds to the granularity', () => {
    const search = new RateSearch({ start: 130, steps: 20, granularity: 20, precision: 1.01 });
    const tried = searchUpTo(250, search);
    expect(new Set(tried).size).toBe(tried.length);
    expect(tried.every((rate) => rate % 20 === 0)).toBe(true);
    expect(search.best).toBe(240);
  });
});

describe('judgeSustained', () => {
  const ok = {
    targetJoinsPerSecond: 2_000,
    joinsPerSecond: 2_000,
    matchesPerSecond: 1_000,
    openAtStart: 10,
    openAtEnd: 12,
    openMax: 40,
    starved: 0,
    failures: {},
    deliveriesPerMatch: 4,
    generatorCpuUsPerMatch: 100,
    stragglers: 0,
  };

  it('accepts matches/s tracking joins/2 with a flat queue', () => {
    expect(judgeSustained(ok)).toBe('sustained');
  });

  it('refuses starved joins, failures, a short generator, too few matches and a growing queue', () => {
    expect(judgeSustained({ ...ok, starved: 2 })).toMatch(/starved/);
    expect(judgeSustained({ ...ok, failures: { rate_limited: 1 } })).toMatch(/failed/);
    expect(judgeSustained({ ...ok, joinsPerSecond: 1_900 })).toMatch(/generator/);
    expect(judgeSustained({ ...ok, matchesPerSecond: 900 })).toMatch(/matches\/s/);
    expect(judgeSustained({ ...ok, openAtEnd: 200 })).toMatch(/grew/);
  });
});

describe('service benchmark sizes', () => {
  it('is smaller under --quick and reads overrides', () => {
    const full = readServiceBenchSizes({}, false);
    const quick = readServiceBenchSizes({}, true);
    expect(quick.users).toBeLessThan(full.users);
    expect(quick.idle).toBeLessThan(full.idle);
    expect([...full.parts]).toEqual(['throughput', 'memory', 'nodes']);
    const custom = readServiceBenchSizes(
      { BENCH_SERVICE_IDLE: '50_000', BENCH_SERVICE_PARTS: 'memory' },
      false,
    );
    expect(custom.idle).toBe(50_000);
    expect([...custom.parts]).toEqual(['memory']);
    expect(() => readServiceBenchSizes({ BENCH_SERVICE_PARTS: 'nope' }, false)).toThrow(/unknown part/);
    expect(() => readServiceBenchSizes({ BENCH_SERVICE_USERS: '1.5' }, false)).toThrow(/integer/);
  });
});

describe('stringField (the raw generator reads frames without JSON.parse)', () => {
  it('reads the same values as JSON.parse from the frames the node sends', () => {
    const frames = [
      {
        v: 1,
        type: 'matched',
        id: 'j7',
        searchId: 's12.7',
        ticketId: '3.ab',
        match: {
          matchId: '0b7c2a4e-1f2d-5a3b-9c8d-1e2f3a4b5c6d',
          userIds: ['u1', 'u2'],
          createdAt: '2026-11-28T21:00:00.000Z',
          criteria: { pool: 'p1.2' },
        },
      },
      { v: 1, type: 'queued', id: 'j8', searchId: 's12.8', ticketId: '3.cd' },
      { v: 1, type: 'error', id: 'j9', code: 'rate_limited', message: 'Too many joins; "id":"x" is not it.' },
      {
        v: 1,
        type: 'cancelled',
        searchId: 's12.9',
        ticketId: '3.ef',
        status: 'cancelled',
        reason: 'expired',
      },
    ];
    for (const frame of frames) {
      const text = JSON.stringify(frame);
      const parsed = JSON.parse(text) as Record<string, unknown> & { match?: { matchId: string } };
      expect(stringField(text, 'type')).toBe(parsed.type);
      expect(stringField(text, 'id')).toBe(parsed.id);
      expect(stringField(text, 'searchId')).toBe(parsed.searchId);
      expect(stringField(text, 'code')).toBe(parsed.code);
      expect(stringField(text, 'matchId')).toBe(parsed.match?.matchId);
    }
  });
});
