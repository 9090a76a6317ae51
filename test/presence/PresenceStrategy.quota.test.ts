import type { SupabaseClient } from '@supabase/supabase-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  isMatchmakingError,
  Matchmaker,
  type MatchmakerEvent,
  PresenceStrategy,
  type QuotaEstimate,
  type QuotaGuardOptions,
} from '../../src/index';
import type { SupabaseLike } from '../../src/strategies/supabaseLike';
import type { LocalSupabase, LocalSupabaseOptions } from '../../src/testing/index';
import { recordEvents } from '../conformance/suite';
import { clientFor, disconnectClient, owningMatchmaker } from '../helpers/presenceClients';
import { startQueueStack } from '../helpers/queueStack';
import { waitFor } from '../helpers/waitFor';

let stack: LocalSupabase | undefined;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  await stack?.stop();
  stack = undefined;
});

async function start(options: LocalSupabaseOptions): Promise<LocalSupabase> {
  stack = await startQueueStack(options);
  return stack;
}

async function searcher(live: LocalSupabase, quota: QuotaGuardOptions | 'free', channel: string) {
  const user = await live.createUser();
  const { matchmaker } = await owningMatchmaker(
    live,
    user.id,
    (supabase) => new PresenceStrategy({ supabase, channel, quota }),
  );
  cleanups.push(() => matchmaker.close());
  return { matchmaker, events: recordEvents(matchmaker), userId: user.id };
}

describe('PresenceStrategy under Supabase quotas', () => {
  it('warns before the Free plan limiter stops a channel; a refused join is a clear rate_limited error', async () => {
    const live = await start({ plan: 'free' });
    const warnings: { code: string; quotaStops: number }[] = [];
    const searchers: { matchmaker: Matchmaker; events: MatchmakerEvent[] }[] = [];
    for (let i = 0; i < 16; i += 1) {
      // Distinct criteria: nobody matches, everyone stays present, every track reaches everyone.
      const quota: QuotaGuardOptions = i === 0 ? { plan: 'free', onExceed: 'refuse' } : { plan: 'free' };
      const s = await searcher(live, quota, 'quota-free');
      s.matchmaker.on('warning', (event) =>
        warnings.push({ code: event.code, quotaStops: live.counters.snapshot().quotaStops }),
      );
      searchers.push(s);
      await s.matchmaker.start({ criteria: { slot: i } });
    }
    await waitFor(() => warnings.length > 0, 'a quota warning');
    expect(warnings[0]).toEqual({ code: 'quota_presence_rate', quotaStops: 0 });

    // The guard set to refuse turns a new search down before joining anything.
    const refuser = searchers[0]!.matchmaker;
    expect(await refuser.cancel()).toBe(true);
    const joinsBefore = live.counters.snapshot().joins;
    const refused = await refuser.start({ criteria: { slot: 0 } }).catch((error: unknown) => error);
    expect(isMatchmakingError(refused, 'rate_limited')).toBe(true);
    expect(String((refused as Error).message)).toMatch(
      /presence events\/s against a limit of 20 \(free plan\)/,
    );
    expect(live.counters.snapshot().joins).toBe(joinsBefore);

    // The server's limiter trips at its next 5 s tick; from then on a joining searcher is stopped at once.
    let stopped:
      | { error: unknown; matchmaker: Matchmaker; events: MatchmakerEvent[]; userId: string }
      | undefined;
    await waitFor(
      async () => {
        const late = await searcher(live, { plan: 'free' }, 'quota-free');
        const error = await late.matchmaker.start({ criteria: { late: Math.random() } }).then(
          () => undefined,
          (e: unknown) => e,
        );
        if (error) stopped = { error, ...late };
        return stopped;
      },
      'the limiter to stop a joining channel',
      { timeoutMs: 30_000, intervalMs: 1000 },
    );
    const { error, matchmaker, events, userId } = stopped as NonNullable<typeof stopped>;
    expect(isMatchmakingError(error, 'rate_limited')).toBe(true);
    expect(String((error as Error).message)).toMatch(/Too many presence messages per second/);
    expect(matchmaker.getSnapshot()).toMatchObject({ status: 'error', error: { code: 'rate_limited' } });
    expect(events.filter((e) => e.type === 'error')).toMatchObject([{ fatal: true }]);
    expect(live.counters.snapshot().quotaStops).toBeGreaterThan(0);
    // Its search was withdrawn: no row stays claimable.
    const rows = await live.db.query(`select status from matchmaker.presence_searches where user_id = $1`, [
      userId,
    ]);
    expect(rows.rows).toEqual([{ status: 'cancelled' }]);
  }, 90_000);

  it('backoff holds a new search while the estimate is over warnAt, joins once it has fallen, and matches', async () => {
    const live = await start({ plan: 'free' });
    const channel = 'quota-backoff';
    // B: a backoff guard whose presence-channel joins are recorded with the guard's estimate at that moment.
    const b = await live.createUser();
    const bClient = await clientFor(live, b.id);
    const joinsOfB: QuotaEstimate[] = [];
    let bStrategy: PresenceStrategy | undefined;
    const watched: SupabaseLike = {
      rpc: (fn, args) => bClient.rpc(fn, args),
      removeChannel: (c) => bClient.removeChannel(c as Parameters<typeof bClient.removeChannel>[0]),
      channel: (name, options) => {
        const estimate = bStrategy?.quotaEstimate();
        if (name === channel && estimate) joinsOfB.push(estimate);
        return bClient.channel(name, options) as unknown as ReturnType<SupabaseLike['channel']>;
      },
    };
    bStrategy = new PresenceStrategy({
      supabase: watched,
      channel,
      quota: { plan: 'free', onExceed: 'backoff', maxBackoffMs: 90_000 },
    });
    const bMatchmaker = new Matchmaker(bStrategy);
    cleanups.push(() => disconnectClient(bClient));
    cleanups.push(() => bMatchmaker.close());
    const bWarnings: string[] = [];
    bMatchmaker.on('warning', (event) => bWarnings.push(event.code));
    await bMatchmaker.start({ criteria: { slot: 0 } });

    // D: backs off at most 1 s, so it is refused while the load lasts.
    const d = await searcher(live, { plan: 'free', onExceed: 'backoff', maxBackoffMs: 1000 }, channel);
    await d.matchmaker.start({ criteria: { slot: 1 } });
    // The load: searchers with distinct criteria (nobody matches), every track reaching everyone.
    for (let i = 2; i < 16; i += 1) {
      const s = await searcher(live, 'free', channel);
      await s.matchmaker.start({ criteria: { slot: i } });
    }
    await waitFor(() => bWarnings.includes('quota_presence_rate'), 'B warned of the presence rate');
    const limit = 20;
    const pressingAtCancel = bStrategy.quotaEstimate() as QuotaEstimate;
    expect(pressingAtCancel.presenceEventsPerSecond).toBeGreaterThanOrEqual(0.8 * limit);
    expect(joinsOfB).toHaveLength(1);

    // D, refused after its 1 s of backoff, joined nothing.
    expect(await d.matchmaker.cancel()).toBe(true);
    const joinsBeforeD = live.counters.snapshot().joins;
    const refused = await d.matchmaker.start({ criteria: { slot: 1 } }).catch((error: unknown) => error);
    expect(isMatchmakingError(refused, 'rate_limited')).toBe(true);
    expect(live.counters.snapshot().joins).toBe(joinsBeforeD);

    // B searches again: held (not joined) until its estimate falls under warnAt, then joins and searches.
    expect(await bMatchmaker.cancel()).toBe(true);
    await bMatchmaker.start({ criteria: { slot: 0 } });
    expect(joinsOfB).toHaveLength(2);
    const atJoin = joinsOfB[1] as QuotaEstimate;
    expect(atJoin.presenceEventsPerSecond).toBeLessThan(0.8 * limit);
    expect(atJoin.joinsPerSecond).toBeLessThan(0.8 * 100);
    expect(bMatchmaker.getSnapshot().status).toBe('searching');

    // The held search is a working one: a partner with the same criteria is matched with B.
    const c = await searcher(live, 'free', channel);
    await c.matchmaker.start({ criteria: { slot: 0 } });
    await waitFor(
      () => bMatchmaker.getSnapshot().status === 'matched' && c.matchmaker.getSnapshot().status === 'matched',
      'B and C matched',
      { timeoutMs: 30_000 },
    );
    const bSnapshot = bMatchmaker.getSnapshot();
    const cSnapshot = c.matchmaker.getSnapshot();
    if (bSnapshot.status !== 'matched' || cSnapshot.status !== 'matched') throw new Error('not matched');
    expect(bSnapshot.match.matchId).toBe(cSnapshot.match.matchId);
  }, 150_000);

  it('a running search whose channel the server stops ends with `cancelled` (rate_limited), not a hang', async () => {
    const live = await start({ plan: { maxEventsPerSecond: 5 } });
    const a = await searcher(live, { plan: 'free' }, 'quota-events');
    const b = await searcher(live, { plan: 'free' }, 'quota-events');
    await a.matchmaker.start({ criteria: { who: 'a' } });
    await b.matchmaker.start({ criteria: { who: 'b' } });
    // Someone floods the channel with broadcasts: once the message rate trips, each channel that receives its
    // next message is stopped with a system error and phx_close.
    const flooder: SupabaseClient = await clientFor(live, (await live.createUser()).id);
    cleanups.push(() => disconnectClient(flooder));
    const channel = flooder.channel('quota-events');
    await new Promise<void>((resolve) => channel.subscribe((status) => status === 'SUBSCRIBED' && resolve()));
    await waitFor(
      async () => {
        for (let i = 0; i < 10; i += 1)
          await channel.send({ type: 'broadcast', event: 'noise', payload: { i } });
        return [a, b].every((s) => s.matchmaker.getSnapshot().status === 'cancelled');
      },
      'both searches cancelled by the server stop',
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    for (const s of [a, b]) {
      expect(s.matchmaker.getSnapshot()).toMatchObject({
        status: 'cancelled',
        reason: 'rate_limited',
        error: { code: 'rate_limited', message: expect.stringMatching(/Too many messages per second/) },
      });
      expect(s.events.filter((e) => e.type === 'cancelled')).toHaveLength(1);
      const state = await live.db.query(
        `select status from matchmaker.presence_searches where user_id = $1`,
        [s.userId],
      );
      expect(state.rows).toEqual([{ status: 'cancelled' }]);
    }
  }, 90_000);
});
