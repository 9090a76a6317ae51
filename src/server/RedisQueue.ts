import type { Cluster, Redis } from 'ioredis';
import type { SearchCriteria } from '../core/types';
import type { ServiceEndReason } from '../strategies/service/protocol';
import { type ChainStep, type KeySpace, type WideningOptions, wideningChain } from './keys';
import { LuaErrorCode, type LuaScript } from './lua/luaTypes';
import { luaScripts } from './lua/scripts.generated';
import type { MatchPersister } from './MatchPersister';
import type { RateLimit } from './RateLimiter';

/** An ioredis client for a single Redis or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

/** A match as the Lua scripts record it (stream entries and pub/sub messages carry this JSON). */
export interface StoredMatch {
  readonly matchId: string;
  /** The users, the one who waited longer first. */
  readonly userIds: readonly [string, string];
  readonly ticketIds: readonly [string, string];
  /** When each ticket was enqueued (Redis time, ms), in the order of `userIds`. */
  readonly enqueuedAtMs: readonly [number, number];
  /** Redis time of the pairing, in ms. */
  readonly createdAtMs: number;
  /** Criteria of the pool the match was made in. */
  readonly criteria: SearchCriteria;
}

/** A ticket ended without a match by a script call. */
export interface EndedTicket {
  readonly ticketId: string;
  readonly userId: string;
  readonly reason: ServiceEndReason;
}

/** What a script call changed besides its own answer. */
export interface QueueEffects {
  readonly made: readonly StoredMatch[];
  readonly ended: readonly EndedTicket[];
}

/** A ticket's state as a script reports it. */
export type TicketState =
  | { readonly state: 'waiting' }
  | { readonly state: 'matched'; readonly match: StoredMatch }
  | { readonly state: 'ended'; readonly reason: ServiceEndReason; readonly by: string };

/** Answer of {@link RedisQueue.enqueue}. */
export type EnqueueResult =
  | { readonly status: 'not_found' }
  | { readonly status: 'not_owner' }
  | ({
      readonly status: 'ok';
      /** Enqueue time (Redis ms). */
      readonly c0: number;
      /** Criteria the search was made with (level 0 of its chain). */
      readonly criteria: SearchCriteria;
      readonly effects: QueueEffects;
    } & { readonly ticket: TicketState });

/** Answer of {@link RedisQueue.cancel}. */
export type CancelResult =
  | { readonly status: 'cancelled' }
  | { readonly status: 'matched'; readonly match: StoredMatch }
  | { readonly status: 'not_searching'; readonly reason: ServiceEndReason | undefined }
  | { readonly status: 'not_owner' };

/** Answer of {@link RedisQueue.claim}: the reservation, or `rate_limited` (the shared join limit is used up). */
export type ClaimAnswer = ClaimResult | { readonly status: 'rate_limited' };

/**
 * Answer of {@link RedisQueue.join}: `rate_limited`; the claim of a ticket the user already had (`created:
 * false`: follow it with {@link RedisQueue.enqueue}); or the fresh ticket, claimed and enqueued.
 */
export type JoinAnswer =
  | { readonly status: 'rate_limited' }
  | (ClaimResult & { readonly created: false })
  | (ClaimResult & {
      readonly created: true;
      readonly enqueued: Extract<EnqueueResult, { status: 'ok' }>;
    });

/** A reservation made (or found) by {@link RedisQueue.claim}. */
export interface ClaimResult {
  readonly status: 'ok';
  /** True when the given ticket id was reserved; false when the user already had a ticket (returned). */
  readonly created: boolean;
  readonly ticketId: string;
  readonly criteria: SearchCriteria;
  /** Enqueue time (Redis ms). */
  readonly c0: number;
}

/** Options of {@link RedisQueue}. */
export interface RedisQueueOptions {
  readonly redis: RedisClient;
  readonly keys: KeySpace;
  readonly ticketTtlMs: number;
  readonly endedRetentionMs: number;
  readonly resumeGraceMs: number;
  readonly widening: WideningOptions | undefined;
  /** Extra lifetime of a user record beyond its ticket's. */
  readonly userRecordSlackMs: number;
  /** Most matches one script call makes. */
  readonly pairLimit: number;
  /** Append every match to its bucket's stream for {@link MatchPersister} (all nodes must agree). */
  readonly recordMatches: boolean;
}

const END_REASONS = new Set<string>([
  'user',
  'expired',
  'disconnected',
  'superseded',
  'rate_limited',
  'error',
]);

function asReason(value: unknown): ServiceEndReason {
  return typeof value === 'string' && END_REASONS.has(value) ? (value as ServiceEndReason) : 'error';
}

/** Parse a match JSON written by the Lua scripts. */
export function parseStoredMatch(json: string): StoredMatch {
  return freezeStoredMatch(JSON.parse(json) as StoredMatch);
}

/** A frozen, normalised copy of a match object parsed from the scripts' JSON. */
export function freezeStoredMatch(raw: StoredMatch): StoredMatch {
  return Object.freeze({
    matchId: raw.matchId,
    userIds: Object.freeze([raw.userIds[0], raw.userIds[1]]) as readonly [string, string],
    ticketIds: Object.freeze([raw.ticketIds[0], raw.ticketIds[1]]) as readonly [string, string],
    enqueuedAtMs: Object.freeze([Number(raw.enqueuedAtMs[0]), Number(raw.enqueuedAtMs[1])]) as readonly [
      number,
      number,
    ],
    createdAtMs: Number(raw.createdAtMs),
    criteria: Object.freeze({ ...raw.criteria }),
  });
}

function parseEffects(made: unknown, ended: unknown): QueueEffects {
  const matches = Array.isArray(made) ? made.map((json) => parseStoredMatch(String(json))) : [];
  const endings = Array.isArray(ended)
    ? ended.map((entry) => {
        const [ticketId, userId, reason] = entry as [string, string, string];
        return { ticketId, userId, reason: asReason(reason) };
      })
    : [];
  return { made: matches, ended: endings };
}

function parseState(state: unknown, detail: unknown, by: unknown): TicketState {
  if (state === 'waiting') return { state: 'waiting' };
  if (state === 'matched') return { state: 'matched', match: parseStoredMatch(String(detail)) };
  return { state: 'ended', reason: asReason(detail), by: typeof by === 'string' ? by : '' };
}

function parseCriteria(json: string): SearchCriteria {
  try {
    return Object.freeze(JSON.parse(json) as SearchCriteria);
  } catch {
    return Object.freeze({});
  }
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/**
 * The matchmaking queue in Redis: a typed wrapper over the Lua scripts (one per atomic operation) and the few
 * plain commands around them (user-record release, node registry, sweeper lease).
 *
 * @remarks
 * Every script touches one bucket's slot (or one user's), so this works unchanged on a single Redis and on a
 * Redis Cluster. Scripts run with EVALSHA and fall back to EVAL after a Redis restart emptied the script cache.
 */
export class RedisQueue {
  readonly #redis: RedisClient;
  readonly #keys: KeySpace;
  readonly #options: RedisQueueOptions;
  /**
   * True on a standalone Redis (the client is not a Cluster): a join is one script call ({@link RedisQueue.join}),
   * and the scripts that pair or end tickets release their users' records themselves. On a Cluster the user
   * record and the ticket live in different slots: claim, enqueue and release are separate calls.
   */
  readonly oneScriptJoins: boolean;
  /**
   * True on a Redis Cluster when a user record cannot outlive its ticket's retained state (`ticketTtlMs` plus the
   * record's slack at most `endedRetentionMs`): the user records of matched and ended tickets are not released
   * eagerly (2 script calls per match saved). A stale record is replaced by the user's next claim through the node
   * that delivered the end ({@link RedisQueue.claim}'s `endedTicketId`), or repaired by any other node (the ticket it
   * names is read, found ended, and the record released). With a longer ticket lifetime the record could name a
   * ticket whose state has expired, so records are released eagerly then.
   */
  readonly lazyRelease: boolean;

  constructor(options: RedisQueueOptions) {
    this.#redis = options.redis;
    this.oneScriptJoins = !options.redis.isCluster;
    this.lazyRelease =
      !this.oneScriptJoins && options.ticketTtlMs + options.userRecordSlackMs <= options.endedRetentionMs;
    this.#keys = options.keys;
    this.#options = options;
  }

  /** The key layout. */
  get keys(): KeySpace {
    return this.#keys;
  }

  /** The widening chain (pools) of a search with these criteria. */
  chainOf(criteria: SearchCriteria): ChainStep[] {
    return wideningChain(criteria, this.#options.widening);
  }

  async #run(
    script: LuaScript,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    if (keys.length !== script.numberOfKeys) {
      throw new Error(`${script.name} takes ${script.numberOfKeys} keys, got ${keys.length}`);
    }
    try {
      return await this.#redis.evalsha(script.sha1, script.numberOfKeys, ...keys, ...args);
    } catch (error) {
      if (!isNoScript(error)) throw error;
      return await this.#redis.eval(script.lua, script.numberOfKeys, ...keys, ...args);
    }
  }

  /**
   * Reserve `ticketId` as the user's open ticket, or learn the ticket the user already has.
   *
   * @param c0 - Enqueue time to record (to re-create a ticket lost with Redis data); default Redis time.
   * @param limit - Take a token from the user's join limit shared by all nodes (in the same script call).
   * @param endedTicketId - A ticket of the user known to have ended: a record still naming it is replaced.
   */
  async claim(
    userId: string,
    ticketId: string,
    criteria: SearchCriteria,
    c0?: number,
    limit?: RateLimit,
    endedTicketId?: string,
  ): Promise<ClaimAnswer> {
    const reply = (await this.#run(
      luaScripts.claimUser,
      [this.#keys.user(userId), this.#keys.userJoinLimit(userId)],
      [
        ticketId,
        JSON.stringify(criteria),
        c0 === undefined ? '' : String(c0),
        this.#options.ticketTtlMs,
        this.#options.userRecordSlackMs,
        limit?.perSecond ?? 0,
        limit?.burst ?? 0,
        endedTicketId ?? '',
      ],
    )) as [number, string, string, string] | number;
    if (reply === LuaErrorCode.RateLimited) return { status: 'rate_limited' };
    if (typeof reply === 'number') throw new Error(`claimUser answered ${reply}`);
    return {
      status: 'ok',
      created: reply[0] === 1,
      ticketId: reply[1],
      criteria: parseCriteria(reply[2]),
      c0: Number(reply[3]),
    };
  }

  /** Forget the user's open ticket if it is still `ticketId`. */
  async release(userId: string, ticketId: string): Promise<boolean> {
    return (await this.#run(luaScripts.releaseUser, [this.#keys.user(userId)], [ticketId])) === 1;
  }

  #bucketOf(ticketId: string): number {
    const bucket = this.#keys.bucketOfTicket(ticketId);
    if (bucket === undefined) throw new Error(`ticket ${ticketId} is not in a bucket of this deployment`);
    return bucket;
  }

  #ticketKeys(ticketId: string): [number, string[]] {
    const bucket = this.#bucketOf(ticketId);
    const k = this.#keys;
    return [
      bucket,
      [
        k.ticket(bucket, ticketId),
        k.watchers(bucket, ticketId),
        k.pools(bucket),
        k.expiries(bucket),
        k.widenings(bucket),
        k.orphans(bucket),
      ],
    ];
  }

  /**
   * Put the ticket in its pool (creating it when `create` and absent), add `nodeId` as a watcher, and pair.
   * Releases the user records of the tickets this call matched or ended. The matches it makes are not published
   * to `nodeId`: the caller delivers them from `effects.made`.
   */
  async enqueue(
    ticket: {
      readonly ticketId: string;
      readonly userId: string;
      readonly c0: number;
      readonly criteria: SearchCriteria;
    },
    options: { readonly nodeId: string; readonly create: boolean },
  ): Promise<EnqueueResult> {
    const [bucket, keys] = this.#ticketKeys(ticket.ticketId);
    const o = this.#options;
    const reply = await this.#run(
      luaScripts.enqueueTicket,
      [...keys, this.#keys.matchStream(bucket), this.#keys.nodeIndex(bucket, options.nodeId)],
      [
        this.#keys.base(bucket),
        ticket.ticketId,
        ticket.userId,
        ticket.c0,
        JSON.stringify(this.chainOf(ticket.criteria)),
        options.nodeId,
        options.create ? '1' : '0',
        o.ticketTtlMs,
        o.widening?.afterMs ?? 0,
        o.endedRetentionMs,
        this.#keys.channelPrefix(),
        o.pairLimit,
        o.recordMatches ? '1' : '0',
        // On a standalone Redis the ticket names its user record, so that joinTicket can release it.
        this.oneScriptJoins ? this.#keys.user(ticket.userId) : '',
      ],
    );
    const result = this.#parseEnqueue(reply, ticket);
    if (result.status === 'ok') await this.#settle(result.effects);
    return result;
  }

  #parseEnqueue(
    reply: unknown,
    ticket: { readonly c0: number; readonly criteria: SearchCriteria },
  ): EnqueueResult {
    if (reply === LuaErrorCode.TicketNotFound) return { status: 'not_found' };
    if (reply === LuaErrorCode.NotOwner) return { status: 'not_owner' };
    const [state, detail, by, c0, chain, made, ended] = reply as [
      string,
      string,
      string,
      string | null,
      string | null,
      unknown,
      unknown,
    ];
    const effects = parseEffects(made, ended);
    // A ticket matched by this very call: its match is one of `made` (same JSON), parsed once.
    const index = state === 'matched' && Array.isArray(made) ? made.indexOf(detail) : -1;
    const ticketState: TicketState =
      index >= 0 ? { state: 'matched', match: effects.made[index]! } : parseState(state, detail, by);
    let criteria: SearchCriteria = ticket.criteria;
    if (chain) {
      try {
        const steps = JSON.parse(chain) as ChainStep[];
        criteria = Object.freeze(JSON.parse(steps[0]![1]) as SearchCriteria);
      } catch {
        // keep the caller's criteria
      }
    }
    return {
      status: 'ok',
      c0: c0 === null ? ticket.c0 : Number(c0),
      criteria,
      ticket: ticketState,
      effects,
    };
  }

  /**
   * A join in one script call (standalone Redis only, see {@link RedisQueue.oneScriptJoins}): claim `ticketId`
   * as the user's open ticket (taking a token of the shared join limit), create and enqueue it with `nodeId`
   * watching, pair, and release the user records of the tickets matched or ended. When the user already has an
   * open ticket, nothing is created: the answer is the claim (`created: false`), and the caller follows that
   * ticket with {@link RedisQueue.enqueue}, as after {@link RedisQueue.claim}. `chain` is
   * {@link RedisQueue.chainOf} the criteria (when the caller already has it).
   */
  async join(
    userId: string,
    ticketId: string,
    criteria: SearchCriteria,
    nodeId: string,
    limit: RateLimit | undefined,
    chain: readonly ChainStep[] = this.chainOf(criteria),
  ): Promise<JoinAnswer> {
    if (!this.oneScriptJoins) throw new Error('RedisQueue.join() needs a standalone Redis');
    const [bucket, ticketKeys] = this.#ticketKeys(ticketId);
    const k = this.#keys;
    const o = this.#options;
    const criteriaJson = JSON.stringify(criteria);
    const reply = (await this.#run(
      luaScripts.joinTicket,
      [
        k.user(userId),
        k.userJoinLimit(userId),
        ...ticketKeys,
        k.matchStream(bucket),
        k.nodeIndex(bucket, nodeId),
      ],
      [
        k.prefix,
        k.base(bucket),
        ticketId,
        userId,
        criteriaJson,
        JSON.stringify(chain),
        nodeId,
        o.ticketTtlMs,
        o.userRecordSlackMs,
        limit?.perSecond ?? 0,
        limit?.burst ?? 0,
        o.widening?.afterMs ?? 0,
        o.endedRetentionMs,
        k.channelPrefix(),
        o.pairLimit,
        o.recordMatches ? '1' : '0',
      ],
    )) as [number, string, string, string, unknown] | number;
    if (reply === LuaErrorCode.RateLimited) return { status: 'rate_limited' };
    if (typeof reply === 'number') throw new Error(`joinTicket answered ${reply}`);
    if (reply[0] !== 1) {
      return {
        status: 'ok',
        created: false,
        ticketId: reply[1],
        criteria: parseCriteria(reply[2]),
        c0: Number(reply[3]),
      };
    }
    const claim = { status: 'ok', created: true, ticketId, criteria, c0: Number(reply[3]) } as const;
    const enqueued = this.#parseEnqueue(reply[4], claim);
    if (enqueued.status !== 'ok')
      throw new Error(`joinTicket could not enqueue its fresh ticket: ${enqueued.status}`);
    return { ...claim, enqueued };
  }

  /** Withdraw a ticket, atomically against pairing. Releases the user record when it was withdrawn. */
  async cancel(
    ticketId: string,
    userId: string,
    searchId: string,
    reason: 'user' | 'superseded',
  ): Promise<CancelResult> {
    const [bucket, keys] = this.#ticketKeys(ticketId);
    const reply = await this.#run(luaScripts.cancelTicket, keys, [
      this.#keys.base(bucket),
      ticketId,
      userId,
      searchId,
      reason,
      this.#options.endedRetentionMs,
      this.#keys.channelPrefix(),
    ]);
    if (reply === LuaErrorCode.NotOwner) return { status: 'not_owner' };
    const [outcome, detail] = reply as [string, string];
    if (outcome === 'matched') return { status: 'matched', match: parseStoredMatch(detail) };
    await this.release(userId, ticketId).catch(() => false);
    if (outcome === 'cancelled') return { status: 'cancelled' };
    return { status: 'not_searching', reason: detail === '' ? undefined : asReason(detail) };
  }

  /** `nodeId` no longer watches the ticket; when nobody does, its grace window starts. */
  async unwatch(ticketId: string, nodeId: string): Promise<number> {
    const bucket = this.#keys.bucketOfTicket(ticketId);
    if (bucket === undefined) return 0;
    return Number(
      await this.#run(
        luaScripts.unwatchTicket,
        [
          this.#keys.ticket(bucket, ticketId),
          this.#keys.watchers(bucket, ticketId),
          this.#keys.orphans(bucket),
          this.#keys.nodeIndex(bucket, nodeId),
        ],
        [ticketId, nodeId, this.#options.resumeGraceMs],
      ),
    );
  }

  /**
   * One sweep pass over a bucket (expiry, disconnects, widening, pairing). The matches it makes are not published
   * to `nodeId`: the caller delivers them from the returned effects.
   */
  async sweep(bucket: number, nodeId: string): Promise<QueueEffects> {
    const k = this.#keys;
    const reply = (await this.#run(
      luaScripts.sweepBucket,
      [k.pools(bucket), k.expiries(bucket), k.widenings(bucket), k.orphans(bucket), k.matchStream(bucket)],
      [
        k.base(bucket),
        this.#options.pairLimit * 10,
        this.#options.endedRetentionMs,
        k.channelPrefix(),
        this.#options.widening?.afterMs ?? 0,
        this.#options.recordMatches ? '1' : '0',
        nodeId,
      ],
    )) as [unknown, unknown];
    const effects = parseEffects(reply[0], reply[1]);
    await this.#settle(effects);
    return effects;
  }

  /**
   * Release the user records of tickets that just matched or ended (best effort: stale records heal on join);
   * nothing when {@link RedisQueue.lazyRelease}.
   */
  async #settle(effects: QueueEffects): Promise<void> {
    if (this.lazyRelease) return;
    const releases: Promise<unknown>[] = [];
    for (const match of effects.made) {
      releases.push(
        this.release(match.userIds[0], match.ticketIds[0]),
        this.release(match.userIds[1], match.ticketIds[1]),
      );
    }
    for (const ended of effects.ended) {
      if (ended.userId !== '') releases.push(this.release(ended.userId, ended.ticketId));
    }
    await Promise.allSettled(releases);
  }

  // ------------------------------------------------------------------------------------------------------
  // Node registry and sweeper lease

  /**
   * Record that `nodeId` is alive (at Redis time). True when the node was not registered: its first heartbeat,
   * or another node had declared it dead (its tickets must be re-watched).
   */
  async heartbeat(nodeId: string): Promise<boolean> {
    const added = await this.#run(luaScripts.touchNode, [this.#keys.nodes()], [nodeId]);
    return added === 1;
  }

  /** Nodes silent for longer than `timeoutMs` (Redis time). */
  async staleNodes(timeoutMs: number): Promise<string[]> {
    return (await this.#run(luaScripts.staleNodes, [this.#keys.nodes()], [timeoutMs])) as string[];
  }

  /**
   * Release everything a (dead or departing) node watched, then forget the node. Reads the node's index in every
   * bucket (the scripts keep it: a ticket is in it while it waits with the node watching).
   */
  async forgetNode(nodeId: string): Promise<number> {
    let released = 0;
    const buckets = Array.from({ length: this.#keys.shards }, (_, bucket) => bucket);
    await Promise.all(
      buckets.map(async (bucket) => {
        const key = this.#keys.nodeIndex(bucket, nodeId);
        const tickets = await this.#redis.smembers(key);
        await Promise.all(tickets.map((ticketId) => this.unwatch(ticketId, nodeId)));
        if (tickets.length > 0) await this.#redis.del(key);
        released += tickets.length;
      }),
    );
    await this.#redis.zrem(this.#keys.nodes(), nodeId);
    return released;
  }

  /** Take or renew the sweeper lease. */
  async acquireSweeperLease(nodeId: string, ttlMs: number): Promise<boolean> {
    return (await this.#run(luaScripts.acquireLease, [this.#keys.sweeperLease()], [nodeId, ttlMs])) === 1;
  }

  /** Give the sweeper lease back if held. */
  async releaseSweeperLease(nodeId: string): Promise<void> {
    await this.#run(luaScripts.releaseLease, [this.#keys.sweeperLease()], [nodeId]);
  }
}
