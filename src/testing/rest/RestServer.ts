/**
 * A PostgREST emulation of the one surface the SDK uses: `POST /rest/v1/rpc/<fn>` (and read-only `GET`/`HEAD`),
 * following spec §8: the JWT decides the role, each request is one transaction with PostgREST's request
 * settings, results and errors have PostgREST's shapes and statuses.
 *
 * @packageDocumentation
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type pg from 'pg';
import { isJwtError, type JwtIssuer } from '../jwt';
import type { StackCounters } from '../StackCounters';
import { FunctionCatalog, type FunctionMatch, type FunctionSignature } from './FunctionCatalog';
import {
  type PostgrestErrorResponse,
  pgrstError,
  responseForSqlError,
  type SqlErrorLike,
} from './postgrestErrors';

/** Options of {@link RestServer}. */
export interface RestServerOptions {
  /** Pool on the stack database, connected as a user that may `SET ROLE` to the API roles. */
  readonly pool: pg.Pool;
  /** Verifies the `apikey` and the Bearer token (PostgREST rules: signature and `exp` if present). */
  readonly jwt: Pick<JwtIssuer, 'verifyPayload'>;
  /** Every call is counted here with {@link StackCounters.countRpc}. */
  readonly counters: StackCounters;
  /**
   * Schemas `Content-Profile` / `Accept-Profile` may pick (PostgREST `db-schemas`); the first is the default.
   * @defaultValue `['public']`
   */
  readonly exposedSchemas?: readonly string[];
  /**
   * Role of requests without a token or without a `role` claim (PostgREST `db-anon-role`).
   * @defaultValue `'anon'`
   */
  readonly anonRole?: string;
}

/** `(req, res) => Promise<boolean>`: handles the request and returns true, or returns false when the path is not ours. */
export type RestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

const RPC_PREFIX = '/rest/v1/rpc/';
const MAX_BODY_BYTES = 10 * 1024 * 1024;
const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

interface Caller {
  readonly role: string;
  readonly claims: Record<string, unknown>;
}

class HttpError extends Error {
  readonly response: PostgrestErrorResponse;
  constructor(response: PostgrestErrorResponse) {
    super(response.body.message);
    this.response = response;
  }
}

/**
 * PostgREST's `/rpc` endpoint over a `pg` pool.
 *
 * @remarks
 * - Role: the verified token's `role` claim (the `Authorization: Bearer` token, else the `apikey`), or the anon
 *   role. Only roles granted to `authenticator` may be assumed, as with PostgREST's authenticator login.
 * - Each request is one READ COMMITTED transaction that first sets `search_path`, `role`,
 *   `request.jwt.claims` (with `role`), `request.method`, `request.path`, `request.headers` and
 *   `request.cookies` with `set_config(..., true)`. `VOLATILE` functions run READ WRITE on POST; other
 *   functions, and every GET/HEAD, run READ ONLY.
 * - Function signatures are cached and reloaded on a miss or an `undefined_function` error, so functions
 *   created after start are callable without a schema reload.
 * - `response.status` / `response.headers` set by the function are honoured, as PostgREST does.
 *
 * @example
 * ```ts
 * const rest = new RestServer({ pool, jwt, counters });
 * http.createServer(async (req, res) => {
 *   if (await rest.handle(req, res)) return;
 *   res.writeHead(404).end();
 * });
 * ```
 */
export class RestServer {
  readonly #pool: pg.Pool;
  readonly #jwt: Pick<JwtIssuer, 'verifyPayload'>;
  readonly #counters: StackCounters;
  readonly #schemas: readonly string[];
  readonly #anonRole: string;
  readonly #catalog: FunctionCatalog;
  readonly #assumableRoles = new Set<string>();

  constructor(options: RestServerOptions) {
    this.#pool = options.pool;
    this.#jwt = options.jwt;
    this.#counters = options.counters;
    this.#schemas = options.exposedSchemas?.length ? [...options.exposedSchemas] : ['public'];
    this.#anonRole = options.anonRole ?? 'anon';
    this.#catalog = new FunctionCatalog(options.pool);
  }

  /** Forget cached function signatures (all of them); the next call reloads from `pg_proc`. */
  reloadSchemaCache(): void {
    this.#catalog.invalidate();
  }

  /** The request handler: answers `/rest/v1/rpc/*` and returns true, or returns false for any other path. */
  readonly handle: RestHandler = async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (!url.pathname.startsWith(RPC_PREFIX)) return false;
    const fnName = decodeURIComponent(url.pathname.slice(RPC_PREFIX.length));
    const method = (req.method ?? 'GET').toUpperCase();

    res.setHeader('Access-Control-Allow-Origin', '*');
    if (method === 'OPTIONS') {
      res.writeHead(200, {
        'Access-Control-Allow-Methods': 'GET, POST, HEAD, OPTIONS',
        'Access-Control-Allow-Headers': '*',
      });
      res.end();
      return true;
    }

    let failed = true;
    this.#counters.rpcInFlight += 1;
    try {
      const result = await this.#serve(req, url, method, fnName);
      failed = result.status >= 400;
      for (const [name, value] of Object.entries(result.headers)) res.setHeader(name, value);
      res.writeHead(result.status);
      res.end(method === 'HEAD' ? undefined : result.body);
    } catch (error) {
      const response =
        error instanceof HttpError
          ? error.response
          : pgrstError(500, 'PGRST000', error instanceof Error ? error.message : String(error));
      res.writeHead(response.status, { 'Content-Type': JSON_CONTENT_TYPE, ...response.headers });
      res.end(method === 'HEAD' ? undefined : JSON.stringify(response.body));
    } finally {
      this.#counters.rpcInFlight -= 1;
      this.#counters.countRpc(fnName, failed);
    }
    return true;
  };

  async #serve(
    req: IncomingMessage,
    url: URL,
    method: string,
    fnName: string,
  ): Promise<{ status: number; headers: Record<string, string>; body: string | undefined }> {
    if (method !== 'POST' && method !== 'GET' && method !== 'HEAD') {
      throw new HttpError(pgrstError(405, 'PGRST117', `Unsupported HTTP method: ${method}`));
    }
    const caller = await this.#authenticate(req, url);
    const readOnlyRequest = method !== 'POST';
    const schema = this.#schemaOf(req, readOnlyRequest ? 'accept-profile' : 'content-profile');
    const { args, argNames } = readOnlyRequest ? argsFromQuery(url) : await argsFromBody(req);

    const anonymous = caller.role === this.#anonRole;
    const payload = JSON.stringify(args);
    const attempt = async (reload: boolean) => {
      if (reload) this.#catalog.invalidate(schema, fnName);
      const fn = this.#resolved(
        await this.#catalog.match(schema, fnName, argNames),
        schema,
        fnName,
        argNames,
      );
      const readOnly = readOnlyRequest || !fn.fn.volatile;
      const context = { caller, schema, req, method, path: `/rpc/${fnName}`, readOnly };
      const outcome = await this.#runInTransaction(context, buildCall(fn, argNames), payload);
      return toHttpResult(fn.fn, outcome, req);
    };
    try {
      try {
        return await attempt(false);
      } catch (error) {
        // A stale cached signature (function dropped or replaced since): reload it once and retry.
        if (isSqlError(error) && error.code === '42883') return await attempt(true);
        throw error;
      }
    } catch (error) {
      if (isSqlError(error)) throw new HttpError(responseForSqlError(error, anonymous));
      throw error;
    }
  }

  #resolved(
    match: FunctionMatch,
    schema: string,
    fnName: string,
    argNames: readonly string[],
  ): { kind: 'named' | 'single-json'; fn: FunctionSignature } {
    if (match.kind === 'named' || match.kind === 'single-json') return { kind: match.kind, fn: match.fn };
    if (match.kind === 'ambiguous') {
      const list = match.candidates.map(describeSignature).join(', ');
      throw new HttpError(
        pgrstError(
          300,
          'PGRST203',
          `Could not choose the best candidate function between: ${list}`,
          null,
          'Try renaming the parameters or the function itself in the database so function overloading can be resolved',
        ),
      );
    }
    const sorted = [...argNames].sort();
    const qualified = `${schema}.${fnName}`;
    const withParams = sorted.length ? `with parameters ${sorted.join(', ')}` : 'without parameters';
    const first = match.overloads[0];
    throw new HttpError(
      pgrstError(
        404,
        'PGRST202',
        `Could not find the function ${qualified}${sorted.length ? `(${sorted.join(', ')})` : ' without parameters'} in the schema cache`,
        `Searched for the function ${qualified} ${withParams} or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.`,
        first
          ? `Perhaps you meant to call the function ${qualified}(${first.args.map((a) => a.name).join(', ')})`
          : null,
      ),
    );
  }

  async #authenticate(req: IncomingMessage, url: URL): Promise<Caller> {
    const apikey = header(req, 'apikey') ?? url.searchParams.get('apikey') ?? undefined;
    if (apikey === undefined) {
      throw new HttpError({
        status: 401,
        body: {
          message: 'No API key found in request',
          hint: 'No `apikey` request header or url param was found.',
        },
      });
    }
    try {
      await this.#jwt.verifyPayload(apikey);
    } catch {
      throw new HttpError({
        status: 401,
        body: {
          message: 'Invalid API key',
          hint: 'Double check your Supabase `anon` or `service_role` API key.',
        },
      });
    }
    const authorization = header(req, 'authorization');
    const bearer = authorization?.match(/^Bearer\s+(.+)$/i)?.[1]?.trim();
    const token = bearer ?? apikey;
    let claims: Record<string, unknown>;
    try {
      claims = await this.#jwt.verifyPayload(token);
    } catch (error) {
      throw new HttpError(jwtErrorResponse(error));
    }
    const role = typeof claims.role === 'string' && claims.role !== '' ? claims.role : this.#anonRole;
    await this.#checkAssumable(role);
    return { role, claims: { ...claims, role } };
  }

  async #checkAssumable(role: string): Promise<void> {
    if (this.#assumableRoles.has(role)) return;
    const { rows } = await this.#pool.query<{ ok: boolean | null }>(
      `select case when exists (select 1 from pg_catalog.pg_roles where rolname = $1)
                   then pg_catalog.pg_has_role('authenticator', $1, 'MEMBER') end as ok`,
      [role],
    );
    const ok = rows[0]?.ok;
    if (ok === true) {
      this.#assumableRoles.add(role);
      return;
    }
    const anonymous = role === this.#anonRole;
    throw new HttpError(
      ok === null
        ? pgrstError(400, '22023', `role "${role}" does not exist`)
        : pgrstError(anonymous ? 401 : 403, '42501', `permission denied to set role "${role}"`),
    );
  }

  #schemaOf(req: IncomingMessage, profileHeader: 'accept-profile' | 'content-profile'): string {
    const requested = header(req, profileHeader);
    const fallback = this.#schemas[0] ?? 'public';
    if (requested === undefined || requested === '') return fallback;
    if (!this.#schemas.includes(requested)) {
      throw new HttpError(
        pgrstError(406, 'PGRST106', `The schema must be one of the following: ${this.#schemas.join(', ')}`),
      );
    }
    return requested;
  }

  async #runInTransaction(context: CallContext, call: string, payload: string): Promise<CallOutcome> {
    const { caller, schema, req, method, path, readOnly } = context;
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      const lit = (value: string) => client.escapeLiteral(value);
      const searchPath = [...new Set([schema, 'public', 'extensions'])].map(quoteIdent).join(', ');
      await client.query(
        `begin isolation level read committed, ${readOnly ? 'read only' : 'read write'};
         select pg_catalog.set_config('search_path', ${lit(searchPath)}, true),
                pg_catalog.set_config('role', ${lit(caller.role)}, true),
                pg_catalog.set_config('request.jwt.claims', ${lit(JSON.stringify(caller.claims))}, true),
                pg_catalog.set_config('request.method', ${lit(method)}, true),
                pg_catalog.set_config('request.path', ${lit(path)}, true),
                pg_catalog.set_config('request.headers', ${lit(JSON.stringify(requestHeaders(req)))}, true),
                pg_catalog.set_config('request.cookies', ${lit(JSON.stringify(requestCookies(req)))}, true)`,
      );
      try {
        const { rows } = await client.query<CallOutcome>(call, [payload]);
        await client.query('commit');
        return rows[0] ?? { body: null, total: null, status: null, headers: null };
      } catch (error) {
        await client.query('rollback').catch((rollbackError: unknown) => {
          broken = toError(rollbackError);
        });
        throw error;
      }
    } catch (error) {
      if (!isSqlError(error)) broken ??= toError(error);
      throw error;
    } finally {
      client.release(broken);
    }
  }
}

interface CallContext {
  readonly caller: Caller;
  readonly schema: string;
  readonly req: IncomingMessage;
  readonly method: string;
  readonly path: string;
  readonly readOnly: boolean;
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

interface CallOutcome {
  body: string | null;
  total: string | null;
  status: string | null;
  headers: string | null;
}

function isSqlError(error: unknown): error is SqlErrorLike & Error {
  if (!(error instanceof Error) || !('severity' in error)) return false;
  const code: unknown = (error as Error & { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function describeSignature(fn: FunctionSignature): string {
  return `${fn.schema}.${fn.name}(${fn.args.map((a) => (a.name ? `${a.name} => ${a.type}` : a.type)).join(', ')})`;
}

/**
 * The SQL for one call. `$1` is the JSON payload: the named arguments as an object, decoded into typed values
 * with `jsonb_to_record` as PostgREST does, or the whole body for a single unnamed json/jsonb argument. The
 * function runs as a FROM item (so it runs even when its value is unused) inside an `OFFSET 0` subquery, and
 * `response.status` / `response.headers` are read after it. One row: `(body text, total bigint, status, headers)`.
 */
function buildCall(
  match: { kind: 'named' | 'single-json'; fn: FunctionSignature },
  argNames: readonly string[],
): string {
  const { fn } = match;
  const target = `${quoteIdent(fn.schema)}.${quoteIdent(fn.name)}`;
  let source: string;
  let invocation: string;
  if (match.kind === 'single-json') {
    source = `(select $1::${fn.args[0]?.type ?? 'jsonb'} as body) as _a`;
    invocation = `${target}(_a.body)`;
  } else {
    const given = fn.args.filter((a) => argNames.includes(a.name));
    source =
      given.length === 0
        ? '(select $1::jsonb as body) as _a'
        : `jsonb_to_record($1::jsonb) as _a(${given.map((a) => `${quoteIdent(a.name)} ${a.type}`).join(', ')})`;
    const namedArgs = given.map(
      (a) => `${a.variadic ? 'variadic ' : ''}${quoteIdent(a.name)} => _a.${quoteIdent(a.name)}`,
    );
    invocation = `${target}(${namedArgs.join(', ')})`;
  }
  let inner: string;
  switch (fn.result) {
    case 'void':
      inner = `select null::text as body, null::bigint as total from ${source} cross join lateral ${invocation} as _r`;
      break;
    case 'scalar':
      inner = `select pg_catalog.to_json(_r.v)::text as body, null::bigint as total
               from ${source} cross join lateral ${invocation} as _r(v)`;
      break;
    case 'composite':
      inner = `select pg_catalog.row_to_json(_r)::text as body, null::bigint as total
               from ${source} cross join lateral ${invocation} as _r`;
      break;
    case 'setof-scalar':
      inner = `select coalesce(pg_catalog.json_agg(_r.v), '[]')::text as body, count(*) as total
               from ${source} cross join lateral ${invocation} as _r(v)`;
      break;
    case 'setof-composite':
      inner = `select coalesce(pg_catalog.json_agg(_r), '[]')::text as body, count(*) as total
               from ${source} cross join lateral ${invocation} as _r`;
      break;
  }
  return `select _c.body, _c.total,
                 pg_catalog.current_setting('response.status', true) as status,
                 pg_catalog.current_setting('response.headers', true) as headers
          from (${inner} offset 0) as _c`;
}

function toHttpResult(
  fn: FunctionSignature,
  outcome: CallOutcome,
  req: IncomingMessage,
): { status: number; headers: Record<string, string>; body: string | undefined } {
  const headers: Record<string, string> = {};
  if (outcome.headers) {
    try {
      const list = JSON.parse(outcome.headers) as unknown;
      for (const entry of Array.isArray(list) ? list : [list]) {
        if (entry && typeof entry === 'object') {
          for (const [name, value] of Object.entries(entry)) headers[name] = String(value);
        }
      }
    } catch {
      // PostgREST rejects malformed response.headers; the function's result still stands here.
    }
  }
  const customStatus = outcome.status ? Number(outcome.status) : undefined;
  if (fn.result === 'void') {
    return { status: customStatus ?? 204, headers, body: undefined };
  }
  headers['Content-Type'] ??= JSON_CONTENT_TYPE;
  if (fn.result === 'setof-scalar' || fn.result === 'setof-composite') {
    const total = Number(outcome.total ?? 0);
    const exact = /count=(exact|planned|estimated)/.test(header(req, 'prefer') ?? '');
    headers['Content-Range'] = `${total === 0 ? '*' : `0-${total - 1}`}/${exact ? total : '*'}`;
  }
  return { status: customStatus ?? 200, headers, body: outcome.body ?? 'null' };
}

function jwtErrorResponse(error: unknown): PostgrestErrorResponse {
  const kind = isJwtError(error) ? error.kind : 'malformed';
  const message =
    kind === 'expired'
      ? 'JWT expired'
      : kind === 'signature'
        ? 'No suitable key or wrong key type'
        : kind === 'missing'
          ? 'Empty JWT is sent in Authorization header'
          : 'Expected 3 parts in JWT; got a malformed token';
  return pgrstError(401, kind === 'expired' ? 'PGRST303' : 'PGRST301', message, null, null, {
    'WWW-Authenticate': `Bearer error="invalid_token", error_description="${message}"`,
  });
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

function requestHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function requestCookies(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header(req, 'cookie') ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

function argsFromQuery(url: URL): { args: Record<string, string>; argNames: string[] } {
  const args: Record<string, string> = {};
  for (const [name, value] of url.searchParams) {
    if (name !== 'apikey') args[name] = value;
  }
  return { args, argNames: Object.keys(args) };
}

async function argsFromBody(req: IncomingMessage): Promise<{ args: unknown; argNames: string[] }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(pgrstError(413, 'PGRST102', 'Request body is too large'));
    chunks.push(buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return { args: {}, argNames: [] };
  let args: unknown;
  try {
    args = JSON.parse(text);
  } catch {
    throw new HttpError(pgrstError(400, 'PGRST102', 'Empty or invalid json'));
  }
  const argNames = args !== null && typeof args === 'object' && !Array.isArray(args) ? Object.keys(args) : [];
  return { args, argNames };
}
