/**
 * Pieces of the presence benchmark shared by the bench process and its client children
 * (`bench/lib/presenceClientsChild.ts`): the fetch gate, the design's race-everyone baseline strategy, and the
 * construction of one searcher (an unmodified supabase-js client + {@link Matchmaker}).
 *
 * @packageDocumentation
 */
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { Matchmaker } from '../../src/core/Matchmaker';
import type { MatchmakingStrategy } from '../../src/core/MatchmakingStrategy';
import { PresenceStrategy } from '../../src/strategies/presence/PresenceStrategy';
import { ShardedPresenceStrategy } from '../../src/strategies/sharded-presence/ShardedPresenceStrategy';
import type { RealtimeChannelLike } from '../../src/strategies/supabaseLike';

/** Epoch ms (`performance.timeOrigin + performance.now()`), comparable across processes on one machine. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Which rule the run's searchers follow. */
export type Design = 'deterministic' | 'race-everyone';

export interface Layout {
  readonly channel: string;
  /** Sharded: shard count (channels `<channel>:<i>`). */
  readonly shards?: number;
}

/** Claims a run's race-everyone clients may still send (shared by all of them). */
export interface ClaimBudget {
  remaining: number;
  exhausted: boolean;
}

/** The design's v1 / v1.5 client, as the design describes it. Baseline only. */
export class RaceEveryoneStrategy implements MatchmakingStrategy {
  readonly kind: 'presence' | 'sharded-presence';
  #channel: RealtimeChannelLike | undefined;
  #rotation: ReturnType<typeof setInterval> | undefined;
  #done = false;
  #userId = '';
  #payload: Record<string, unknown> = {};
  #shard = 0;
  /** Claims this client sent (counted when sent, like {@link PresenceStrategy.stats}). */
  claims = 0;

  constructor(
    private readonly supabase: SupabaseClient,
    private readonly layout: Layout,
    private readonly budget: ClaimBudget,
  ) {
    this.kind = layout.shards ? 'sharded-presence' : 'presence';
  }

  async search(
    search: Parameters<MatchmakingStrategy['search']>[0],
    listener: Parameters<MatchmakingStrategy['search']>[1],
  ) {
    const begun = await this.supabase.rpc('matchmaker_presence_begin', {
      criteria: search.criteria,
      search_id: search.searchId,
    });
    if (begun.error) throw new Error(begun.error.message);
    const state = begun.data as { user_id: string; search: { started_us: number } };
    this.#userId = state.user_id;
    this.#payload = { user_id: state.user_id, rank_us: state.search.started_us, criteria: search.criteria };
    const shards = this.layout.shards;
    this.#shard = shards ? Math.floor(Math.random() * shards) : 0;
    await this.#join(search.searchId, listener);
    if (shards) {
      // v1.5: "if no match found in 5 seconds, leave current shard and join another (round-robin)".
      this.#rotation = setInterval(() => {
        if (this.#done) return;
        this.#shard = (this.#shard + 1) % shards;
        void this.#leave().then(() => this.#join(search.searchId, listener));
      }, 5000);
    }
    return { status: 'searching' as const };
  }

  async #join(searchId: string, listener: Parameters<MatchmakingStrategy['search']>[1]): Promise<void> {
    if (this.#done) return;
    const name = this.layout.shards ? `${this.layout.channel}:${this.#shard}` : this.layout.channel;
    const channel = this.supabase.channel(name, { config: { presence: { key: '' } } });
    this.#channel = channel;
    const me = this.#userId;
    const myRank = this.#payload.rank_us as number;
    const finish = (match: { id: string; partner_id: string; created_at: string }) => {
      if (this.#done) return;
      this.#done = true;
      void this.#leave();
      const userIds = (me < match.partner_id ? [me, match.partner_id] : [match.partner_id, me]) as [
        string,
        string,
      ];
      listener.matched(searchId, {
        match: { matchId: match.id, userIds, createdAt: match.created_at, strategy: this.kind, criteria: {} },
        userId: me,
      });
    };
    channel
      .on('presence', { event: 'join' }, (payload) => {
        // "When user B joins, user A (already present) gets a join event and calls create_buddy_match(A, B)".
        for (const meta of payload.newPresences) {
          const other = meta.user_id;
          if (typeof other !== 'string' || other === me || this.#done) continue;
          // A is present, B is the newcomer: only searches that began after ours are ours to claim (the
          // join events supabase-js raises for the members already there when we subscribe are not).
          if (!(typeof meta.rank_us === 'number' && meta.rank_us > myRank)) continue;
          if (this.budget.remaining <= 0) {
            this.budget.exhausted = true;
            continue;
          }
          this.budget.remaining -= 1;
          this.claims += 1;
          void this.supabase
            .rpc('matchmaker_presence_claim', { user_a: me, user_b: other })
            .then(({ data }) => {
              const r = data as {
                result?: string;
                match?: { id: string; partner_id: string; created_at: string };
              } | null;
              if (r?.result === 'claimed' && r.match) {
                // "User A broadcasts buddy-matched": everyone in the channel receives it.
                void channel.send({
                  type: 'broadcast',
                  event: 'buddy-matched',
                  payload: { to: other, match: { ...r.match, partner_id: me } },
                });
                finish(r.match);
              }
            });
        }
      })
      .on('broadcast', { event: 'buddy-matched' }, (message) => {
        const p = message.payload as {
          to?: string;
          match?: { id: string; partner_id: string; created_at: string };
        };
        if (p.to === me && p.match) finish(p.match);
      });
    await new Promise<void>((resolve) => {
      channel.subscribe((status) => {
        if (status === 'SUBSCRIBED') {
          void channel.track(this.#payload).then(() => resolve());
        }
      });
    });
  }

  async #leave(): Promise<void> {
    const channel = this.#channel;
    this.#channel = undefined;
    if (channel) await this.supabase.removeChannel(channel as Parameters<SupabaseClient['removeChannel']>[0]);
  }

  async cancel() {
    this.#done = true;
    await this.close();
    return { status: 'cancelled' as const };
  }

  async close() {
    this.#done = true;
    if (this.#rotation) clearInterval(this.#rotation);
    await this.#leave();
  }
}

/**
 * All clients of the benchmark share one process, so their HTTP sockets and the stack's (both ends of every
 * connection) count against one open-file limit. Node's fetch opens a new connection for every concurrent
 * request; 5,000 clients starting within a second would open thousands at once and, with 2 x 5,000 WebSocket
 * ends, pass the 20,000 open files. Capping the requests in flight across all clients at this many bounds
 * the sockets; requests above the cap wait here (first in, first out) instead of in the stack's queue for one
 * of its 10 database connections: it changes where they wait, not how long.
 */
export const FETCH_CONCURRENCY = 512;

/** One fetch gate shared by every client of the benchmark, with a count of the requests that failed. */
export class FetchGate {
  constructor(private readonly concurrency: number) {}
  #running = 0;
  failures = 0;
  /** The first failures' messages (at most 3). */
  readonly errors: string[] = [];
  /** Requests waiting for a slot (not sent yet). */
  get queued(): number {
    return this.#waiting.length;
  }
  /** Requests sent and not answered yet, and the age of the oldest (ms). */
  readonly #sentAt = new Set<number>();
  get running(): { count: number; oldestMs: number } {
    let oldest = Number.POSITIVE_INFINITY;
    for (const at of this.#sentAt) oldest = Math.min(oldest, at);
    return {
      count: this.#sentAt.size,
      oldestMs: this.#sentAt.size > 0 ? Math.round(performance.now() - oldest) : 0,
    };
  }
  /** Drops every waiting request (it fails without reaching the stack). */
  dropQueued(): number {
    const dropped = this.#waiting.splice(0);
    for (const wake of dropped) wake(false);
    return dropped.length;
  }
  readonly #waiting: ((go: boolean) => void)[] = [];
  readonly fetch: typeof fetch = async (input, init) => {
    if (this.#running >= this.concurrency) {
      const go = await new Promise<boolean>((resolve) => this.#waiting.push(resolve));
      if (!go) throw new Error('dropped at the end of the benchmark run');
    } else {
      this.#running += 1;
    }
    const sentAt = performance.now() + Math.random() * 1e-6;
    this.#sentAt.add(sentAt);
    try {
      return await fetch(input, init);
    } catch (error) {
      this.failures += 1;
      if (this.errors.length < 3) {
        const cause = (error as { cause?: unknown }).cause;
        this.errors.push(`${String(error)}${cause === undefined ? '' : ` (cause: ${String(cause)})`}`);
      }
      throw error;
    } finally {
      this.#sentAt.delete(sentAt);
      const next = this.#waiting.shift();
      if (next) next(true);
      else this.#running -= 1;
    }
  };
}

/** One searcher of a run: its client, its strategy and its matchmaker. */
export interface Searcher {
  readonly supabase: SupabaseClient;
  readonly matchmaker: Matchmaker;
  /** Set for the deterministic rule. */
  readonly ours: PresenceStrategy | ShardedPresenceStrategy | undefined;
  /** Set for the race-everyone baseline. */
  readonly baseline: RaceEveryoneStrategy | undefined;
}

/** Create one searcher: an unmodified supabase-js client (its requests through `gate`) and its matchmaker. */
export function createSearcher(
  stack: { readonly url: string; readonly anonKey: string },
  token: string,
  design: Design,
  layout: Layout,
  budget: ClaimBudget,
  gate: FetchGate,
): Searcher {
  const supabase = createClient(stack.url, stack.anonKey, {
    realtime: { transport: WebSocket as unknown as typeof globalThis.WebSocket },
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: { fetch: gate.fetch },
    accessToken: async () => token,
  });
  const shards = layout.shards;
  const strategy: PresenceStrategy | ShardedPresenceStrategy | RaceEveryoneStrategy =
    design === 'race-everyone'
      ? new RaceEveryoneStrategy(supabase, layout, budget)
      : shards
        ? new ShardedPresenceStrategy({
            supabase,
            shards,
            channelPrefix: layout.channel,
            joinTimeoutMs: 120_000,
          })
        : new PresenceStrategy({ supabase, channel: layout.channel, joinTimeoutMs: 120_000 });
  return {
    supabase,
    matchmaker: new Matchmaker(strategy),
    ours: strategy instanceof RaceEveryoneStrategy ? undefined : strategy,
    baseline: strategy instanceof RaceEveryoneStrategy ? strategy : undefined,
  };
}
