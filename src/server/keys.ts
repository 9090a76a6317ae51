/**
 * Redis key layout of the service, and how criteria map to pools and buckets.
 *
 * @remarks
 * A pool is the canonical key of a criteria object (`criteriaPoolKey`). Pools are grouped into `shards` buckets;
 * every key of a bucket carries the bucket's hash tag (`<prefix>{p<n>}:`), so the scripts that pair, cancel,
 * widen and expire within a pool touch one Redis Cluster slot while buckets spread over the cluster. The
 * bucket of a search is the hash of its broadest pool (its criteria without the keys widening may drop), so
 * every pool a ticket can widen into lives in the same slot and a widening move stays one atomic script.
 *
 * @packageDocumentation
 */
import type { SearchCriteria } from '../core/types';
import { criteriaPoolKey } from '../core/validation';

/** 32-bit FNV-1a of a string's UTF-16 code units. */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** One step of a widening chain: the pool and its criteria JSON. */
export type ChainStep = readonly [pool: string, criteriaJson: string];

/** Widening: after `afterMs` of waiting, and again after each further `afterMs`, drop the next key of `drop`. */
export interface WideningOptions {
  /** Milliseconds between steps. */
  readonly afterMs: number;
  /** Criteria keys that may be dropped, in the order they are dropped. Keys not listed are never dropped. */
  readonly drop: readonly string[];
}

/**
 * The pools a search moves through as it widens: its own criteria first, then one key of `widening.drop`
 * fewer at each step (keys the search does not have are skipped).
 */
export function wideningChain(criteria: SearchCriteria, widening: WideningOptions | undefined): ChainStep[] {
  const steps: ChainStep[] = [];
  let current: Record<string, string | number | boolean> = { ...criteria };
  const push = () => steps.push([criteriaPoolKey(current), JSON.stringify(current)]);
  push();
  for (const key of widening?.drop ?? []) {
    if (!(key in current)) continue;
    const { [key]: _dropped, ...rest } = current;
    current = rest;
    push();
  }
  return steps;
}

/** Builds every key and channel name for one deployment (`prefix`) and bucket count (`shards`). */
export class KeySpace {
  /** Prefix of every key and channel. */
  readonly prefix: string;
  /** Number of buckets. */
  readonly shards: number;

  constructor(prefix: string, shards: number) {
    this.prefix = prefix;
    this.shards = shards;
  }

  /** The bucket of a widening chain: the hash of its broadest pool. */
  bucketOf(chain: readonly ChainStep[]): number {
    const broadest = chain[chain.length - 1]!;
    return fnv1a32(broadest[0]) % this.shards;
  }

  /** Key prefix (hash tag included) of a bucket. */
  base(bucket: number): string {
    return `${this.prefix}{p${bucket}}:`;
  }

  /** The bucket encoded in a ticket id (`<bucket>.<hex>`), or `undefined` when out of range. */
  bucketOfTicket(ticketId: string): number | undefined {
    const bucket = Number(ticketId.slice(0, ticketId.indexOf('.')));
    return Number.isInteger(bucket) && bucket >= 0 && bucket < this.shards ? bucket : undefined;
  }

  /** A ticket's state hash. */
  ticket(bucket: number, ticketId: string): string {
    return `${this.base(bucket)}t:${ticketId}`;
  }

  /** The set of nodes following a ticket. */
  watchers(bucket: number, ticketId: string): string {
    return `${this.base(bucket)}tw:${ticketId}`;
  }

  /** A pool's waiting tickets, scored by enqueue time. */
  pool(bucket: number, pool: string): string {
    return `${this.base(bucket)}q:${pool}`;
  }

  /** The pools of a bucket that may hold waiting tickets. */
  pools(bucket: number): string {
    return `${this.base(bucket)}pools`;
  }

  /** A bucket's waiting tickets by expiry time. */
  expiries(bucket: number): string {
    return `${this.base(bucket)}exp`;
  }

  /** A bucket's waiting tickets by next widening time. */
  widenings(bucket: number): string {
    return `${this.base(bucket)}wid`;
  }

  /** A bucket's tickets nobody follows, by disconnect deadline. */
  orphans(bucket: number): string {
    return `${this.base(bucket)}orph`;
  }

  /** The bucket's stream of matches waiting to be written to Postgres. */
  matchStream(bucket: number): string {
    return `${this.base(bucket)}m`;
  }

  /** The user's record (which ticket is their open one), in the user's own slot. */
  user(userId: string): string {
    return `${this.prefix}{u${fnv1a32(userId).toString(16)}}:user:${userId}`;
  }

  /** The user's join limit shared by every node (a token bucket), in the user's slot. */
  userJoinLimit(userId: string): string {
    return `${this.prefix}{u${fnv1a32(userId).toString(16)}}:rl:${userId}`;
  }

  /** Live nodes, scored by their last heartbeat (ms). */
  nodes(): string {
    return `${this.prefix}{reg}:nodes`;
  }

  /** The sweeper lease. */
  sweeperLease(): string {
    return `${this.prefix}{reg}:sweeper`;
  }

  /**
   * The waiting tickets a node watches in one bucket (in the bucket's slot), so another node can release them
   * when it dies. Kept by the scripts that add and remove watchers.
   */
  nodeIndex(bucket: number, nodeId: string): string {
    return `${this.base(bucket)}n:${nodeId}`;
  }

  /** Prefix of the per-node pub/sub channels. */
  channelPrefix(): string {
    return `${this.prefix}node:`;
  }

  /** The pub/sub channel of one node. */
  channel(nodeId: string): string {
    return `${this.channelPrefix()}${nodeId}`;
  }
}
