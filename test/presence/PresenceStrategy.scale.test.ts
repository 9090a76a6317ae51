import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Matchmaker, type MatchmakerEvent, PresenceStrategy } from '../../src/index';
import { diffCounters, type LocalSupabase } from '../../src/testing/index';
import { recordEvents } from '../conformance/suite';
import { owningMatchmaker } from '../helpers/presenceClients';
import { startQueueStack } from '../helpers/queueStack';
import { waitFor } from '../helpers/waitFor';

const N = 200;

let stack: LocalSupabase;
beforeAll(async () => {
  stack = await startQueueStack();
});
afterAll(async () => {
  await stack?.stop();
});

describe('PresenceStrategy at scale', () => {
  it(`pairs ${N} concurrent searchers in one channel: each once, <= 1% wasted claims, <= 4N+4 deliveries per match`, async () => {
    const users = await Promise.all(Array.from({ length: N }, () => stack.createUser()));
    const matchmakers: Matchmaker[] = [];
    const strategies: PresenceStrategy[] = [];
    const events: MatchmakerEvent[][] = [];
    try {
      for (const user of users) {
        const { matchmaker, strategy } = await owningMatchmaker(
          stack,
          user.id,
          (supabase) => new PresenceStrategy({ supabase, channel: 'scale-200' }),
        );
        matchmakers.push(matchmaker);
        strategies.push(strategy);
        events.push(recordEvents(matchmaker));
      }
      const before = stack.counters.snapshot();
      await Promise.all(matchmakers.map((m) => m.start()));
      await waitFor(
        () => matchmakers.every((m) => m.getSnapshot().status === 'matched'),
        `all ${N} matched`,
        { timeoutMs: 120_000, intervalMs: 100 },
      );
      // Let late notifications, leaves and reconciliations land before counting.
      await waitFor(() => stack.realtime.connectionCount === N, 'sockets settled', { timeoutMs: 5000 });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const delta = diffCounters(before, stack.counters.snapshot());

      // Each matched exactly once, with a partner who has the same match.
      const byMatch = new Map<string, string[]>();
      users.forEach((user, i) => {
        const matched = events[i]!.filter((e) => e.type === 'matched');
        expect(matched, `user ${i}`).toHaveLength(1);
        const snapshot = matchmakers[i]!.getSnapshot();
        if (snapshot.status !== 'matched') throw new Error('not matched');
        expect(snapshot.match.userId).toBe(user.id);
        byMatch.set(snapshot.match.matchId, [...(byMatch.get(snapshot.match.matchId) ?? []), user.id]);
      });
      expect(byMatch.size).toBe(N / 2);
      for (const members of byMatch.values()) expect(members).toHaveLength(2);
      const rows = await stack.db.query<{ matches: string; users: string }>(
        `select count(*) as matches, count(distinct u) as users
         from matchmaker.matches, unnest(array[user_a, user_b]) as u`,
      );
      expect(Number(rows.rows[0]!.matches)).toBe(N); // two rows per match in the unnest
      expect(Number(rows.rows[0]!.users)).toBe(N);

      const matches = N / 2;
      const claims = delta.rpcByFunction.matchmaker_presence_claim ?? 0;
      const wasted = claims - matches;
      const fromClients = strategies.reduce((sum, s) => sum + s.stats.claims, 0);
      expect(fromClients).toBe(claims);
      console.log(
        `N=${N}: claims ${claims} (wasted ${wasted}), presence events/match ${(delta.presenceEvents / matches).toFixed(1)}, ` +
          `deliveries/match ${(delta.deliveredTotal / matches).toFixed(1)} (bound ${4 * N + 4}), rpc ${JSON.stringify(delta.rpcByFunction)}`,
      );
      expect(wasted).toBeGreaterThanOrEqual(0);
      expect(wasted).toBeLessThanOrEqual(matches * 0.01);
      expect(delta.presenceEvents / matches).toBeLessThanOrEqual(4 * N + 4);
      expect(delta.deliveredTotal / matches).toBeLessThanOrEqual(4 * N + 4);
      expect(delta.quotaStops).toBe(0);
    } finally {
      await Promise.allSettled(matchmakers.map((m) => m.close()));
    }
  }, 240_000);
});
