import type { MatchmakingError } from '../../core/errors';
import type { CancelReason, MatchInfo } from '../../core/types';
import {
  decodeMatch,
  optionalString,
  protocolError,
  type RpcMatch,
  record,
  rpcError as sharedRpcError,
  toMatchInfo as toSharedMatchInfo,
  USER_TOPIC_PREFIX,
} from '../rpcProtocol';
import type { RpcResponseLike } from '../supabaseLike';

export { decodeMatch };

/**
 * The RPC names and JSON shapes of the queue tier's SQL (supabase/migrations/*_matchmaker_queue.sql), decoded
 * defensively: anything unexpected becomes a `protocol` error rather than a crash.
 *
 * @internal
 */
export const QUEUE_RPC = {
  join: 'matchmaker_join',
  cancel: 'matchmaker_cancel',
  heartbeat: 'matchmaker_heartbeat',
  state: 'matchmaker_state',
} as const;

/** Ticket states the RPCs report. */
export type QueueStatus =
  | 'idle'
  | 'waiting'
  | 'matched'
  | 'cancelled'
  | 'expired'
  | 'disconnected'
  | 'superseded';

/** A decoded RPC answer. */
export interface QueueState {
  readonly status: QueueStatus;
  readonly result: string;
  readonly ticketId: string | undefined;
  readonly userId: string;
  readonly topic: string;
  readonly match: QueueMatch | undefined;
  readonly reason: string | undefined;
  readonly heartbeatIntervalMs: number | undefined;
  /** When a flexible criterion widens; a heartbeat then may find a partner. */
  readonly widensAt: string | undefined;
}

/** The match part of an answer or a `matched` notification. */
export type QueueMatch = RpcMatch;

const STATUSES: readonly QueueStatus[] = [
  'idle',
  'waiting',
  'matched',
  'cancelled',
  'expired',
  'disconnected',
  'superseded',
];
const TOPIC_PREFIX = USER_TOPIC_PREFIX;

/** Decodes one RPC answer. */
export function decodeState(value: unknown): QueueState {
  const s = record(value, 'state');
  const status = s.status as QueueStatus;
  if (!STATUSES.includes(status)) throw protocolError(`unknown status ${String(s.status)}`, value);
  const topic = optionalString(s.topic);
  if (!topic?.startsWith(TOPIC_PREFIX)) throw protocolError('missing topic', value);
  const ticket = s.ticket === null || s.ticket === undefined ? undefined : record(s.ticket, 'ticket');
  return {
    status,
    result: optionalString(s.result) ?? '',
    ticketId: optionalString(ticket?.id),
    userId: topic.slice(TOPIC_PREFIX.length),
    topic,
    match: status === 'matched' ? decodeMatch(s.match) : undefined,
    reason: optionalString(s.reason),
    heartbeatIntervalMs: typeof s.heartbeat_interval_ms === 'number' ? s.heartbeat_interval_ms : undefined,
    widensAt: optionalString(ticket?.widens_at),
  };
}

/** Builds the core's {@link MatchInfo} for a queue match. */
export function toMatchInfo(userId: string, match: QueueMatch): MatchInfo {
  return toSharedMatchInfo(userId, match, 'queue');
}

/** Maps a finished ticket's status to the core's cancel reason. */
export function endReason(status: QueueStatus): Exclude<CancelReason, 'timeout' | 'closed'> | undefined {
  switch (status) {
    case 'cancelled':
      return 'user';
    case 'expired':
      return 'expired';
    case 'disconnected':
      return 'disconnected';
    case 'superseded':
      return 'superseded';
    default:
      return undefined;
  }
}

/** Turns a PostgREST error (or a transport failure, status 0) into a {@link MatchmakingError}. */
export function rpcError(fn: string, response: RpcResponseLike): MatchmakingError {
  return sharedRpcError(fn, response, {
    tier: 'the queue tier',
    invalidArgumentHint: 'Criteria keys must be declared in matchmaker.settings.criteria_keys.',
  });
}
