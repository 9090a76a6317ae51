import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  asRole,
  createPresenceDb,
  newUser,
  notificationsOf,
  type PresenceDb,
  presence,
  userClaims,
} from './presenceDb';

let db: PresenceDb;
beforeAll(async () => {
  db = await createPresenceDb();
});
afterAll(async () => {
  await db?.drop();
});

async function sqlState(error: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await error;
  } catch (e) {
    return { code: (e as { code: string }).code, message: (e as Error).message };
  }
  throw new Error('expected an error');
}

describe('matchmaker_presence_begin / state / heartbeat / end', () => {
  it('opens one search per user, returns it again for the same criteria and supersedes it for others', async () => {
    const a = newUser();
    const first = await presence.begin(db.pool, a, { lang: 'en' });
    expect(first).toMatchObject({
      status: 'searching',
      result: 'created',
      user_id: a,
      topic: `matchmaker:user:${a}`,
    });
    expect(first.search?.started_us).toBeGreaterThan(0);
    expect(first.heartbeat_interval_ms).toBeLessThan(first.ttl_ms);
    const again = await presence.begin(db.pool, a, { lang: 'en' });
    expect(again).toMatchObject({ result: 'existing', search: { id: first.search?.id } });
    const other = await presence.begin(db.pool, a, { lang: 'fr' });
    expect(other.result).toBe('created');
    expect(other.search?.id).not.toBe(first.search?.id);
    expect(await presence.state(db.pool, a, first.search?.id)).toMatchObject({
      status: 'superseded',
      reason: 'criteria_changed',
    });
    const notes = await notificationsOf(db.pool, a);
    expect(notes.at(-1)).toMatchObject({
      event: 'cancelled',
      payload: { type: 'cancelled', tier: 'presence', ticket_id: first.search?.id, outcome: 'superseded' },
    });
  });

  it('uses search_id as an idempotency key, also after the search ended', async () => {
    const a = newUser();
    const id = '00000000-0000-4000-8000-000000000001';
    const created = await presence.begin(db.pool, a, {}, id);
    expect(created.search?.id).toBe(id);
    expect((await presence.begin(db.pool, a, {}, id)).result).toBe('existing');
    expect(await presence.end(db.pool, a, id)).toMatchObject({ status: 'cancelled', result: 'cancelled' });
    expect(await presence.begin(db.pool, a, {}, id)).toMatchObject({
      status: 'cancelled',
      result: 'existing',
    });
    const b = newUser();
    expect(await sqlState(presence.begin(db.pool, b, {}, id))).toMatchObject({ code: 'MM409' });
  });

  it('refuses invalid criteria with 22023', async () => {
    const a = newUser();
    for (const criteria of [[1], { 'bad key': 1 }, { k: { nested: 1 } }, { k: 'x'.repeat(201) }]) {
      expect(await sqlState(presence.begin(db.pool, a, criteria))).toMatchObject({ code: '22023' });
    }
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, i]));
    expect(await sqlState(presence.begin(db.pool, a, many))).toMatchObject({ code: '22023' });
  });

  it('heartbeat extends the search; an expired search is neither extended nor claimable', async () => {
    const [a, b] = [newUser(), newUser()];
    const started = await presence.begin(db.pool, a);
    const beat = await presence.heartbeat(db.pool, a);
    expect(beat.result).toBe('alive');
    expect(Date.parse(beat.search!.expires_at)).toBeGreaterThan(Date.parse(started.search!.expires_at));
    await presence.begin(db.pool, b);
    await db.pool.query(
      `update matchmaker.presence_searches set expires_at = now() - interval '1 second' where user_id = $1`,
      [a],
    );
    expect(await presence.state(db.pool, a)).toMatchObject({ status: 'expired', reason: 'ttl' });
    const lost = await presence.claim(db.pool, b, b, a);
    expect(lost).toMatchObject({ result: 'lost', reason: 'partner_not_searching', status: 'searching' });
    expect(await presence.heartbeat(db.pool, a)).toMatchObject({
      status: 'expired',
      result: 'not_searching',
    });
    expect((await notificationsOf(db.pool, a)).at(-1)).toMatchObject({ payload: { outcome: 'expired' } });
  });

  it('end is atomic against claims: after cancelled no claim wins; after a claim, end reports the match', async () => {
    const [a, b, c, d] = [newUser(), newUser(), newUser(), newUser()];
    await presence.begin(db.pool, a);
    await presence.begin(db.pool, b);
    expect((await presence.end(db.pool, a)).result).toBe('cancelled');
    expect(await presence.claim(db.pool, b, a, b)).toMatchObject({
      result: 'lost',
      reason: 'partner_not_searching',
    });
    await presence.begin(db.pool, c);
    await presence.begin(db.pool, d);
    const claimed = await presence.claim(db.pool, c, c, d);
    expect(claimed.result).toBe('claimed');
    expect(await presence.end(db.pool, d)).toMatchObject({
      status: 'matched',
      result: 'already_matched',
      match: { id: claimed.match?.id, partner_id: c },
    });
  });
});

describe('matchmaker_presence_claim', () => {
  it('records one match in matchmaker.matches and notifies both users', async () => {
    const [a, b] = [newUser(), newUser()];
    const sa = await presence.begin(db.pool, a, { lang: 'en' });
    const sb = await presence.begin(db.pool, b, { lang: 'en' });
    const won = await presence.claim(db.pool, b, a, b);
    expect(won).toMatchObject({
      status: 'matched',
      result: 'claimed',
      match: { partner_id: a, criteria: { lang: 'en' } },
    });
    const rows = await db.pool.query('select * from matchmaker.matches where id = $1', [won.match!.id]);
    expect(rows.rows).toEqual([
      expect.objectContaining({
        user_a: a, // the older search
        user_b: b,
        ticket_a: sa.search!.id,
        ticket_b: sb.search!.id,
        pool: '{"lang": "en"}',
        criteria: { lang: 'en' },
      }),
    ]);
    for (const [user, partner, search] of [
      [a, b, sa.search!.id],
      [b, a, sb.search!.id],
    ] as const) {
      expect(await presence.state(db.pool, user)).toMatchObject({
        status: 'matched',
        match: { id: won.match!.id, partner_id: partner },
      });
      expect((await notificationsOf(db.pool, user)).at(-1)).toEqual({
        event: 'matched',
        payload: {
          type: 'matched',
          tier: 'presence',
          ticket_id: search,
          user_id: user,
          match: {
            id: won.match!.id,
            partner_id: partner,
            created_at: expect.any(String),
            criteria: { lang: 'en' },
          },
        },
      });
    }
    // A second claim of the same pair is a loss for whoever calls it, with the match in hand.
    expect(await presence.claim(db.pool, a, a, b)).toMatchObject({
      result: 'lost',
      reason: 'caller_matched',
      status: 'matched',
      match: { id: won.match!.id },
    });
  });

  it('refuses a claim for two other users (42501) and records nothing', async () => {
    const [a, b, mallory] = [newUser(), newUser(), newUser()];
    await presence.begin(db.pool, a);
    await presence.begin(db.pool, b);
    await presence.begin(db.pool, mallory);
    expect(await sqlState(presence.claim(db.pool, mallory, a, b))).toEqual({
      code: '42501',
      message: 'matchmaker: a claim must include the caller',
    });
    expect((await presence.state(db.pool, a)).status).toBe('searching');
    expect((await presence.state(db.pool, b)).status).toBe('searching');
    const rows = await db.pool.query('select 1 from matchmaker.matches where $1 in (user_a, user_b)', [a]);
    expect(rows.rowCount).toBe(0);
  });

  it('returns a loss (not an error) for a partner who is not searching, and records nothing', async () => {
    const [a, stranger] = [newUser(), newUser()];
    await presence.begin(db.pool, a);
    expect(await presence.claim(db.pool, a, a, stranger)).toMatchObject({
      status: 'searching',
      result: 'lost',
      reason: 'partner_not_searching',
      match: null,
    });
    const rows = await db.pool.query('select 1 from matchmaker.matches where $1 in (user_a, user_b)', [
      stranger,
    ]);
    expect(rows.rowCount).toBe(0);
    expect(await presence.claim(db.pool, stranger, stranger, a)).toMatchObject({
      status: 'idle',
      result: 'lost',
      reason: 'caller_not_searching',
    });
  });

  it('refuses self-pairing, anonymous callers and callers without a user', async () => {
    const a = newUser();
    await presence.begin(db.pool, a);
    expect(await sqlState(presence.claim(db.pool, a, a, a))).toMatchObject({ code: '22023' });
    expect(
      await sqlState(
        asRole(db.pool, 'anon', { role: 'anon' }, 'select public.matchmaker_presence_claim($1, $2)', [
          a,
          newUser(),
        ]),
      ),
    ).toMatchObject({ code: '42501', message: expect.stringContaining('permission denied') });
    expect(
      await sqlState(
        asRole(
          db.pool,
          'authenticated',
          { role: 'authenticated' },
          'select public.matchmaker_presence_begin()',
        ),
      ),
    ).toEqual({ code: '42501', message: 'matchmaker: not authenticated' });
  });

  it('pairs only equal criteria and asks the eligibility hook', async () => {
    const [a, b, c, d] = [newUser(), newUser(), newUser(), newUser()];
    await presence.begin(db.pool, a, { lang: 'en' });
    await presence.begin(db.pool, b, { lang: 'fr' });
    expect(await presence.claim(db.pool, a, a, b)).toMatchObject({
      result: 'lost',
      reason: 'criteria_mismatch',
    });
    await presence.begin(db.pool, c, { block: true });
    await presence.begin(db.pool, d, { block: true });
    await db.pool.query(`
      create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean
      language sql stable set search_path = '' as $$
        select not exists (select 1 from matchmaker.presence_searches as s
                           where s.user_id in (a, b) and s.criteria ? 'block' and s.status = 'searching')
      $$`);
    try {
      expect(await presence.claim(db.pool, c, c, d)).toMatchObject({
        result: 'lost',
        reason: 'not_eligible',
      });
    } finally {
      await db.pool.query(`
        create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean
        language sql stable set search_path = '' as $$ select true $$`);
    }
    expect((await presence.claim(db.pool, c, c, d)).result).toBe('claimed');
  });

  it('does not match a user the queue tier matched since their search started', async () => {
    const [a, b, other] = [newUser(), newUser(), newUser()];
    await presence.begin(db.pool, a);
    await presence.begin(db.pool, b);
    await db.pool.query(
      `insert into matchmaker.matches (user_a, user_b, ticket_a, ticket_b, pool, criteria)
       values ($1, $2, gen_random_uuid(), gen_random_uuid(), '{}', '{}')`,
      [b, other],
    );
    expect(await presence.claim(db.pool, a, a, b)).toMatchObject({
      result: 'lost',
      reason: 'partner_in_match',
    });
    expect(await presence.state(db.pool, b)).toMatchObject({
      status: 'superseded',
      reason: 'matched_elsewhere',
    });
  });

  it('concurrent overlapping claims make each user part of at most one match, without deadlocks', async () => {
    const users = Array.from({ length: 40 }, newUser);
    for (const u of users) await presence.begin(db.pool, u, { race: 1 });
    // Every user claims its right-hand neighbour (a ring) and its opposite, all at once, on 16 sessions.
    const jobs = users.flatMap((u, i) => [
      [u, users[(i + 1) % users.length]!] as const,
      [u, users[(i + 20) % users.length]!] as const,
    ]);
    const results = await Promise.all(
      jobs.map(([caller, partner]) => presence.claim(db.pool, caller, caller, partner)),
    );
    const claimed = results.filter((r) => r.result === 'claimed').length;
    const rows = await db.pool.query<{ u: string; n: string }>(
      `select u, count(*) as n from matchmaker.matches, unnest(array[user_a, user_b]) as u
       where u = any ($1::uuid[]) group by u`,
      [users],
    );
    expect(rows.rows.every((r) => Number(r.n) === 1)).toBe(true);
    expect(rows.rows.length).toBe(2 * claimed);
    expect(claimed).toBeGreaterThan(0);
  });
});

describe('matchmaker_presence_move', () => {
  it('sends lone searchers to the shard whose lone searcher waited longest, and keeps that one in place', async () => {
    const pool = { move: 1 };
    const [old, mid, young] = [newUser(), newUser(), newUser()];
    await presence.begin(db.pool, old, pool, undefined, 3);
    await presence.begin(db.pool, mid, pool, undefined, 7);
    await presence.begin(db.pool, young, pool, undefined, 9);
    expect(await presence.move(db.pool, old, 10, 3)).toMatchObject({ result: 'stayed', shard: 3 });
    expect(await presence.move(db.pool, young, 10, 9)).toMatchObject({ result: 'moved', shard: 3 });
    // Shard 3 now holds two (even): the lone one left is mid, who stays.
    expect(await presence.move(db.pool, mid, 10, 7)).toMatchObject({ result: 'stayed', shard: 7 });
    // An explicit target (the design's round-robin) is recorded as given.
    expect(await presence.move(db.pool, mid, 10, 7, 8)).toMatchObject({
      result: 'moved',
      shard: 8,
      search: { shard: 8 },
    });
    expect(await sqlState(presence.move(db.pool, mid, 10, 12))).toMatchObject({ code: '22023' });
  });

  it('reports a search that is not open instead of moving it', async () => {
    const a = newUser();
    expect(await presence.move(db.pool, a, 5, 0)).toMatchObject({
      status: 'idle',
      result: 'not_searching',
      shard: null,
    });
  });
});

describe('security conventions', () => {
  it('grants EXECUTE to authenticated on the six user RPCs only, and nothing to anon or PUBLIC', async () => {
    const rows = await db.pool.query<{
      fn: string;
      anon: boolean;
      public_: boolean;
      authenticated: boolean;
      definer: boolean;
      config: string[] | null;
    }>(`
      select p.oid::regprocedure::text as fn,
             has_function_privilege('anon', p.oid, 'execute') as anon,
             exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) as x
                     where x.grantee = 0 and x.privilege_type = 'EXECUTE') as public_,
             has_function_privilege('authenticated', p.oid, 'execute') as authenticated,
             p.prosecdef as definer, p.proconfig as config
      from pg_proc as p join pg_namespace as n on n.oid = p.pronamespace
      where (n.nspname = 'matchmaker' and p.proname like '%presence%')
         or (n.nspname = 'public' and p.proname like 'matchmaker\\_presence\\_%')`);
    expect(rows.rows.length).toBeGreaterThan(15);
    for (const row of rows.rows) {
      expect(row.anon, row.fn).toBe(false);
      expect(row.public_, row.fn).toBe(false);
      expect(row.config, row.fn).toContain('search_path=""');
      const isRpc = row.fn.startsWith('matchmaker_presence_');
      expect(row.authenticated, row.fn).toBe(isRpc);
      expect(row.definer, row.fn).toBe(isRpc);
    }
  });

  it('enables RLS on its tables; users read only their own searches', async () => {
    const rls = await db.pool.query<{ relname: string; relrowsecurity: boolean }>(
      `select relname, relrowsecurity from pg_class where oid in ('matchmaker.presence_searches'::regclass, 'matchmaker.presence_settings'::regclass)`,
    );
    expect(rls.rows.every((r) => r.relrowsecurity)).toBe(true);
    const [a, b] = [newUser(), newUser()];
    await presence.begin(db.pool, a);
    await presence.begin(db.pool, b);
    const seen = await asRole<{ user_id: string }>(
      db.pool,
      'authenticated',
      userClaims(a),
      'select user_id from matchmaker.presence_searches',
    );
    expect(seen.map((r) => r.user_id)).toEqual([a]);
  });
});
