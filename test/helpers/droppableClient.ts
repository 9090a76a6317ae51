import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import type { LocalSupabase } from '../../src/testing/index';

/** A signed-in supabase-js client whose WebSocket the test can kill, as a network drop would. */
export interface DroppableClient {
  readonly supabase: SupabaseClient;
  /** Sockets this client opened, oldest first. */
  readonly sockets: WebSocket[];
  /** Kill the current socket without a closing handshake; supabase-js reconnects by itself. */
  drop(): void;
  /** Remove every channel and disconnect. */
  close(): Promise<void>;
}

/** An unmodified supabase-js client for `userId` with a `ws` transport that remembers its sockets. */
export async function droppableClient(stack: LocalSupabase, userId: string): Promise<DroppableClient> {
  const token = await stack.signToken({ sub: userId, role: 'authenticated', aud: 'authenticated' });
  const sockets: WebSocket[] = [];
  class RememberingWebSocket extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  const supabase = createClient(stack.url, stack.anonKey, {
    realtime: { transport: RememberingWebSocket as unknown as typeof globalThis.WebSocket },
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    accessToken: async () => token,
  });
  return {
    supabase,
    sockets,
    drop() {
      sockets.at(-1)?.terminate();
    },
    async close() {
      await supabase.removeAllChannels();
      await supabase.realtime.disconnect();
    },
  };
}
