import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  isMatchmakingError,
  Matchmaker,
  type MatchmakerEvent,
  type QueueNotifyMode,
  QueueStrategy,
} from '../../src/index';
import type { LocalSupabase } from '../../src/testing/index';
import { recordEvents } from '../conformance/suite';
import { startQueueStack } from '../helpers/queueStack';
import { createSupabaseClient } from '../helpers/supabaseClient';
import { startTcpProxy, type TcpProxy } from '../helpers/tcpProxy';
import { waitFor } from '../helpers/waitFor';

let stack: LocalSupabase;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  stack = await startQueueStack({ realtime: { errorDelays: { joinErrorMs: 50, connectErrorMs: 50 } } });
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await stack.db.query(
    "update matchmaker.settings set ticket_ttl = interval '5 minutes', heartbeat_timeout = interval '30 seconds'",
  );
});
afterAll(async () => {
  await stack?.stop();
});

function clientFor(url: string, accessToken: string): SupabaseClient {
  const supabase = createClient(url, stack.anonKey, {
    accessToken: async () => accessToken,
    realtime: { transport: WebSocket as unknown as typeof globalThis.WebSocket },
    auth: { persistSession: false, autoRefreshToken: false },
  });
  cleanups.push(async () => {
    await supabase.removeAllChannels();
    await supabase.realtime.disconnect();
  });
  return supabase;
}

async function matchmakerFor(
  userToken: string,
  { notify = 'broadcast', url = stack.url }: { notify?: QueueNotifyMode; url?: string } = {},
): Promise<{ matchmaker: Matchmaker; events: MatchmakerEvent[] }> {
  const matchmaker = new Matchmaker(new QueueStrategy({ supabase: clientFor(url, userToken), notify }));
  cleanups.unshift(() => matchmaker.close());
  return { matchmaker, events: recordEvents(matchmaker) };
}

async function proxy(): Promise<TcpProxy> {
  const p = await startTcpProxy(stack.url);
  cleanups.push(() => p.close());
  return p;
}

async function runProcessor(): Promise<unknown> {
  const service = createSupabaseClient(stack, { key: stack.serviceRoleKey });
  const { data, error } = await service.rpc('matchmaker_process', {});
  if (error) throw new Error(error.message);
  return data;
}

describe('QueueStrategy against the local stack', () => {
  it.each(['broadcast', 'postgres_changes'] as const)(
    '%s: a match made while the client was offline arrives after it reconnects',
    async (notify) => {
      const [alice, bob] = [await stack.createUser(), await stack.createUser()];
      const net = await proxy();
      const a = await matchmakerFor(alice.accessToken, { notify, url: net.url });
      const joinsBefore = stack.counters.joins;
      await a.matchmaker.start();
      await waitFor(() => stack.counters.joins > joinsBefore, 'alice subscribed');
      net.goOffline();
      const b = await matchmakerFor(bob.accessToken);
      await b.matchmaker.start();
      await waitFor(() => b.matchmaker.getSnapshot().status === 'matched', 'bob matched');
      expect(a.matchmaker.getSnapshot().status).toBe('searching');
      net.goOnline();
      const matched = await waitFor(() => {
        const s = a.matchmaker.getSnapshot();
        return s.status === 'matched' ? s : undefined;
      }, 'alice matched after reconnect');
      expect(matched.match.partnerId).toBe(bob.id);
      expect(a.events.filter((e) => e.type === 'matched')).toHaveLength(1);
    },
  );

  it('a cancel that fails on the network rejects, keeps the search, and a retry cancels it', async () => {
    const alice = await stack.createUser();
    const net = await proxy();
    const a = await matchmakerFor(alice.accessToken, { url: net.url });
    await a.matchmaker.start();
    net.goOffline();
    const failure = await a.matchmaker.cancel().catch((error: unknown) => error);
    expect(isMatchmakingError(failure, 'unavailable')).toBe(true);
    expect(a.matchmaker.getSnapshot().status).toBe('searching');
    net.goOnline();
    expect(await a.matchmaker.cancel()).toBe(true);
    const { rows } = await stack.db.query(
      'select count(*)::int as n from matchmaker.tickets where user_id = $1',
      [alice.id],
    );
    expect(rows[0].n).toBe(0);
  });

  it('an expired ticket ends the search with reason expired', async () => {
    await stack.db.query("update matchmaker.settings set ticket_ttl = interval '1 second'");
    const alice = await stack.createUser();
    const a = await matchmakerFor(alice.accessToken);
    await a.matchmaker.start();
    await waitFor(async () => {
      await runProcessor();
      return a.matchmaker.getSnapshot().status === 'cancelled';
    }, 'alice expired');
    expect(a.matchmaker.getSnapshot()).toMatchObject({ status: 'cancelled', reason: 'expired' });
  });

  it('a client that stops heartbeating is skipped, retired as disconnected, and told so when it returns', async () => {
    await stack.db.query("update matchmaker.settings set heartbeat_timeout = interval '2 seconds'");
    const [alice, bob] = [await stack.createUser(), await stack.createUser()];
    const net = await proxy();
    const a = await matchmakerFor(alice.accessToken, { url: net.url });
    await a.matchmaker.start();
    net.goOffline();
    await waitFor(async () => {
      const { rows } = await stack.db.query(
        "select count(*)::int as n from matchmaker.tickets where user_id = $1 and last_seen_at < clock_timestamp() - interval '2 seconds'",
        [alice.id],
      );
      return rows[0].n === 1;
    }, 'alice stale');
    const b = await matchmakerFor(bob.accessToken);
    await b.matchmaker.start();
    await runProcessor();
    expect(b.matchmaker.getSnapshot().status).toBe('searching');
    const { rows } = await stack.db.query(
      'select outcome from matchmaker.ticket_history where user_id = $1',
      [alice.id],
    );
    expect(rows).toEqual([{ outcome: 'disconnected' }]);
    net.goOnline();
    await waitFor(() => a.matchmaker.getSnapshot().status === 'cancelled', 'alice told');
    expect(a.matchmaker.getSnapshot()).toMatchObject({ reason: 'disconnected' });
    expect(a.events.some((e) => e.type === 'error' && !e.fatal)).toBe(true);
  });

  it("a user cannot listen to another user's notifications", async () => {
    const [alice, bob] = [await stack.createUser(), await stack.createUser()];
    const snoop = clientFor(stack.url, alice.accessToken);
    const received: unknown[] = [];
    const statuses: string[] = [];
    snoop
      .channel(`matchmaker:user:${bob.id}`, { config: { private: true } })
      .on('broadcast', { event: '*' }, (message) => received.push(message))
      .subscribe((status, error) => statuses.push(`${status}${error ? `: ${error.message}` : ''}`));
    await waitFor(() => statuses.find((s) => s.startsWith('CHANNEL_ERROR')), 'join refused');
    expect(statuses.join('\n')).toMatch(
      /Unauthorized: You do not have permissions to read from this Channel topic/,
    );
    const carol = await stack.createUser();
    const b = await matchmakerFor(bob.accessToken);
    const c = await matchmakerFor(carol.accessToken);
    await b.matchmaker.start();
    await c.matchmaker.start();
    await waitFor(() => b.matchmaker.getSnapshot().status === 'matched', 'bob matched');
    expect(received).toEqual([]);
  });

  it("a user cannot cancel another user's ticket", async () => {
    const [alice, bob] = [await stack.createUser(), await stack.createUser()];
    const b = await matchmakerFor(bob.accessToken);
    await b.matchmaker.start();
    const { rows } = await stack.db.query('select id from matchmaker.tickets where user_id = $1', [bob.id]);
    const { error, status } = await createSupabaseClient(stack, { accessToken: alice.accessToken }).rpc(
      'matchmaker_cancel',
      { ticket_id: rows[0].id },
    );
    expect(status).toBe(400);
    expect(error?.code).toBe('MM409');
    expect(b.matchmaker.getSnapshot().status).toBe('searching');
  });
});
