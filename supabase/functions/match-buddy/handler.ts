// match-buddy: the queue tier over HTTP, for hosts who want the design's Edge Function shape.
//
//   POST /functions/v1/match-buddy   Authorization: Bearer <user access token>
//   { "action": "join", "criteria"?: { ... }, "ticket_id"?: "<uuid>" }   -> matchmaker_join
//   { "action": "leave" | "cancel", "ticket_id"?: "<uuid>" }             -> matchmaker_cancel
//   { "action": "heartbeat", "ticket_id"?: "<uuid>" }                    -> matchmaker_heartbeat
//   { "action": "state" }                                                -> matchmaker_state
//
// The function calls the RPCs AS THE USER (their JWT is forwarded), so auth.uid() inside the database is the
// caller and nobody can act for someone else; it never needs the service-role key. Answers are the RPCs' JSON
// objects (see supabase/migrations/*_matchmaker_queue.sql) with status 200; errors are
// { "error": { "code", "message", "hint" } } with the status PostgREST gave (400, 401, 403, ...), or 400/405/415
// for a malformed request. Pairing happens inside matchmaker_join, so there is no processor call here.

import { createClient } from 'npm:@supabase/supabase-js@2.119.1';

const ACTIONS = {
  join: 'matchmaker_join',
  leave: 'matchmaker_cancel',
  cancel: 'matchmaker_cancel',
  heartbeat: 'matchmaker_heartbeat',
  state: 'matchmaker_state',
} as const;

type Action = keyof typeof ACTIONS;

const CORS_HEADERS: Record<string, string> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Headers': 'authorization, x-client-info, apikey, content-type',
  'Access-Control-Allow-Methods': 'POST, OPTIONS',
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...CORS_HEADERS, 'Content-Type': 'application/json' },
  });
}

function fail(status: number, code: string, message: string, hint: string | null = null): Response {
  return json(status, { error: { code, message, hint } });
}

/** Where the function finds the project; injectable for tests. */
export interface MatchBuddyEnv {
  readonly supabaseUrl: string;
  readonly anonKey: string;
}

/** Reads SUPABASE_URL and SUPABASE_ANON_KEY, which Supabase sets for every Edge Function. */
export function envFromDeno(): MatchBuddyEnv {
  const supabaseUrl = Deno.env.get('SUPABASE_URL');
  const anonKey = Deno.env.get('SUPABASE_ANON_KEY');
  if (!supabaseUrl || !anonKey)
    throw new Error('match-buddy needs SUPABASE_URL and SUPABASE_ANON_KEY in its environment');
  return { supabaseUrl, anonKey };
}

/** Handles one request. */
export async function handleMatchBuddy(req: Request, env: MatchBuddyEnv): Promise<Response> {
  if (req.method === 'OPTIONS') return new Response(null, { status: 204, headers: CORS_HEADERS });
  if (req.method !== 'POST') return fail(405, 'method_not_allowed', 'Use POST with a JSON body.');
  if (!(req.headers.get('content-type') ?? '').toLowerCase().includes('application/json')) {
    return fail(415, 'unsupported_media_type', 'Send the body as JSON (Content-Type: application/json).');
  }
  const authorization = req.headers.get('authorization');
  if (!authorization || !/^Bearer\s+\S+$/i.test(authorization)) {
    return fail(
      401,
      'unauthorized',
      'Sign in first: send the user access token as "Authorization: Bearer <token>".',
    );
  }

  let body: unknown;
  try {
    body = await req.json();
  } catch {
    return fail(400, 'invalid_json', 'The body is not valid JSON.');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return fail(400, 'invalid_body', 'The body must be a JSON object such as {"action":"join"}.');
  }
  const { action, criteria, ticket_id: ticketId } = body as Record<string, unknown>;
  if (typeof action !== 'string' || !(action in ACTIONS)) {
    return fail(400, 'invalid_action', `"action" must be one of ${Object.keys(ACTIONS).join(', ')}.`);
  }
  if (ticketId !== undefined && (typeof ticketId !== 'string' || !UUID.test(ticketId))) {
    return fail(
      400,
      'invalid_ticket_id',
      '"ticket_id" must be a UUID (use it as an idempotency key for retries).',
    );
  }
  if (
    criteria !== undefined &&
    (typeof criteria !== 'object' || criteria === null || Array.isArray(criteria))
  ) {
    return fail(
      400,
      'invalid_criteria',
      '"criteria" must be a JSON object of exact-match keys, e.g. {"lang":"en"}.',
    );
  }
  if (criteria !== undefined && action !== 'join') {
    return fail(400, 'invalid_criteria', '"criteria" is only accepted with action "join".');
  }

  const supabase = createClient(env.supabaseUrl, env.anonKey, {
    global: { headers: { Authorization: authorization } },
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  });
  const args: Record<string, unknown> = {};
  if (action === 'join') args.criteria = criteria ?? {};
  if (ticketId !== undefined && action !== 'state') args.ticket_id = ticketId;
  const { data, error, status } = await supabase.rpc(ACTIONS[action as Action], args);
  if (error) {
    return fail(status >= 400 ? status : 502, error.code || 'rpc_error', error.message, error.hint ?? null);
  }
  return json(200, data);
}
