/**
 * HS256 JWTs for the local stack: the project API keys, user access tokens, and verification with the
 * failure kinds the REST and Realtime halves turn into their own wire errors.
 *
 * @packageDocumentation
 */
import { errors, jwtVerify, SignJWT } from 'jose';
import type { JwtClaims, JwtFailureKind } from './internal/contracts';

/** Ten years, the lifetime of Supabase's API keys (they are JWTs that practically never expire). */
const API_KEY_LIFETIME_SECONDS = 10 * 365 * 24 * 3600;
/** One hour, Supabase Auth's default access-token lifetime. */
const DEFAULT_TOKEN_LIFETIME_SECONDS = 3600;

const MESSAGES: Record<Exclude<JwtFailureKind, 'expired'>, string> = {
  missing: 'No JWT was provided',
  malformed: 'The token provided is not a valid JWT',
  signature: 'Failed to validate JWT signature',
  claims: 'Fields `role` and `exp` are required in JWT',
  exp_invalid: 'Token expiration time is invalid',
};

/**
 * A token was refused. `kind` says why; the message is the Realtime server's wording for that kind
 * (for example `Token has expired 3 seconds ago`).
 */
export class JwtError extends Error {
  override readonly name = 'JwtError';
  /** Why the token was refused. */
  readonly kind: JwtFailureKind;
  /** For `kind: 'expired'`: whole seconds since `exp`. */
  readonly expiredSecondsAgo: number | undefined;

  constructor(kind: JwtFailureKind, options: { expiredSecondsAgo?: number; cause?: unknown } = {}) {
    super(
      kind === 'expired' ? `Token has expired ${options.expiredSecondsAgo ?? 0} seconds ago` : MESSAGES[kind],
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.kind = kind;
    this.expiredSecondsAgo = options.expiredSecondsAgo;
  }
}

/** True for a {@link JwtError}, also across module copies (checks `name` and `kind`). */
export function isJwtError(error: unknown): error is JwtError {
  return (
    error instanceof JwtError || (error instanceof Error && error.name === 'JwtError' && 'kind' in error)
  );
}

/** Options of {@link JwtIssuer.sign}. */
export interface SignOptions {
  /**
   * Lifetime in seconds (negative gives an already expired token). Ignored when the claims carry `exp`.
   * @defaultValue 3600
   */
  readonly expiresIn?: number;
}

/** Options of {@link JwtIssuer.userToken}. */
export interface UserTokenOptions extends SignOptions {
  /** The user id (`sub`). */
  readonly sub: string;
  readonly email?: string;
  /** Extra claims merged over the defaults (`role: 'authenticated'`, `aud: 'authenticated'`, ...). */
  readonly claims?: Record<string, unknown>;
}

/** Signs and verifies the stack's HS256 tokens with one secret. */
export interface JwtIssuer {
  /** The HS256 secret (Supabase's "JWT secret"). */
  readonly secret: string;
  /** Sign `claims` (adds `iat`, and `exp` unless present). */
  sign(claims: Record<string, unknown>, options?: SignOptions): Promise<string>;
  /**
   * Verify a token as the Realtime server does: HS256 signature, not expired, and integer `exp` plus a
   * `role` claim required. Throws {@link JwtError}.
   */
  verify(token: string | null | undefined): Promise<JwtClaims>;
  /**
   * Verify a token as PostgREST does: signature and, when present, `exp`. `role` and `exp` are optional.
   * Throws {@link JwtError}.
   */
  verifyPayload(token: string | null | undefined): Promise<Record<string, unknown>>;
  /** The anon API key: `{ role: 'anon', iss: 'supabase' }`, valid for ten years. */
  anonKey(): Promise<string>;
  /** The service-role API key: `{ role: 'service_role', iss: 'supabase' }`, valid for ten years. */
  serviceRoleKey(): Promise<string>;
  /** A signed-in user's access token: `{ sub, role: 'authenticated', aud: 'authenticated', email, exp }`. */
  userToken(options: UserTokenOptions): Promise<string>;
}

/**
 * Create a {@link JwtIssuer} for `secret`.
 *
 * @param options.now - Clock in epoch milliseconds, for tests of expiry.
 *
 * @example
 * ```ts
 * const jwt = createJwtIssuer('super-secret-jwt-token-with-at-least-32-characters-long');
 * const token = await jwt.userToken({ sub: userId, email: 'a@example.com' });
 * const claims = await jwt.verify(token); // { sub, role: 'authenticated', exp, ... }
 * ```
 */
export function createJwtIssuer(secret: string, options: { now?: () => number } = {}): JwtIssuer {
  if (secret.length < 32)
    throw new Error('The JWT secret must be at least 32 characters long, as on Supabase.');
  const key = new TextEncoder().encode(secret);
  const now = options.now ?? Date.now;
  const nowSeconds = () => Math.floor(now() / 1000);

  const sign = async (claims: Record<string, unknown>, signOptions: SignOptions = {}): Promise<string> => {
    const iat = nowSeconds();
    const body: Record<string, unknown> = { iat, ...claims };
    if (body.exp === undefined) body.exp = iat + (signOptions.expiresIn ?? DEFAULT_TOKEN_LIFETIME_SECONDS);
    return new SignJWT(body).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key);
  };

  const verifyPayload = async (token: string | null | undefined): Promise<Record<string, unknown>> => {
    if (token === undefined || token === null || token.trim() === '') throw new JwtError('missing');
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms: ['HS256'],
        currentDate: new Date(now()),
      });
      return payload as Record<string, unknown>;
    } catch (error) {
      throw toJwtError(error, nowSeconds());
    }
  };

  return {
    secret,
    sign,
    verifyPayload,
    async verify(token) {
      const payload = await verifyPayload(token);
      if (payload.exp === undefined || typeof payload.role !== 'string') throw new JwtError('claims');
      if (typeof payload.exp !== 'number' || !Number.isInteger(payload.exp))
        throw new JwtError('exp_invalid');
      return payload as JwtClaims;
    },
    anonKey: () => sign({ iss: 'supabase', role: 'anon' }, { expiresIn: API_KEY_LIFETIME_SECONDS }),
    serviceRoleKey: () =>
      sign({ iss: 'supabase', role: 'service_role' }, { expiresIn: API_KEY_LIFETIME_SECONDS }),
    userToken: ({ sub, email, claims, ...signOptions }) =>
      sign(
        {
          iss: 'supabase',
          sub,
          aud: 'authenticated',
          role: 'authenticated',
          ...(email === undefined ? {} : { email }),
          app_metadata: { provider: 'email', providers: ['email'] },
          user_metadata: {},
          aal: 'aal1',
          session_id: crypto.randomUUID(),
          is_anonymous: false,
          ...claims,
        },
        signOptions,
      ),
  };
}

function toJwtError(error: unknown, nowSeconds: number): JwtError {
  if (error instanceof errors.JWTExpired) {
    const exp = typeof error.payload.exp === 'number' ? error.payload.exp : nowSeconds;
    return new JwtError('expired', {
      expiredSecondsAgo: Math.max(0, nowSeconds - Math.floor(exp)),
      cause: error,
    });
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    return new JwtError(error.claim === 'exp' ? 'exp_invalid' : 'claims', { cause: error });
  }
  if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JOSEAlgNotAllowed) {
    return new JwtError('signature', { cause: error });
  }
  return new JwtError('malformed', { cause: error });
}
