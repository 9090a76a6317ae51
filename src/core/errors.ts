/**
 * Every code a {@link MatchmakingError} can carry.
 *
 * @remarks
 * Codes are stable across minor versions; branch on them, never on messages.
 */
export const MatchmakingErrorCode = {
  /** The configuration passed to a constructor or factory is invalid; the message says what to change. */
  InvalidConfig: 'invalid_config',
  /** Arguments passed to a method (e.g. search criteria) are invalid. */
  InvalidArgument: 'invalid_argument',
  /** The matchmaker was closed; create a new one. */
  Closed: 'closed',
  /** The user is not signed in, or the backend refused their credentials. */
  Unauthorized: 'unauthorized',
  /** The backend refused the operation for this user (RLS, grants, eligibility). */
  Forbidden: 'forbidden',
  /** A plan quota or rate limit stopped the operation. */
  RateLimited: 'rate_limited',
  /** The network or the backend could not be reached; retrying may help. */
  Unavailable: 'unavailable',
  /** The shipped SQL migrations are missing or older than this client needs. */
  SchemaMismatch: 'schema_mismatch',
  /** The operation did not complete in time. */
  Timeout: 'timeout',
  /** The backend answered something this client does not understand. */
  Protocol: 'protocol',
  /** Anything else; `cause` holds the original error. */
  Internal: 'internal',
} as const;

/** Union of the known error codes. */
export type MatchmakingErrorCode = (typeof MatchmakingErrorCode)[keyof typeof MatchmakingErrorCode];

const BRAND = Symbol.for('supabase-matchmaker.MatchmakingError');

/** Options accepted by {@link MatchmakingError}'s constructor. */
export interface MatchmakingErrorOptions {
  /** The underlying error, kept for debugging. */
  readonly cause?: unknown;
  /** Structured details (e.g. the failing field, a SQLSTATE), safe to log. */
  readonly details?: Readonly<Record<string, unknown>>;
}

/**
 * The one error class every part of supabase-matchmaker throws or emits.
 *
 * @remarks
 * Use {@link isMatchmakingError} rather than `instanceof`: it also recognises errors created by another copy of
 * this package (two bundles, an iframe, a worker).
 *
 * @example
 * ```ts
 * try {
 *   await matchmaker.start({ criteria: { language: 'en' } });
 * } catch (error) {
 *   if (isMatchmakingError(error) && error.code === 'unauthorized') redirectToLogin();
 *   else throw error;
 * }
 * ```
 */
export class MatchmakingError extends Error {
  /** What went wrong, as a stable code. */
  readonly code: MatchmakingErrorCode | (string & {});
  /** Structured details, safe to log. */
  readonly details: Readonly<Record<string, unknown>> | undefined;
  /** @internal Brand read by {@link isMatchmakingError}. */
  readonly [BRAND] = true;

  constructor(
    code: MatchmakingErrorCode | (string & {}),
    message: string,
    options: MatchmakingErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MatchmakingError';
    this.code = code;
    this.details = options.details;
  }
}

/**
 * True when `value` is a {@link MatchmakingError}, from this or any other copy of the package.
 *
 * @example
 * ```ts
 * matchmaker.on('error', ({ error }) => {
 *   if (isMatchmakingError(error, 'rate_limited')) showSlowDownBanner();
 * });
 * ```
 */
export function isMatchmakingError(value: unknown, code?: MatchmakingErrorCode): value is MatchmakingError {
  if (typeof value !== 'object' || value === null) return false;
  const branded = (value as { [BRAND]?: unknown })[BRAND] === true;
  if (!branded) return false;
  return code === undefined || (value as MatchmakingError).code === code;
}

/**
 * Wraps anything thrown by a transport or a third-party client into a {@link MatchmakingError}, keeping it as
 * `cause`. Matchmaking errors pass through unchanged.
 *
 * @internal
 */
export function toMatchmakingError(
  error: unknown,
  fallbackCode: MatchmakingErrorCode = MatchmakingErrorCode.Internal,
  context?: string,
): MatchmakingError {
  if (isMatchmakingError(error)) return error;
  const text =
    error instanceof Error ? error.message : typeof error === 'string' ? error : JSON.stringify(error);
  return new MatchmakingError(fallbackCode, context ? `${context}: ${text}` : text, { cause: error });
}
