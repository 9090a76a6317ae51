import type { MatchmakingError } from '../../core/errors';
import type { CancelReason, MatchInfo, SearchCriteria } from '../../core/types';
import {
  decodeMatch,
  optionalString,
  protocolError,
  type RpcMatch,
  record,
  rpcError,
  toMatchInfo,
  USER_TOPIC_PREFIX,
} from '../rpcProtocol';
import type { RpcResponseLike } from '../supabaseLike';

/**
 * The RPC names, JSON shapes and presence payloads of the presence tiers
 * (supabase/migrations/*_matchmaker_presence.sql), decoded defensively: anything unexpected becomes a
 * `protocol` error rather than a crash.
 *
 * @internal
 */
export const PRESENCE_RPC = {
  begin: 'matchmaker_presence_begin',
  end: 'matchmaker_presence_end',
  heartbeat: 'matchmaker_presence_heartbeat',
  state: 'matchmaker_presence_state',
  claim: 'matchmaker_presence_claim',
  move: 'matchmaker_presence_move',
} as const;

/** Statuses of a presence search as the RPCs report them. */
export type PresenceStatus = 'idle' | 'searching' | 'matched' | 'cancelled' | 'expired' | 'superseded';

/** Why a claim lost, as `matchmaker_presence_claim` reports it. */
export type ClaimLossReason =
  | 'caller_not_searching'
  | 'caller_matched'
  | 'caller_in_match'
  | 'partner_not_searching'
  | 'partner_matched'
  | 'partner_in_match'
  | 'criteria_mismatch'
  | 'not_eligible';

/** The match part of an RPC answer. */
export type PresenceMatch = RpcMatch;

/** A decoded RPC answer (always about the caller's search). */
export interface PresenceState {
  readonly status: PresenceStatus;
  readonly result: string;
  readonly reason: string | undefined;
  readonly userId: string;
  readonly topic: string;
  /** The search row id (differs from the matchmaker's search id when another tab opened the search). */
  readonly searchId: string | undefined;
  /** When the search started, epoch microseconds (the presence sort key). */
  readonly startedUs: number | undefined;
  /** The shard the database has on record for this search (sharded tier). */
  readonly shard: number | undefined;
  readonly match: PresenceMatch | undefined;
  readonly heartbeatIntervalMs: number | undefined;
  /** `matchmaker_presence_move` only: the shard to be in now. */
  readonly targetShard: number | undefined;
}

/** What a searcher tracks in the presence channel. */
export interface PresencePayload {
  readonly user_id: string;
  /**
   * The searcher's place in the channel's pairing order, in epoch microseconds: its search start (database
   * time), or just after the newest member it saw when it (re)entered the channel (a move, a reconnect, a
   * return after stepping aside) if that is later. So arrivals are appended and never shift formed pairs.
   */
  readonly rank_us: number;
  readonly criteria: SearchCriteria;
}

/** Largest rank accepted (keeps `rank + 1` exact in a double). */
export const MAX_RANK_US = 9e15;

const STATUSES: readonly PresenceStatus[] = [
  'idle',
  'searching',
  'matched',
  'cancelled',
  'expired',
  'superseded',
];
const TOPIC_PREFIX = USER_TOPIC_PREFIX;

function optionalNumber(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** Decodes one RPC answer. */
export function decodePresenceState(value: unknown): PresenceState {
  const s = record(value, 'state');
  const status = s.status as PresenceStatus;
  if (!STATUSES.includes(status)) throw protocolError(`unknown status ${String(s.status)}`, value);
  const topic = optionalString(s.topic);
  if (!topic?.startsWith(TOPIC_PREFIX)) throw protocolError('missing topic', value);
  const search = s.search === null || s.search === undefined ? undefined : record(s.search, 'search');
  return {
    status,
    result: optionalString(s.result) ?? '',
    reason: optionalString(s.reason),
    userId: topic.slice(TOPIC_PREFIX.length),
    topic,
    searchId: optionalString(search?.id),
    startedUs: optionalNumber(search?.started_us),
    shard: optionalNumber(search?.shard),
    match: status === 'matched' ? decodeMatch(s.match) : undefined,
    heartbeatIntervalMs: optionalNumber(s.heartbeat_interval_ms),
    targetShard: optionalNumber(s.shard),
  };
}

/** Builds the core's {@link MatchInfo} for a presence match. */
export function toPresenceMatchInfo(
  userId: string,
  match: PresenceMatch,
  strategy: 'presence' | 'sharded-presence',
): MatchInfo {
  return toMatchInfo(userId, match, strategy);
}

/** Maps a finished search's status to the core's cancel reason (undefined while searching or matched). */
export function presenceEndReason(
  status: PresenceStatus,
): Exclude<CancelReason, 'timeout' | 'closed'> | undefined {
  switch (status) {
    case 'cancelled':
      return 'user';
    case 'expired':
    case 'idle':
      return 'expired';
    case 'superseded':
      return 'superseded';
    default:
      return undefined;
  }
}

/** Decodes a tracked presence meta; undefined when it is not a searcher's payload. */
export function decodePresencePayload(meta: Readonly<Record<string, unknown>>): PresencePayload | undefined {
  const userId = meta.user_id;
  const rank = meta.rank_us;
  const criteria = meta.criteria;
  if (typeof userId !== 'string' || userId.length === 0 || userId.length > 64) return undefined;
  if (typeof rank !== 'number' || !Number.isInteger(rank) || rank < 0 || rank > MAX_RANK_US) return undefined;
  if (typeof criteria !== 'object' || criteria === null || Array.isArray(criteria)) return undefined;
  return { user_id: userId, rank_us: rank, criteria: criteria as SearchCriteria };
}

/** Turns a PostgREST error (or a transport failure, status 0) into a {@link MatchmakingError}. */
export function presenceRpcError(fn: string, response: RpcResponseLike): MatchmakingError {
  return rpcError(fn, response, { tier: 'the presence tiers' });
}

/** True when a Realtime stop or join-error text names a quota or rate limit. */
export function isQuotaMessage(message: string): boolean {
  return /too many|rate ?limit|limit exceeded|size exceeded/i.test(message);
}

/** A refusal of a search's first channel join, as the error the search should end with. */
export interface JoinRefusal {
  readonly code: 'rate_limited' | 'forbidden' | 'unauthorized' | 'unavailable';
  readonly advice: string;
}

/**
 * Classifies a Realtime join-error reason (`<Code>: <message>`) that should end a search whose first join it
 * refused, instead of supabase-js rejoining forever: a quota (see {@link isQuotaMessage}), or a refusal that is
 * permanent for this project or token. Transient reasons (restarts, the project still connecting) answer
 * `undefined`.
 */
export function firstJoinRefusal(reason: string): JoinRefusal | undefined {
  if (isQuotaMessage(reason)) {
    return {
      code: 'rate_limited',
      advice: 'A Supabase Realtime quota was exceeded (see docs/presence-capacity.md).',
    };
  }
  const code = /^(\w+):/.exec(reason)?.[1];
  switch (code) {
    case 'PrivateOnly':
      return {
        code: 'forbidden',
        advice:
          'The presence tiers join public Realtime channels: allow public channels in the project\'s Realtime settings, or use strategy "queue" (private per-user topics only).',
      };
    case 'Unauthorized':
      return {
        code: 'forbidden',
        advice: 'Realtime Authorization refused this channel for the signed-in user.',
      };
    case 'InvalidJWTToken':
    case 'MalformedJWT':
    case 'JwtSignatureError':
      return {
        code: 'unauthorized',
        advice:
          'Realtime refused the access token: sign the user in again (or pass a fresh token) and start again.',
      };
    case 'RealtimeDisabledForTenant':
    case 'TenantNotFound':
      return { code: 'unavailable', advice: 'Realtime is not available for this project.' };
    default:
      return undefined;
  }
}
