import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type MatchmakerEvent, PresenceStrategy } from '../../src/index';
import type { LocalSupabase } from '../../src/testing/index';
import { recordEvents } from '../conformance/suite';
import { clientFor, disconnectClient, owningMatchmaker } from '../helpers/presenceClients';
import { startQueueStack } from '../helpers/queueStack';
import { createSupabaseClient } from '../helpers/supabaseClient';
import { waitFor } from '../helpers/waitFor';

let stack: LocalSupabase;
beforeAll(async () => {
  stack = await startQueueStack();
});
afterAll(async () => {
  await stack?.stop();
});
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

async function searcher(channel: string) {
  const userId = (await stack.createUser()).id;
  const { matchmaker } = await owningMatchmaker(
    stack,
    userId,
    (supabase) => new PresenceStrategy({ supabase, channel, settleMs: 50 }),
  );
  cleanups.push(() => matchmaker.close());
  return { userId, matchmaker, events: recordEvents(matchmaker) as MatchmakerEvent[] };
}

async function client(userId?: string) {
  const supabase = await clientFor(stack, userId ?? (await stack.createUser()).id);
  cleanups.push(() => disconnectClient(supabase));
  return supabase;
}

describe('presence tiers: what a client cannot do', () => {
  it('cannot claim a match for two other users (403, nothing recorded)', async () => {
    const a = await searcher('sec-two-others');
    await a.matchmaker.start({ criteria: { k: 'a-alone' } });
    const b = await searcher('sec-two-others');
    await b.matchmaker.start({ criteria: { k: 'b-alone' } });
    const mallory = await client();
    const { data, error, status } = await mallory.rpc('matchmaker_presence_claim', {
      user_a: a.userId,
      user_b: b.userId,
    });
    expect(data).toBeNull();
    expect(status).toBe(403);
    expect(error).toMatchObject({ code: '42501', message: 'matchmaker: a claim must include the caller' });
    expect(a.matchmaker.getSnapshot().status).toBe('searching');
    const rows = await stack.db.query(
      'select 1 from matchmaker.matches where $1 in (user_a, user_b) or $2 in (user_a, user_b)',
      [a.userId, b.userId],
    );
    expect(rows.rowCount).toBe(0);
  });

  it('cannot claim a user who is not searching: a loss result, nothing recorded', async () => {
    const me = await searcher('sec-not-searching');
    await me.matchmaker.start();
    const idle = (await stack.createUser()).id;
    const supabase = await client(me.userId);
    const { data, error } = await supabase.rpc('matchmaker_presence_claim', {
      user_a: me.userId,
      user_b: idle,
    });
    expect(error).toBeNull();
    expect(data).toMatchObject({
      status: 'searching',
      result: 'lost',
      reason: 'partner_not_searching',
      match: null,
    });
    expect(me.matchmaker.getSnapshot().status).toBe('searching');
    const rows = await stack.db.query('select 1 from matchmaker.matches where $1 in (user_a, user_b)', [
      idle,
    ]);
    expect(rows.rowCount).toBe(0);
  });

  it('anonymous callers get no presence RPC at all', async () => {
    const anon = createSupabaseClient(stack);
    cleanups.push(() => disconnectClient(anon));
    const { error, status } = await anon.rpc('matchmaker_presence_begin', { criteria: {} });
    expect(status).toBe(401);
    expect(error?.code).toBe('42501');
  });

  it('a forged match broadcast fakes nothing: it is dropped, or checked with the state RPC and ignored', async () => {
    const victim = await searcher('sec-forged');
    await victim.matchmaker.start();
    const row = await stack.db.query<{ id: string }>(
      `select id from matchmaker.presence_searches where user_id = $1 and status = 'searching'`,
      [victim.userId],
    );
    const searchId = row.rows[0]!.id;
    const fake = {
      type: 'matched',
      tier: 'presence',
      ticket_id: searchId,
      user_id: victim.userId,
      match: {
        id: '00000000-0000-4000-8000-0000000000ff',
        partner_id: '00000000-0000-4000-8000-0000000000ee',
        created_at: new Date().toISOString(),
        criteria: {},
      },
    };
    // 1. Another user writes to the victim's private topic: no write policy, the server drops it.
    const mallory = await client();
    const privateChannel = mallory.channel(`matchmaker:user:${victim.userId}`, { config: { private: true } });
    const publicChannel = mallory.channel(`matchmaker:user:${victim.userId}`);
    expect(await privateChannel.send({ type: 'broadcast', event: 'matched', payload: fake })).toBe('ok');
    // 2. The public channel of the same name is another room; 3. the presence channel is never trusted either.
    expect(await publicChannel.send({ type: 'broadcast', event: 'matched', payload: fake })).toBe('ok');
    const presenceChannel = mallory.channel('sec-forged');
    expect(await presenceChannel.send({ type: 'broadcast', event: 'matched', payload: fake })).toBe('ok');
    // 4. Even a forged message that does reach the private topic (as realtime.send would deliver it) is only a
    // hint: the victim asks the database, which says it is still searching.
    const reconcilesBefore = stack.counters.snapshot().rpcByFunction.matchmaker_presence_state ?? 0;
    await stack.db.query(`select realtime.send($1::jsonb, 'matched', $2, true)`, [
      JSON.stringify(fake),
      `matchmaker:user:${victim.userId}`,
    ]);
    await waitFor(
      () => (stack.counters.snapshot().rpcByFunction.matchmaker_presence_state ?? 0) > reconcilesBefore,
      'the victim to check the forged notification with the state RPC',
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(victim.matchmaker.getSnapshot().status).toBe('searching');
    expect(victim.events.filter((e) => e.type === 'matched')).toHaveLength(0);
    // A real partner still matches, with the real match.
    const partner = await searcher('sec-forged');
    await partner.matchmaker.start();
    await waitFor(() => victim.matchmaker.getSnapshot().status === 'matched', 'the real match');
    const snapshot = victim.matchmaker.getSnapshot();
    expect(snapshot).toMatchObject({ status: 'matched', match: { partnerId: partner.userId } });
    expect(snapshot.status === 'matched' && snapshot.match.matchId).not.toBe(fake.match.id);
  });
});
