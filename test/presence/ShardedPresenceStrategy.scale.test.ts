import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Matchmaker, type MatchmakerEvent, ShardedPresenceStrategy } from '../../src/index';
import { diffCounters, type LocalSupabase } from '../../src/testing/index';
import { recordEvents } from '../conformance/suite';
import { owningMatchmaker } from '../helpers/presenceClients';
import { PresenceObserver } from '../helpers/presenceObserver';
import { startQueueStack } from '../helpers/queueStack';
import { waitFor } from '../helpers/waitFor';

const N = 1000;
const S = 50;
const PREFIX = 'scale-shard';

let stack: LocalSupabase;
beforeAll(async () => {
  stack = await startQueueStack();
});
afterAll(async () => {
  await stack?.stop();
});

describe('ShardedPresenceStrategy at scale', () => {
  it(`pairs ${N} searchers over ${S} shards: each once, <= 4N/S+4 deliveries per match, never in two shards`, async () => {
    const users = await Promise.all(Array.from({ length: N }, () => stack.createUser()));
    const observer = await PresenceObserver.start(
      stack,
      Array.from({ length: S }, (_, i) => `${PREFIX}:${i}`),
    );
    const matchmakers: Matchmaker[] = [];
    const strategies: ShardedPresenceStrategy[] = [];
    const events: MatchmakerEvent[][] = [];
    try {
      for (const user of users) {
        const { matchmaker, strategy } = await owningMatchmaker(
          stack,
          user.id,
          (supabase) =>
            new ShardedPresenceStrategy({
              supabase,
              shards: S,
              channelPrefix: PREFIX,
              joinTimeoutMs: 60_000,
            }),
        );
        matchmakers.push(matchmaker);
        strategies.push(strategy);
        events.push(recordEvents(matchmaker));
      }
      const before = stack.counters.snapshot();
      const observerBefore = { frames: observer.frames, presence: observer.presenceFrames };
      await Promise.all(matchmakers.map((m) => m.start()));
      await waitFor(
        () => matchmakers.every((m) => m.getSnapshot().status === 'matched'),
        `all ${N} matched`,
        { timeoutMs: 180_000, intervalMs: 200 },
      );
      await waitFor(() => observer.presentUsers() === 0, 'every presence gone', { timeoutMs: 20_000 });
      const delta = diffCounters(before, stack.counters.snapshot());
      const observerFrames = observer.frames - observerBefore.frames;
      const observerPresence = observer.presenceFrames - observerBefore.presence;

      const byMatch = new Map<string, string[]>();
      users.forEach((user, i) => {
        expect(
          events[i]!.filter((e) => e.type === 'matched'),
          `user ${i}`,
        ).toHaveLength(1);
        const snapshot = matchmakers[i]!.getSnapshot();
        if (snapshot.status !== 'matched') throw new Error('not matched');
        expect(snapshot.match.userId).toBe(user.id);
        byMatch.set(snapshot.match.matchId, [...(byMatch.get(snapshot.match.matchId) ?? []), user.id]);
      });
      expect(byMatch.size).toBe(N / 2);
      for (const members of byMatch.values()) expect(members).toHaveLength(2);
      const rows = await stack.db.query<{ n: string; users: string }>(
        `select count(*) as n, count(distinct u) as users from matchmaker.matches, unnest(array[user_a, user_b]) as u`,
      );
      expect(Number(rows.rows[0]!.n)).toBe(N);
      expect(Number(rows.rows[0]!.users)).toBe(N);

      // Server side: the observer replayed every presence diff of every shard in the server's order.
      expect(observer.violations).toEqual([]);
      expect(observer.tracksPerUser.size).toBe(N);

      const matches = N / 2;
      const claims = delta.rpcByFunction.matchmaker_presence_claim ?? 0;
      const moves = strategies.reduce((sum, s) => sum + s.stats.moves, 0);
      const lost: Record<string, number> = {};
      for (const s of strategies) {
        for (const [reason, n] of Object.entries(s.stats.claimsLost))
          lost[reason] = (lost[reason] ?? 0) + (n ?? 0);
      }
      const deliveries = (delta.deliveredTotal - observerFrames) / matches;
      const presence = (delta.presenceEvents - observerPresence) / matches;
      const bound = (4 * N) / S + 4;
      console.log(
        `N=${N} S=${S}: claims ${claims} (wasted ${claims - matches}), moves ${moves}, ` +
          `presence events/match ${presence.toFixed(1)}, deliveries/match ${deliveries.toFixed(1)} (bound ${bound}), ` +
          `lost ${JSON.stringify(lost)}, observer frames ${observerFrames}, rpc ${JSON.stringify(delta.rpcByFunction)}`,
      );
      expect(presence).toBeLessThanOrEqual(bound);
      expect(deliveries).toBeLessThanOrEqual(bound);
      expect(delta.quotaStops).toBe(0);
    } finally {
      await Promise.allSettled(matchmakers.map((m) => m.close()));
      await observer.close();
    }
  }, 400_000);
});
