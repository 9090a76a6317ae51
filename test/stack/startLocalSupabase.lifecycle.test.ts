import type { RealtimePostgresInsertPayload } from '@supabase/supabase-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalSupabase, startLocalSupabase } from '../../src/testing';
import { createSupabaseClient } from '../helpers/supabaseClient';
import { waitFor } from '../helpers/waitFor';

async function databaseExists(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl);
  const name = url.pathname.slice(1);
  url.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    const result = await admin.query('select 1 from pg_database where datname = $1', [name]);
    return result.rowCount === 1;
  } finally {
    await admin.end();
  }
}

describe('startLocalSupabase lifecycle', () => {
  it('serves one port, creates users, and removes everything on stop (idempotently)', async () => {
    const stack = await startLocalSupabase();
    try {
      expect(stack.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const user = await stack.createUser({ email: 'grace@example.test', userMetadata: { name: 'Grace' } });
      const row = await stack.db.query('select email, raw_user_meta_data from auth.users where id = $1', [
        user.id,
      ]);
      expect(row.rows).toEqual([{ email: 'grace@example.test', raw_user_meta_data: { name: 'Grace' } }]);

      const notFound = await fetch(`${stack.url}/auth/v1/user`);
      expect(notFound.status).toBe(404);
      await notFound.body?.cancel();
      expect(await databaseExists(stack.databaseUrl)).toBe(true);
    } finally {
      await Promise.all([stack.stop(), stack.stop()]);
    }
    expect(await databaseExists(stack.databaseUrl)).toBe(false);
    await expect(fetch(`${stack.url}/rest/v1/rpc/anything`, { method: 'POST' })).rejects.toThrow();
  });
});

describe('the database half through supabase-js Realtime', () => {
  let stack: LocalSupabase;

  beforeAll(async () => {
    stack = await startLocalSupabase();
    await stack.db.query(`
      create table public.tickets (id bigint generated always as identity primary key, player text not null);
      alter publication supabase_realtime add table public.tickets;
      create function public.announce(room text) returns void language sql security definer set search_path = ''
        as $$ select realtime.send(jsonb_build_object('room', room), 'announced', room, false) $$;
    `);
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('delivers a committed INSERT as postgres_changes', async () => {
    const supabase = createSupabaseClient(stack);
    const received: RealtimePostgresInsertPayload<{ id: number; player: string }>[] = [];
    let subscribedToPostgres = false;
    const channel = supabase
      .channel('tickets')
      .on('system', {}, (message: { extension?: string; status?: string }) => {
        if (message.extension === 'postgres_changes' && message.status === 'ok') subscribedToPostgres = true;
      })
      .on<{ id: number; player: string }>(
        'postgres_changes',
        { event: 'INSERT', schema: 'public', table: 'tickets' },
        (payload) => received.push(payload),
      )
      .subscribe();
    try {
      await waitFor(() => subscribedToPostgres, '"Subscribed to PostgreSQL"');
      await stack.db.query(`insert into public.tickets (player) values ('ada')`);
      const [change] = await waitFor(() => (received.length > 0 ? received : undefined), 'the INSERT');
      expect(change).toMatchObject({
        schema: 'public',
        table: 'tickets',
        eventType: 'INSERT',
        new: { id: 1, player: 'ada' },
        errors: null,
      });
    } finally {
      await supabase.removeChannel(channel);
      await supabase.realtime.disconnect();
    }
  });

  it('delivers realtime.send() called inside an RPC as a broadcast', async () => {
    const supabase = createSupabaseClient(stack);
    const received: unknown[] = [];
    let subscribed = false;
    const channel = supabase
      .channel('lobby')
      .on('broadcast', { event: 'announced' }, (message) => received.push(message.payload))
      .subscribe((status) => {
        if (status === 'SUBSCRIBED') subscribed = true;
      });
    try {
      await waitFor(() => subscribed, 'SUBSCRIBED');
      const { status } = await supabase.rpc('announce', { room: 'lobby' });
      expect(status).toBe(204);
      const [payload] = await waitFor(() => (received.length > 0 ? received : undefined), 'the broadcast');
      expect(payload).toMatchObject({ room: 'lobby' });
    } finally {
      await supabase.removeChannel(channel);
      await supabase.realtime.disconnect();
    }
  });
});
