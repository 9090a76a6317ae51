import { MatchmakingError, MatchmakingErrorCode } from '../../core/errors';
import type { CancelReason, MatchInfo, SearchCriteria } from '../../core/types';
import type { PostgrestErrorLike, RpcResponseLike } from '../supabaseLike';

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
export interface QueueMatch {
  readonly id: string;
  readonly partnerId: string;
  readonly createdAt: string;
  readonly criteria: SearchCriteria;
}

const STATUSES: readonly QueueStatus[] = [
  'idle',
  'waiting',
  'matched',
  'cancelled',
  'expired',
  'disconnected',
  'superseded',
];
const TOPIC_PREFIX = 'matchmaker:user:';

function protocolError(what: string, value: unknown): MatchmakingError {
  return new MatchmakingError(
    MatchmakingErrorCode.Protocol,
    `Unexpected answer from the matchmaker SQL (${what}). Are the shipped migrations up to date? Run \`npx supabase-matchmaker migrate\`.`,
    { details: { value } },
  );
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw protocolError(what, value);
  return value as Record<string, unknown>;
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Decodes the match object of an RPC answer or notification. */
export function decodeMatch(value: unknown): QueueMatch {
  const m = record(value, 'match');
  const id = optionalString(m.id);
  const partnerId = optionalString(m.partner_id);
  const createdAt = optionalString(m.created_at);
  if (!id || !partnerId || !createdAt)
    throw protocolError('match without id, partner_id or created_at', value);
  const criteria =
    typeof m.criteria === 'object' && m.criteria !== null ? (m.criteria as SearchCriteria) : {};
  return { id, partnerId, createdAt: new Date(createdAt).toISOString(), criteria };
}

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

/** Builds the core's {@link MatchInfo}: user ids in a canonical (sorted) order so both users see the same. */
export function toMatchInfo(userId: string, match: QueueMatch): MatchInfo {
  const userIds = (userId < match.partnerId ? [userId, match.partnerId] : [match.partnerId, userId]) as [
    string,
    string,
  ];
  return Object.freeze({
    matchId: match.id,
    userIds: Object.freeze(userIds) as readonly [string, string],
    createdAt: match.createdAt,
    strategy: 'queue',
    criteria: Object.freeze({ ...match.criteria }),
  });
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
  const error = response.error as PostgrestErrorLike;
  const code = error.code ?? '';
  const details = { fn, status: response.status, sqlstate: code, hint: error.hint ?? null };
  const text = `${fn} failed: ${error.message}`;
  if (code === 'PGRST202' || code === '42883' || code === 'PGRST106' || (response.status === 404 && !code)) {
    return new MatchmakingError(
      MatchmakingErrorCode.SchemaMismatch,
      `${text}. The matchmaker functions are missing from this database: apply the shipped migrations (\`npx supabase-matchmaker migrate --database-url ...\`, or copy them with \`npx supabase-matchmaker migrations --out supabase/migrations\`).`,
      { cause: error, details },
    );
  }
  if (
    code.startsWith('PGRST30') ||
    response.status === 401 ||
    (code === '42501' && /not authenticated/.test(error.message))
  ) {
    return new MatchmakingError(
      MatchmakingErrorCode.Unauthorized,
      `${text}. Sign the user in first: the queue tier acts for the user of the Supabase session (auth.uid()).`,
      { cause: error, details },
    );
  }
  if (code === '42501' || code === 'MM409' || response.status === 403) {
    return new MatchmakingError(MatchmakingErrorCode.Forbidden, text, { cause: error, details });
  }
  if (code === '22023') {
    return new MatchmakingError(
      MatchmakingErrorCode.InvalidArgument,
      `${text}${error.hint ? ` (${error.hint})` : ''}. Criteria keys must be declared in matchmaker.settings.criteria_keys.`,
      { cause: error, details },
    );
  }
  if (response.status === 429) {
    return new MatchmakingError(MatchmakingErrorCode.RateLimited, text, { cause: error, details });
  }
  return new MatchmakingError(MatchmakingErrorCode.Unavailable, text, { cause: error, details });
}
