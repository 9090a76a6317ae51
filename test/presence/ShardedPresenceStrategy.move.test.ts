import { randomUUID } from 'node:crypto';
import type { RealtimeChannel } from '@supabase/supabase-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  Matchmaker,
  type MatchmakerEvent,
  ShardedPresenceStrategy,
  type SupabaseLike,
} from '../../src/index';
import type { LocalSupabase } from '../../src/testing/index';
import { recordEvents } from '../conformance/suite';
import { disconnectClient, OwningStrategy, owningMatchmaker } from '../helpers/presenceClients';
import { PresenceObserver } from '../helpers/presenceObserver';
import { startQueueStack } from '../helpers/queueStack';
import { StatusLog, type WireLog, type WireMessage, wireClient } from '../helpers/realtimeWire';
import { createSupabaseClient } from '../helpers/supabaseClient';
import { waitFor } from '../helpers/waitFor';

/**
 * Shard moves at the engine level, against the local stack with unmodified supabase-js. The searcher's
 * Realtime frames are recorded on the wire, so the order of its untrack, its channel leave and its next track
 * is checked as the server would see it. (The local stack drops a left channel's presence at once; the real
 * server answers the `phx_leave` first and drops the presence when the channel process has exited, so only an
 * answered untrack proves the presence is gone.)
 */

let stack: LocalSupabase;
beforeAll(async () => {
  stack = await startQueueStack();
});
afterAll(async () => {
  await stack?.stop();
});
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await Promise.allSettled(cleanups.splice(0).map((cleanup) => cleanup()));
});

let seq = 0;

/** A claim RPC the test holds until it calls `release` (a slow network): the claimer stays committed. */
interface HeldClaim {
  readonly partner: unknown;
  release(): void;
  /** Resolves once the real RPC answered. */
  readonly answered: Promise<void>;
}

/** The searcher under test: a sharded strategy in shard 0 over a wire-recorded client whose claims are held. */
async function recordedSearcher(prefix: string, joinTimeoutMs?: number) {
  const user = await stack.createUser();
  const { supabase: client, wire } = wireClient(stack, { accessToken: async () => user.accessToken });
  const held: HeldClaim[] = [];
  /** Users whose claims are held: the forged pair-mates. */
  const holdFor = new Set<unknown>();
  const supabase: SupabaseLike = {
    rpc: async (fn, args) => {
      if (fn !== 'matchmaker_presence_claim' || !holdFor.has(args?.user_b)) return client.rpc(fn, args);
      let release!: () => void;
      let answered!: () => void;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      held.push({
        partner: args?.user_b,
        release,
        answered: new Promise<void>((resolve) => {
          answered = resolve;
        }),
      });
      await gate;
      try {
        return await client.rpc(fn, args);
      } finally {
        answered();
      }
    },
    channel: (name, options) => client.channel(name, options),
    removeChannel: (channel) => client.removeChannel(channel as RealtimeChannel),
  };
  const strategy = new ShardedPresenceStrategy({
    supabase,
    channelPrefix: prefix,
    shards: 2,
    placement: 'round-robin',
    // No timed rotation in this test: the moves come from "another tab" (see moveElsewhere).
    rotateAfterMs: 600_000,
    settleMs: 0,
    ...(joinTimeoutMs === undefined ? {} : { joinTimeoutMs }),
    environment: { random: () => 0 },
  });
  const matchmaker = new Matchmaker(new OwningStrategy(strategy, () => disconnectClient(client)));
  cleanups.push(() => matchmaker.close());
  return {
    userId: user.id,
    token: user.accessToken,
    wire,
    held,
    holdFor,
    strategy,
    matchmaker,
    events: recordEvents(matchmaker),
  };
}

type Recorded = Awaited<ReturnType<typeof recordedSearcher>>;

/** Our presence pushes (track/untrack) on `topic`, with the wire index of each push and of its reply. */
function presencePushes(wire: WireLog, topic: string) {
  const out: Array<{
    event: string;
    rank?: number;
    sentAt: number;
    answeredAt: number | undefined;
    ok: boolean;
  }> = [];
  wire.frames.forEach((frame, index) => {
    const m = frame.message;
    if (frame.dir !== 'out' || !m || m.topic !== topic || m.event !== 'presence') return;
    const replyIndex = wire.frames.findIndex(
      (f, i) => i > index && f.dir === 'in' && f.message?.event === 'phx_reply' && f.message.ref === m.ref,
    );
    const reply = replyIndex >= 0 ? (wire.frames[replyIndex]?.message as WireMessage) : undefined;
    out.push({
      event: m.payload.event,
      rank: m.payload.payload?.rank_us,
      sentAt: index,
      answeredAt: replyIndex >= 0 ? replyIndex : undefined,
      ok: reply?.payload?.status === 'ok',
    });
  });
  return out;
}

/** Wire index of our first outbound `event` on `topic` (-1 if none). */
function outIndex(wire: WireLog, topic: string, event: string): number {
  return wire.frames.findIndex(
    (f) => f.dir === 'out' && f.message?.topic === topic && f.message.event === event,
  );
}

/** Waits until `count` presence pushes on `topic` are answered ok. */
async function answeredPushes(wire: WireLog, topic: string, count: number, timeoutMs = 15_000) {
  await waitFor(
    () => presencePushes(wire, topic).filter((p) => p.ok).length >= count,
    `${count} answered presence pushes on ${topic}`,
    { timeoutMs },
  );
}

/** A forged searcher present in `channel` (a bare supabase-js client tracking a searcher's payload). */
async function forgedMember(channel: string, rank: number, userId: string) {
  const client = createSupabaseClient(stack);
  const statuses = new StatusLog();
  const ch = client.channel(channel, { config: { presence: { key: '', enabled: true } } });
  ch.subscribe(statuses.callback);
  await statuses.waitFor('SUBSCRIBED');
  expect(await ch.track({ user_id: userId, rank_us: rank, criteria: {} })).toBe('ok');
  const close = async () => {
    await client.removeAllChannels();
    await client.realtime.disconnect();
  };
  cleanups.push(close);
  return {
    userId,
    /** Untrack and leave: the searcher's pair-mate is gone. */
    async leave() {
      expect(await ch.untrack()).toBe('ok');
      await close();
    },
  };
}

/**
 * One pair-mate cycle in shard 0: a forged searcher ranked after ours appears, ours claims it (the claim is
 * held, so ours stays committed), then it leaves, and ours steps aside (untrack) and checks the database.
 * `beforeLeave` runs while the claim is held.
 */
async function mateLeaves(s: Recorded, topic: string, beforeLeave?: () => Promise<void>) {
  const tracks = presencePushes(s.wire, topic).filter((p) => p.event === 'track' && p.ok);
  const ourRank = tracks.at(-1)?.rank as number;
  const mateId = randomUUID();
  s.holdFor.add(mateId);
  const mate = await forgedMember(topic.replace(/^realtime:/, ''), ourRank + 1000, mateId);
  const claimsBefore = s.held.length;
  await waitFor(() => s.held.length > claimsBefore, 'our searcher claims its pair-mate');
  expect(s.held.at(-1)?.partner).toBe(mate.userId);
  await beforeLeave?.();
  await mate.leave();
  return s.held.at(-1) as HeldClaim;
}

/** "Another tab" of the same user moves the search to `target` in the database (as its rotation would). */
async function moveElsewhere(s: Recorded, current: number, target: number) {
  const tab = createSupabaseClient(stack, { accessToken: s.token });
  const { data, error } = await tab.rpc('matchmaker_presence_move', {
    shard_count: 2,
    current_shard: current,
    target_shard: target,
  });
  expect(error).toBeNull();
  expect(data).toMatchObject({ result: 'moved', shard: target });
}

/** A real searcher in shard 1 (and its events). */
async function partnerInShard1(prefix: string) {
  const user = await stack.createUser();
  const { matchmaker } = await owningMatchmaker(
    stack,
    user.id,
    (supabase) =>
      new ShardedPresenceStrategy({
        supabase,
        channelPrefix: prefix,
        shards: 2,
        placement: 'round-robin',
        rotateAfterMs: 600_000,
        settleMs: 0,
        environment: { random: () => 0.99 },
      }),
  );
  cleanups.push(() => matchmaker.close());
  return { userId: user.id, matchmaker, events: recordEvents(matchmaker) };
}

/** Both matched to each other, once each, and one match row. */
async function matchedExactlyOnce(
  a: { userId: string; matchmaker: Matchmaker; events: MatchmakerEvent[] },
  b: { userId: string; matchmaker: Matchmaker; events: MatchmakerEvent[] },
) {
  await waitFor(
    () => a.matchmaker.getSnapshot().status === 'matched' && b.matchmaker.getSnapshot().status === 'matched',
    'both matched',
  );
  const sa = a.matchmaker.getSnapshot();
  const sb = b.matchmaker.getSnapshot();
  if (sa.status !== 'matched' || sb.status !== 'matched') throw new Error('unreachable');
  expect(sa.match.partnerId).toBe(b.userId);
  expect(sb.match.matchId).toBe(sa.match.matchId);
  const rows = await stack.db.query(
    'select id from matchmaker.matches where $1 in (user_a, user_b) or $2 in (user_a, user_b)',
    [a.userId, b.userId],
  );
  expect(rows.rows.map((r) => r.id)).toEqual([sa.match.matchId]);
  expect(a.events.filter((e) => e.type === 'matched')).toHaveLength(1);
  expect(b.events.filter((e) => e.type === 'matched')).toHaveLength(1);
}

describe('ShardedPresenceStrategy: shard moves', () => {
  it('a move made while the presence window is used up waits for it and untracks before leaving the shard', async () => {
    const prefix = `move-window-${seq++}`;
    const [topic0, topic1] = [`realtime:${prefix}:0`, `realtime:${prefix}:1`];
    const observer = await PresenceObserver.start(stack, [`${prefix}:0`, `${prefix}:1`]);
    cleanups.push(() => observer.close());
    const s = await recordedSearcher(prefix);
    await s.matchmaker.start();
    expect(s.strategy.shard).toBe(0);
    await answeredPushes(s.wire, topic0, 1);

    // Two pair-mates leave: each time ours steps aside (untrack) and comes back (track). With its first
    // track that is 5 presence calls in this channel: the 30-s window is used up.
    for (let cycle = 1; cycle <= 2; cycle += 1) {
      const claim = await mateLeaves(s, topic0);
      await answeredPushes(s.wire, topic0, 1 + 2 * cycle);
      claim.release();
      await claim.answered;
    }
    expect(presencePushes(s.wire, topic0).map((p) => p.event)).toEqual([
      'track',
      'untrack',
      'track',
      'untrack',
      'track',
    ]);

    // A third pair-mate leaves just after another tab moved the search to shard 1: ours steps aside and
    // learns of the move from the database, while a sixth presence call would get the channel closed.
    const claim = await mateLeaves(s, topic0, () => moveElsewhere(s, 0, 1));
    await answeredPushes(s.wire, topic1, 1, 60_000);
    claim.release();
    await claim.answered;

    const pushes0 = presencePushes(s.wire, topic0);
    const leave0 = outIndex(s.wire, topic0, 'phx_leave');
    const track1 = presencePushes(s.wire, topic1)[0];
    // The old shard: untracked (and the untrack answered) before the channel was left...
    expect(pushes0.map((p) => p.event)).toEqual(['track', 'untrack', 'track', 'untrack', 'track', 'untrack']);
    const untrack = pushes0.at(-1);
    expect(untrack?.ok).toBe(true);
    expect(leave0).toBeGreaterThan(untrack?.answeredAt as number);
    // ...and the new shard tracked only after both.
    expect(track1?.sentAt).toBeGreaterThan(leave0);
    // The window was respected (the server did not close the channel) and the wait was announced.
    expect(s.wire.messages('in', 0, (m) => m.event === 'system' && m.topic === topic0)).toEqual([]);
    expect(s.events.some((e) => e.type === 'warning' && e.code === 'quota_client_presence')).toBe(true);
    expect(s.events.filter((e) => e.type === 'error' || e.type === 'cancelled')).toEqual([]);
    expect(s.strategy.shard).toBe(1);

    // Nobody stranded, nobody matched twice: a searcher in shard 1 pairs with ours.
    const partner = await partnerInShard1(prefix);
    await partner.matchmaker.start();
    await matchedExactlyOnce(s, partner);
    expect(observer.violations).toEqual([]);
  }, 120_000);

  it('a move made while the room is untracked (stepping aside) goes on to the next shard and matches there', async () => {
    const prefix = `move-untracked-${seq++}`;
    const [topic0, topic1] = [`realtime:${prefix}:0`, `realtime:${prefix}:1`];
    const observer = await PresenceObserver.start(stack, [`${prefix}:0`, `${prefix}:1`]);
    cleanups.push(() => observer.close());
    const s = await recordedSearcher(prefix);
    await s.matchmaker.start();
    await answeredPushes(s.wire, topic0, 1);

    // The pair-mate leaves after another tab moved the search: ours untracks (stepping aside), and the
    // database's answer moves it while it is untracked.
    const claim = await mateLeaves(s, topic0, () => moveElsewhere(s, 0, 1));
    await answeredPushes(s.wire, topic1, 1);
    claim.release();
    await claim.answered;

    const pushes0 = presencePushes(s.wire, topic0);
    expect(pushes0.map((p) => p.event)).toEqual(['track', 'untrack']);
    const leave0 = outIndex(s.wire, topic0, 'phx_leave');
    expect(leave0).toBeGreaterThan(pushes0[1]?.answeredAt as number);
    expect(presencePushes(s.wire, topic1)[0]?.sentAt).toBeGreaterThan(leave0);
    expect(s.events.filter((e) => e.type === 'error' || e.type === 'cancelled')).toEqual([]);
    expect(s.matchmaker.getSnapshot().status).toBe('searching');
    expect(s.strategy.shard).toBe(1);

    const partner = await partnerInShard1(prefix);
    await partner.matchmaker.start();
    await matchedExactlyOnce(s, partner);
    expect(observer.violations).toEqual([]);
  });

  it('a step-aside with the presence window used up keeps the presence instead of untracking up to 30 s late', async () => {
    const prefix = `aside-window-${seq++}`;
    const topic0 = `realtime:${prefix}:0`;
    // A long join timeout bounds nothing here: a step-aside waits for its untrack as long as the untrack waits.
    const s = await recordedSearcher(prefix, 120_000);
    await s.matchmaker.start();
    await answeredPushes(s.wire, topic0, 1);
    for (let cycle = 1; cycle <= 2; cycle += 1) {
      const claim = await mateLeaves(s, topic0);
      await answeredPushes(s.wire, topic0, 1 + 2 * cycle);
      claim.release();
      await claim.answered;
    }
    // The window is used up. A third pair-mate leaves: an untrack now would be the 6th call in 30 s.
    const third = await mateLeaves(s, topic0);
    third.release();
    await third.answered;
    // Then a fourth searcher arrives. Ours must be present, and pairing, not stepped aside behind an untrack
    // queued for the window: either it claims the newcomer, or its late untrack goes out first.
    const ourRank = presencePushes(s.wire, topic0)
      .filter((p) => p.event === 'track')
      .at(-1)?.rank as number;
    const fourthId = randomUUID();
    s.holdFor.add(fourthId);
    await forgedMember(`${prefix}:0`, ourRank + 1000, fourthId);
    const seen = await waitFor(
      () =>
        presencePushes(s.wire, topic0).length > 5
          ? 'untrack'
          : s.held.some((claim) => claim.partner === fourthId)
            ? 'claim'
            : undefined,
      'a claim of the newcomer or a sixth presence call',
      { timeoutMs: 60_000 },
    );
    expect(seen).toBe('claim');
    expect(presencePushes(s.wire, topic0).map((p) => p.event)).toEqual([
      'track',
      'untrack',
      'track',
      'untrack',
      'track',
    ]);
    s.held.at(-1)?.release();
    expect(s.events.filter((e) => e.type === 'error' || e.type === 'cancelled')).toEqual([]);
  }, 120_000);
});
