/**
 * Security of the queue tier: RLS on every table, grants, the private per-user Realtime topic, and what
 * anon, other users and rightless roles cannot do.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asRole, cancel, createQueueDb, heartbeat, join, newUser, type QueueDb, state } from './queueDb';

let db: QueueDb;
let admin: pg.Client;
let s: pg.Client;
const [alice, bob, carol] = [newUser(), newUser(), newUser()];
let bobTicket: string;

const as = (uid: string) => ({ sub: uid, role: 'authenticated' });

beforeAll(async () => {
  db = await createQueueDb();
  admin = await db.client();
  s = await db.client();
  // bob waits; alice joins later and is matched with him; carol never joins.
  bobTicket = (await join(s, bob)).ticket!.id;
});
afterAll(async () => {
  await db?.drop();
});

describe('another user', () => {
  it("cannot read, cancel, heartbeat, inspect or claim someone else's ticket", async () => {
    const seen = await asRole(s, 'authenticated', as(alice), 'select user_id from matchmaker.tickets');
    expect(seen).toEqual([]);
    expect(await asRole(s, 'authenticated', as(bob), 'select id from matchmaker.tickets')).toEqual([
      { id: bobTicket },
    ]);
    await expect(cancel(s, alice, bobTicket)).rejects.toMatchObject({ code: 'MM409' });
    await expect(heartbeat(s, alice, bobTicket)).rejects.toMatchObject({ code: 'MM409' });
    await expect(state(s, alice, bobTicket)).rejects.toMatchObject({ code: 'MM409' });
    await expect(join(s, alice, {}, bobTicket)).rejects.toMatchObject({ code: 'MM409' });
    expect((await state(s, bob)).status).toBe('waiting');
    // Impersonation through the internal functions is refused.
    await expect(
      asRole(s, 'authenticated', as(alice), `select matchmaker._cancel($1::uuid, null)`, [bob]),
    ).rejects.toMatchObject({ code: '42501' });
    for (const fn of ['matchmaker._join', 'matchmaker._join_general']) {
      await expect(
        asRole(s, 'authenticated', as(alice), `select ${fn}($1::uuid, '{}'::jsonb, null)`, [bob]),
      ).rejects.toMatchObject({ code: '42501' });
    }
    await expect(
      asRole(s, 'authenticated', as(alice), `delete from matchmaker.tickets`),
    ).rejects.toMatchObject({ code: '42501' });
    await expect(
      asRole(s, 'authenticated', as(alice), `update matchmaker.settings set ticket_ttl = '1 year'`),
    ).rejects.toMatchObject({ code: '42501' });
    expect((await state(s, bob)).status).toBe('waiting');
  });

  it('reads only their own history and matches (the postgres_changes source is RLS-filtered)', async () => {
    const matched = await join(s, alice); // pairs with bob
    expect(matched.match!.partner_id).toBe(bob);
    const carolSees = await asRole(
      s,
      'authenticated',
      as(carol),
      'select user_id from matchmaker.ticket_history',
    );
    expect(carolSees).toEqual([]);
    const carolMatches = await asRole(s, 'authenticated', as(carol), 'select id from matchmaker.matches');
    expect(carolMatches).toEqual([]);
    const aliceSees = await asRole(
      s,
      'authenticated',
      as(alice),
      'select user_id from matchmaker.ticket_history',
    );
    expect(aliceSees).toEqual([{ user_id: alice }]);
    const aliceMatches = await asRole(
      s,
      'authenticated',
      as(alice),
      'select user_a, user_b from matchmaker.matches',
    );
    expect(aliceMatches).toEqual([{ user_a: bob, user_b: alice }]);
    const published = await admin.query(
      `select 1 from pg_publication_tables where pubname = 'supabase_realtime' and schemaname = 'matchmaker' and tablename = 'ticket_history'`,
    );
    expect(published.rowCount).toBe(1);
  });

  it("cannot receive or forge someone else's notifications on the private topic", async () => {
    // What Realtime does on a private-channel join: set realtime.topic and check SELECT on realtime.messages.
    const read = (uid: string, topicOf: string) =>
      asRole(
        s,
        'authenticated',
        as(uid),
        `select set_config('realtime.topic', $1, true) as t, (select count(*)::int from realtime.messages
           where topic = $1 and extension = 'broadcast') as n`,
        [`matchmaker:user:${topicOf}`],
      ).then((rows) => rows[0]!.n as number);
    expect(await read(bob, bob)).toBe(1);
    expect(await read(alice, alice)).toBe(1);
    expect(await read(carol, bob)).toBe(0);
    expect(await read(alice, bob)).toBe(0);
    // Writes (a forged 'matched' to bob) are refused: there is no INSERT policy on the matchmaker topics.
    await expect(
      asRole(
        s,
        'authenticated',
        as(carol),
        `insert into realtime.messages (topic, extension, event, payload, private)
         values ($1, 'broadcast', 'matched', '{}', true)`,
        [`matchmaker:user:${bob}`],
      ),
    ).rejects.toMatchObject({ code: '42501' });
  });
});

describe('roles', () => {
  it('anon can execute nothing and read nothing', async () => {
    const functions = await admin.query(`select p.oid::regprocedure::text as fn, p.prokind
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'matchmaker' or (n.nspname = 'public' and p.proname like 'matchmaker\\_%')`);
    expect(functions.rows.length).toBeGreaterThan(20);
    for (const { fn } of functions.rows) {
      const r = await admin.query(`select has_function_privilege('anon', $1, 'execute') as ok`, [fn]);
      expect(r.rows[0].ok, fn).toBe(false);
    }
    const tables =
      await admin.query(`select c.oid::regclass::text as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'matchmaker' and c.relkind in ('r', 'S')`);
    for (const { t } of tables.rows) {
      const r = await admin.query(
        `select has_table_privilege('anon', $1, 'select') or has_table_privilege('anon', $1, 'insert')
                or has_table_privilege('anon', $1, 'update') or has_table_privilege('anon', $1, 'delete') as ok`,
        [t],
      );
      expect(r.rows[0].ok, t).toBe(false);
    }
    expect(
      (await admin.query(`select has_schema_privilege('anon', 'matchmaker', 'usage') as ok`)).rows[0].ok,
    ).toBe(false);
    for (const call of [
      'select public.matchmaker_join()',
      'select public.matchmaker_cancel()',
      'select public.matchmaker_heartbeat()',
      'select public.matchmaker_state()',
      'select public.matchmaker_process()',
    ]) {
      await expect(asRole(s, 'anon', { role: 'anon' }, call), call).rejects.toMatchObject({ code: '42501' });
    }
  });

  it('every table has RLS; every function has an empty search_path; nothing is executable by PUBLIC', async () => {
    const noRls =
      await admin.query(`select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'matchmaker' and c.relkind = 'r' and not c.relrowsecurity`);
    expect(noRls.rows).toEqual([]);
    const rows =
      await admin.query(`select p.oid::regprocedure::text as fn, p.prosecdef, p.proconfig, p.proacl::text as acl, p.prokind
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'matchmaker' or (n.nspname = 'public' and p.proname like 'matchmaker\\_%')`);
    for (const row of rows.rows) {
      if (row.prokind === 'f') expect(row.proconfig, row.fn).toContain('search_path=""');
      expect(row.acl ?? '', row.fn).not.toMatch(/(^|[{,])=X/);
    }
    // (Other tiers' migrations add their own wrappers; the queue tier's definers are exactly these.)
    const definers = rows.rows
      .filter((r) => r.prosecdef && !String(r.fn).includes('presence'))
      .map((r) => r.fn)
      .sort();
    expect(definers).toEqual([
      'matchmaker.forget_user(uuid)',
      'matchmaker_cancel(uuid)',
      'matchmaker_heartbeat(uuid)',
      'matchmaker_join(jsonb,uuid)',
      'matchmaker_process(integer,text)',
      'matchmaker_state(uuid)',
    ]);
  });

  it('a null auth.uid() is refused with 42501 and a hint', async () => {
    await expect(
      asRole(s, 'authenticated', { role: 'authenticated' }, 'select public.matchmaker_join()'),
    ).rejects.toMatchObject({
      code: '42501',
      message: 'matchmaker: not authenticated',
      hint: expect.stringContaining('auth.uid() is null'),
    });
  });

  it('the processor is refused to authenticated users, and to a service-role session with a user JWT', async () => {
    await expect(
      asRole(s, 'authenticated', as(alice), 'select public.matchmaker_process()'),
    ).rejects.toMatchObject({ code: '42501', message: 'permission denied for function matchmaker_process' });
    await expect(
      asRole(s, 'service_role', as(alice), 'select public.matchmaker_process()'),
    ).rejects.toMatchObject({ code: '42501', message: 'matchmaker: service role required' });
    const ok = await asRole(
      s,
      'service_role',
      { role: 'service_role' },
      'select public.matchmaker_process() as r',
    );
    expect(ok[0]!.r).toMatchObject({ pairs: 0 });
  });

  it('a role with no rights cannot forge a match or touch the queue', async () => {
    await admin.query(`do $$ begin if not exists (select 1 from pg_roles where rolname = 'sm_nobody') then
      create role sm_nobody nologin; end if; end $$; grant sm_nobody to current_user;`);
    for (const call of [
      'select public.matchmaker_join()',
      'select public.matchmaker_process()',
      `select matchmaker._apply_pairs(array[gen_random_uuid()], array[gen_random_uuid()], now(), '{}')`,
      `select matchmaker._join(gen_random_uuid(), '{}', null)`,
      `insert into matchmaker.matches (user_a, user_b, ticket_a, ticket_b, pool, criteria) values (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), '{}', '{}')`,
      'call matchmaker.run_maintenance()',
    ]) {
      await expect(asRole(s, 'sm_nobody', null, call), call).rejects.toMatchObject({ code: '42501' });
    }
  });
});
