/**
 * PostgREST's error bodies and SQLSTATE-to-HTTP mapping (spec §8.3).
 *
 * @packageDocumentation
 */

/** The JSON body of every PostgREST error, in PostgREST's key order. */
export interface PostgrestErrorBody {
  readonly code: string;
  readonly details: string | null;
  readonly hint: string | null;
  readonly message: string;
}

/** The body the API gateway (Kong) answers with when the `apikey` is missing or wrong. */
export interface GatewayErrorBody {
  readonly message: string;
  readonly hint?: string;
}

/** An error response: status, body and extra headers. */
export interface PostgrestErrorResponse {
  readonly status: number;
  readonly body: PostgrestErrorBody | GatewayErrorBody;
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * HTTP status PostgREST answers for a SQLSTATE.
 *
 * @param anonymous - Whether the request ran as the anon role; `42501` is 401 then, 403 otherwise.
 */
export function httpStatusForSqlState(code: string, anonymous: boolean): number {
  if (code === 'P0001') return 400;
  if (/^PT\d{3}$/.test(code)) return Number(code.slice(2));
  if (code.startsWith('P0')) return 500;
  if (code === '23503' || code === '23505') return 409;
  if (code === '42501') return anonymous ? 401 : 403;
  if (code === '42883' || code === '42P01') return 404;
  if (code === '25006') return 405;
  if (code === '53400') return 500;
  const cls = code.slice(0, 2);
  if (cls === '28' || cls === '0L' || cls === '0P') return 403;
  if (cls === '08' || cls === '53') return 503;
  if (['40', '54', '55', '57', 'XX'].includes(cls)) return 500;
  return 400;
}

/** Fields of a `pg` DatabaseError that PostgREST reports. */
export interface SqlErrorLike {
  readonly code: string;
  readonly message: string;
  readonly detail?: string | undefined;
  readonly hint?: string | undefined;
}

/**
 * The response for an error raised by the database, including PostgREST's `RAISE SQLSTATE 'PGRST'`
 * escape hatch (message = JSON body, detail = `{"status", "status_text"?, "headers"?}`).
 */
export function responseForSqlError(error: SqlErrorLike, anonymous: boolean): PostgrestErrorResponse {
  if (error.code === 'PGRST') {
    const custom = customPgrstError(error);
    if (custom) return custom;
  }
  return {
    status: httpStatusForSqlState(error.code, anonymous),
    body: {
      code: error.code,
      details: error.detail ?? null,
      hint: error.hint ?? null,
      message: error.message,
    },
  };
}

function customPgrstError(error: SqlErrorLike): PostgrestErrorResponse | undefined {
  try {
    const body = JSON.parse(error.message) as Partial<PostgrestErrorBody>;
    const detail = JSON.parse(error.detail ?? '') as { status?: unknown; headers?: unknown };
    if (typeof detail.status !== 'number') return undefined;
    const headers: Record<string, string> = {};
    if (detail.headers !== null && typeof detail.headers === 'object') {
      for (const [name, value] of Object.entries(detail.headers)) headers[name] = String(value);
    }
    return {
      status: detail.status,
      headers,
      body: {
        code: body.code ?? '',
        details: body.details ?? null,
        hint: body.hint ?? null,
        message: body.message ?? '',
      },
    };
  } catch {
    return undefined;
  }
}

/** A PostgREST-generated (`PGRSTxxx`) error. */
export function pgrstError(
  status: number,
  code: string,
  message: string,
  details: string | null = null,
  hint: string | null = null,
  headers?: Record<string, string>,
): PostgrestErrorResponse {
  return { status, body: { code, details, hint, message }, ...(headers ? { headers } : {}) };
}
