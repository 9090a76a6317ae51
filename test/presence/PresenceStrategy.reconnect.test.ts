import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  Matchmaker,
  type MatchmakerEvent,
  type MatchmakingStrategy,
  PresenceStrategy,
  ShardedPresenceStrategy,
  type SupabaseLike,
} from '../../src/index';
import type { LocalSupabase } from '../../src/testing/index';
import { recordEvents } from '../conformance/suite';
import { type DroppableClient, droppableClient } from '../helpers/droppableClient';
import { OwningStrategy } from '../helpers/presenceClients';
import { startQueueStack } from '../helpers/queueStack';
import { waitFor } from '../helpers/waitFor';

let stack: LocalSupabase;
beforeAll(async () => {
  stack = await startQueueStack();
});
afterAll(async () => {
  await stack?.stop();
});
const open: Matchmaker[] = [];
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((m) => m.close()));
});

interface Searcher {
  readonly userId: string;
  readonly client: DroppableClient;
  readonly matchmaker: Matchmaker;
  readonly events: MatchmakerEvent[];
}

let channelSeq = 0;

/** A searcher on a droppable client; `wrap` may intercept its RPCs. */
async function searcher(
  channel: string,
  make: (supabase: SupabaseLike) => MatchmakingStrategy = (supabase) =>
    new PresenceStrategy({ supabase, channel, settleMs: 50 }),
  wrap?: (client: DroppableClient, rpc: SupabaseLike['rpc']) => SupabaseLike['rpc'],
): Promise<Searcher> {
  const userId = (await stack.createUser()).id;
  const client = await droppableClient(stack, userId);
  const base = client.supabase;
  const rpc: SupabaseLike['rpc'] = (fn, args) => base.rpc(fn, args);
  const supabase: SupabaseLike = {
    rpc: wrap ? wrap(client, rpc) : rpc,
    channel: (name, options) => base.channel(name, options),
    removeChannel: (ch) => base.removeChannel(ch as Parameters<typeof base.removeChannel>[0]),
  };
  const matchmaker = new Matchmaker(new OwningStrategy(make(supabase), () => client.close()));
  open.push(matchmaker);
  return { userId, client, matchmaker, events: recordEvents(matchmaker) };
}

const matchedOnce = (s: Searcher) => s.events.filter((e) => e.type === 'matched');

async function bothMatched(a: Searcher, b: Searcher) {
  await waitFor(
    () => a.matchmaker.getSnapshot().status === 'matched' && b.matchmaker.getSnapshot().status === 'matched',
    'both matched',
  );
  const [ma, mb] = [a.matchmaker.getSnapshot(), b.matchmaker.getSnapshot()];
  if (ma.status !== 'matched' || mb.status !== 'matched') throw new Error('unreachable');
  expect(ma.match.matchId).toBe(mb.match.matchId);
  expect(ma.match.partnerId).toBe(b.userId);
  const rows = await stack.db.query(
    'select id from matchmaker.matches where $1 in (user_a, user_b) or $2 in (user_a, user_b)',
    [a.userId, b.userId],
  );
  expect(rows.rows.map((r) => r.id)).toEqual([ma.match.matchId]);
  return ma.match.matchId;
}

describe('presence tiers across socket drops', () => {
  it('mid-search: rejoins, re-tracks and is matched exactly once', async () => {
    const channel = `drop-search-${channelSeq++}`;
    const a = await searcher(channel);
    await a.matchmaker.start();
    a.client.drop();
    await waitFor(
      () => a.events.some((e) => e.type === 'error' && !e.fatal),
      'the drop reported as a recoverable error',
    );
    const b = await searcher(channel);
    await b.matchmaker.start();
    await bothMatched(a, b);
    expect(a.client.sockets.length).toBeGreaterThan(1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(matchedOnce(a)).toHaveLength(1);
    expect(matchedOnce(b)).toHaveLength(1);
  });

  it('a match made while the socket is down is delivered after the reconnect', async () => {
    const channel = `drop-offline-${channelSeq++}`;
    const a = await searcher(channel);
    const b = await searcher(channel); // only its client is used: b claims through the RPC directly
    await a.matchmaker.start();
    const socketsBefore = a.client.sockets.length;
    a.client.drop();
    // While a is offline (the notification to it is lost), b opens a search and claims a.
    const bRow = await b.client.supabase.rpc('matchmaker_presence_begin', { criteria: {} });
    expect(bRow.error).toBeNull();
    const claim = await b.client.supabase.rpc('matchmaker_presence_claim', {
      user_a: a.userId,
      user_b: b.userId,
    });
    expect(claim.data).toMatchObject({ result: 'claimed' });
    const matchId = (claim.data as { match: { id: string } }).match.id;
    await waitFor(
      () => a.matchmaker.getSnapshot().status === 'matched',
      'a learns its match after reconnecting',
    );
    expect(a.client.sockets.length).toBeGreaterThan(socketsBefore);
    expect(a.matchmaker.getSnapshot()).toMatchObject({ match: { matchId, partnerId: b.userId } });
    expect(matchedOnce(a)).toHaveLength(1);
  });

  it('mid-claim: the claimer and its partner lose their sockets as the claim commits; one match, both told', async () => {
    const channel = `drop-claim-${channelSeq++}`;
    let partner: Searcher | undefined;
    let dropped = 0;
    const a = await searcher(channel, undefined, (client, rpc) => async (fn, args) => {
      if (fn === 'matchmaker_presence_claim' && dropped === 0) {
        dropped += 1;
        client.drop();
        partner?.client.drop();
      }
      return rpc(fn, args);
    });
    await a.matchmaker.start(); // older: a claims
    partner = await searcher(channel);
    await partner.matchmaker.start();
    await bothMatched(a, partner);
    expect(dropped).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(matchedOnce(a)).toHaveLength(1);
    expect(matchedOnce(partner)).toHaveLength(1);
  });

  it('mid-claim: the claim commits but its answer is lost; the claimer reconciles instead of claiming again', async () => {
    const channel = `lost-answer-${channelSeq++}`;
    let claims = 0;
    const a = await searcher(channel, undefined, (_client, rpc) => async (fn, args) => {
      const response = await rpc(fn, args);
      if (fn !== 'matchmaker_presence_claim') return response;
      claims += 1;
      if (claims === 1) throw new TypeError('fetch failed');
      return response;
    });
    await a.matchmaker.start();
    const b = await searcher(channel);
    await b.matchmaker.start();
    await bothMatched(a, b);
    expect(claims).toBe(1);
    expect(a.events.some((e) => e.type === 'error' && !e.fatal)).toBe(true);
  });

  it('sharded: a dropped socket rejoins, re-tracks, and the match still happens once', async () => {
    const prefix = `drop-shard-${channelSeq++}`;
    const make = (supabase: SupabaseLike) =>
      new ShardedPresenceStrategy({
        supabase,
        channelPrefix: prefix,
        shards: 3,
        rotateAfterMs: 300,
        settleMs: 50,
      });
    const a = await searcher('', make);
    await a.matchmaker.start();
    a.client.drop();
    const b = await searcher('', make);
    await b.matchmaker.start();
    await bothMatched(a, b);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(matchedOnce(a)).toHaveLength(1);
    expect(matchedOnce(b)).toHaveLength(1);
  });
});
