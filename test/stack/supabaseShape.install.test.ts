import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installSupabaseShape } from '../../src/testing/supabaseShape';

const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const dbName = `sm_shape_${randomBytes(5).toString('hex')}`;
let admin: pg.Client;
let db: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${dbName}`);
  const url = new URL(serverUrl);
  url.pathname = `/${dbName}`;
  db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
});

afterAll(async () => {
  await db?.end();
  await admin?.query(`drop database if exists ${dbName} with (force)`);
  await admin?.end();
});

describe('installSupabaseShape', () => {
  it('installs twice into a fresh database and leaves a working Supabase shape', async () => {
    await installSupabaseShape(db);
    await installSupabaseShape(db);

    const roles = await db.query<{ rolname: string; rolbypassrls: boolean; rolcanlogin: boolean }>(
      `select rolname, rolbypassrls, rolcanlogin from pg_roles
       where rolname in ('anon', 'authenticated', 'service_role') order by rolname`,
    );
    expect(roles.rows).toEqual([
      { rolname: 'anon', rolbypassrls: false, rolcanlogin: false },
      { rolname: 'authenticated', rolbypassrls: false, rolcanlogin: false },
      { rolname: 'service_role', rolbypassrls: true, rolcanlogin: false },
    ]);

    const pub = await db.query(
      `select p.pubname, count(pt.tablename)::int as tables from pg_publication p
       left join pg_publication_tables pt on pt.pubname = p.pubname
       where p.pubname = 'supabase_realtime' group by p.pubname`,
    );
    expect(pub.rows).toEqual([{ pubname: 'supabase_realtime', tables: 0 }]);

    const rls = await db.query(
      `select relrowsecurity, (select count(*)::int from pg_policy where polrelid = c.oid) as policies
       from pg_class c where oid = 'realtime.messages'::regclass`,
    );
    expect(rls.rows).toEqual([{ relrowsecurity: true, policies: 0 }]);
  });

  it('reads claims like Supabase and lets realtime.send write as a definer function', async () => {
    await installSupabaseShape(db);
    await db.query('begin');
    try {
      await db.query(`select set_config('request.jwt.claims', $1, true)`, [
        JSON.stringify({
          sub: '6f1b1e4e-5a57-4c0f-9d6c-1a2b3c4d5e6f',
          role: 'authenticated',
          email: 'a@b.c',
        }),
      ]);
      await db.query(`set local role authenticated`);
      const claims = await db.query(
        'select auth.uid()::text as uid, auth.role() as role, auth.email() as email, auth.jwt() ->> $1 as sub',
        ['sub'],
      );
      expect(claims.rows[0]).toEqual({
        uid: '6f1b1e4e-5a57-4c0f-9d6c-1a2b3c4d5e6f',
        role: 'authenticated',
        email: 'a@b.c',
        sub: '6f1b1e4e-5a57-4c0f-9d6c-1a2b3c4d5e6f',
      });
      // As the authenticated role with no policies, the insert is refused but send() must not raise.
      await db.query(`select realtime.send('{"a":1}', 'ev', 'room', true)`);
      await db.query('reset role');
      const none = await db.query(`select count(*)::int as n from realtime.messages`);
      expect(none.rows[0]).toEqual({ n: 0 });

      await db.query(`create function public.shout() returns void language sql security definer
        set search_path = '' as $$ select realtime.send('{"b":2}'::jsonb, 'ev', 'room', false) $$`);
      await db.query(`set local role authenticated`);
      await db.query('select public.shout()');
      await db.query('reset role');
      const sent = await db.query(`select topic, event, payload, private, extension from realtime.messages`);
      expect(sent.rows).toEqual([
        { topic: 'room', event: 'ev', payload: { b: 2 }, private: false, extension: 'broadcast' },
      ]);
    } finally {
      await db.query('rollback');
    }
  });
});
