/**
 * The code snippets of docs/presence.md and docs/choosing-a-tier.md, kept here so `npm run typecheck` checks
 * them. Each function holds one snippet, copied into the guide as it stands here (minus the function wrapper).
 */
import type { SupabaseClient } from '@supabase/supabase-js';
import {
  createMatchmaker,
  isMatchmakingError,
  Matchmaker,
  maxMatchesPerSecond,
  PRESENCE_PLAN_LIMITS,
  ShardedPresenceStrategy,
} from 'supabase-matchmaker';

declare const supabase: SupabaseClient;
declare function openChat(matchId: string, partnerId: string): void;
declare function showBanner(text: string): void;

/** docs/presence.md "Use". */
export async function presenceQuickStart() {
  const matchmaker = createMatchmaker({ strategy: 'presence', supabase, quota: 'free' });
  matchmaker.on('matched', ({ match }) => openChat(match.matchId, match.partnerId));
  matchmaker.on('warning', ({ code, message }) => console.warn(code, message));
  try {
    await matchmaker.start({ criteria: { language: 'en' } });
  } catch (error) {
    if (isMatchmakingError(error, 'rate_limited')) showBanner('Busy right now, try again in a minute.');
    else throw error;
  }
}

/** docs/presence.md "Use": the sharded tier with every option at its default, written out. */
export function shardedWithDefaults() {
  return createMatchmaker({
    strategy: 'sharded-presence',
    supabase,
    shards: 50,
    channelPrefix: 'buddy-match',
    rotateAfterMs: 5000,
    placement: 'directed',
    settleMs: 200,
    stickyMs: 5000,
    staleBackoffMs: 5000,
    joinTimeoutMs: 15_000,
  });
}

/** docs/presence.md "The quota guard". */
export function quotaGuarded() {
  return createMatchmaker({
    strategy: 'sharded-presence',
    supabase,
    quota: { plan: 'pro', warnAt: 0.7, onExceed: 'backoff', maxBackoffMs: 10_000 },
  });
}

/** docs/presence.md "Counters and estimates": the strategy class directly, for its accessors. */
export function withStrategyObject() {
  const strategy = new ShardedPresenceStrategy({ supabase, quota: 'free' });
  const matchmaker = new Matchmaker(strategy);
  // strategy.shard: the shard the running search is in; strategy.stats: claims, moves, reconciliations;
  // strategy.quotaEstimate(): the guard's current view of the project's Realtime load.
  return { matchmaker, strategy };
}

/** docs/presence.md "Limits": the formula of docs/presence-capacity.md, for your own plan and numbers. */
export function capacity() {
  // 200 searchers over 50 shards on the Free plan: 1 match/s (docs/presence-capacity.md, Free table).
  return maxMatchesPerSecond(PRESENCE_PLAN_LIMITS.free, 200, 50);
}

/** docs/choosing-a-tier.md "Switching tier": one line of config each. */
export function switching() {
  const presence = createMatchmaker({ strategy: 'presence', supabase });
  const sharded = createMatchmaker({ strategy: 'sharded-presence', supabase });
  const queue = createMatchmaker({ strategy: 'queue', supabase });
  const service = createMatchmaker({
    strategy: 'service',
    url: 'wss://match.example.com',
    getAccessToken: async () => (await supabase.auth.getSession()).data.session?.access_token,
  });
  return [presence, sharded, queue, service];
}
