import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import WebSocket from 'ws';

/** Credentials for {@link createSupabaseClient}: an API key, optionally with a signed-in user's access token. */
export interface SupabaseClientCredentials {
  /** API key sent as `apikey` (and as the Bearer token when there is no access token). Default: the anon key. */
  readonly key?: string;
  /** A user access token, sent as `Authorization: Bearer` to REST and as `access_token` to Realtime. */
  readonly accessToken?: string;
}

/**
 * An unmodified supabase-js client for a local stack, set up for Node 20 (`ws` transport, no session storage).
 * Pass an API key (`stack.serviceRoleKey`) or a user's `accessToken`; the default is the anon key.
 */
export function createSupabaseClient(
  stack: { readonly url: string; readonly anonKey: string },
  credentials: SupabaseClientCredentials = {},
): SupabaseClient {
  const key = credentials.key ?? stack.anonKey;
  const { accessToken } = credentials;
  return createClient(stack.url, key, {
    realtime: { transport: WebSocket as unknown as typeof globalThis.WebSocket },
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    ...(accessToken === undefined ? {} : { accessToken: async () => accessToken }),
  });
}
