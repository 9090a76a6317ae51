import { MatchmakingError, MatchmakingErrorCode } from '../core/errors';
import type { MatchInfo, SearchCriteria, StrategyKind } from '../core/types';
import type { PostgrestErrorLike, RpcResponseLike } from './supabaseLike';

/**
 * Decoding shared by the Supabase tiers' RPC answers (queue and presence): both SQL files use the same match
 * object, the same private topic and the same error conventions.
 *
 * @internal
 */

/** The per-user private topic prefix every Supabase tier notifies on. */
export const USER_TOPIC_PREFIX = 'matchmaker:user:';

/** The match part of an RPC answer or a notification. */
export interface RpcMatch {
  readonly id: string;
  readonly partnerId: string;
  readonly createdAt: string;
  readonly criteria: SearchCriteria;
}

/** A `protocol` error for an answer this client does not understand. */
export function protocolError(what: string, value: unknown): MatchmakingError {
  return new MatchmakingError(
    MatchmakingErrorCode.Protocol,
    `Unexpected answer from the matchmaker SQL (${what}). Are the shipped migrations up to date? Run \`npx supabase-matchmaker migrate\`.`,
    { details: { value } },
  );
}

/** `value` as a JSON object, or a `protocol` error naming `what`. */
export function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw protocolError(what, value);
  return value as Record<string, unknown>;
}

/** `value` if it is a string. */
export function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Decodes `{ id, partner_id, created_at, criteria }`. */
export function decodeMatch(value: unknown): RpcMatch {
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

/** Builds the core's {@link MatchInfo}: user ids in a canonical (sorted) order so both users see the same. */
export function toMatchInfo(userId: string, match: RpcMatch, strategy: StrategyKind): MatchInfo {
  const userIds = (userId < match.partnerId ? [userId, match.partnerId] : [match.partnerId, userId]) as [
    string,
    string,
  ];
  return Object.freeze({
    matchId: match.id,
    userIds: Object.freeze(userIds) as readonly [string, string],
    createdAt: match.createdAt,
    strategy,
    criteria: Object.freeze({ ...match.criteria }),
  });
}

/** Tier-specific wording for {@link rpcError}. */
export interface RpcErrorWording {
  /** e.g. "the queue tier" */
  readonly tier: string;
  /** Appended to `invalid_argument` messages. */
  readonly invalidArgumentHint?: string;
}

/** Turns a PostgREST error (or a transport failure, status 0) into a {@link MatchmakingError}. */
export function rpcError(fn: string, response: RpcResponseLike, wording: RpcErrorWording): MatchmakingError {
  const error = response.error as PostgrestErrorLike;
  const code = error.code ?? '';
  const details = { fn, status: response.status, sqlstate: code, hint: error.hint ?? null };
  const text = `${fn} failed: ${error.message}`;
  if (code === 'PGRST202' || code === '42883' || code === 'PGRST106' || (response.status === 404 && !code)) {
    return new MatchmakingError(
      MatchmakingErrorCode.SchemaMismatch,
      `${text}. The functions of ${wording.tier} are missing from this database: apply the shipped migrations (\`npx supabase-matchmaker migrate --database-url ...\`, or copy them with \`npx supabase-matchmaker migrations --out supabase/migrations\`).`,
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
      `${text}. Sign the user in first: ${wording.tier} acts for the user of the Supabase session (auth.uid()).`,
      { cause: error, details },
    );
  }
  if (code === '42501' || code === 'MM409' || response.status === 403) {
    return new MatchmakingError(MatchmakingErrorCode.Forbidden, text, { cause: error, details });
  }
  if (code === '22023') {
    const hint = error.hint ? ` (${error.hint})` : '';
    return new MatchmakingError(
      MatchmakingErrorCode.InvalidArgument,
      `${text}${hint}${wording.invalidArgumentHint ? `. ${wording.invalidArgumentHint}` : ''}`,
      { cause: error, details },
    );
  }
  if (response.status === 429) {
    return new MatchmakingError(MatchmakingErrorCode.RateLimited, text, { cause: error, details });
  }
  return new MatchmakingError(MatchmakingErrorCode.Unavailable, text, { cause: error, details });
}
