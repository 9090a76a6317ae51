import type { SupabaseClient } from '@supabase/supabase-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalSupabase, type LocalUser, startLocalSupabase } from '../../src/testing';
import { createSupabaseClient } from '../helpers/supabaseClient';
import { waitFor } from '../helpers/waitFor';

let stack: LocalSupabase;
let anon: SupabaseClient;
let user: LocalUser;
let asUser: SupabaseClient;

beforeAll(async () => {
  stack = await startLocalSupabase({ exposedSchemas: ['public', 'api'] });
  await stack.db.query(`
    create table public.todos (id int primary key, title text not null);
    create type public.pair as (left_value int, right_value text);

    create function public.add(a int, b int) returns int language sql immutable as $$ select a + b $$;
    create function public.numbers(n int) returns setof int language sql stable as $$ select generate_series(1, n) $$;
    create function public.todo_rows() returns table (id int, title text) language sql stable
      as $$ select id, title from public.todos order by id $$;
    create function public.make_pair(n int, label text default 'x') returns public.pair language sql immutable
      as $$ select row(n, label)::public.pair $$;
    create function public.add_todo(id int, title text) returns void language sql
      as $$ insert into public.todos values (id, title) $$;
    create function public.refuse() returns void language plpgsql
      as $$ begin raise exception 'I refuse!' using detail = 'Pretty simple', hint = 'Ask nicely'; end $$;
    create function public.whoami() returns uuid language sql stable as $$ select auth.uid() $$;
    create function public.request_info() returns jsonb language sql stable as $$
      select jsonb_build_object('claims', current_setting('request.jwt.claims', true)::jsonb,
                                'method', current_setting('request.method', true),
                                'path', current_setting('request.path', true),
                                'role', current_user,
                                'apikey', current_setting('request.headers', true)::jsonb ? 'apikey') $$;
    create function public.secret() returns int language sql as $$ select 42 $$;
    revoke execute on function public.secret() from public, anon, authenticated;
    create function public.sneaky_write() returns int language sql stable
      as $$ select public.add_todo(1000, 'nope'); select 1 $$;
    create function public.wait_for_lock() returns int language sql
      as $$ select pg_advisory_xact_lock(4242); select 1 $$;
    create function public.echo_body(jsonb) returns jsonb language sql immutable as $$ select $1 $$;

    create schema api;
    grant usage on schema api to anon, authenticated, service_role;
    create function api.hello() returns text language sql immutable as $$ select 'from api' $$;
  `);
  anon = createSupabaseClient(stack);
  user = await stack.createUser({ email: 'ada@example.test' });
  asUser = createSupabaseClient(stack, { accessToken: user.accessToken });
});

afterAll(async () => {
  await stack?.stop();
});

describe('supabase.rpc() against the local PostgREST emulation', () => {
  it('returns scalars, sets, tables and composites in PostgREST shapes', async () => {
    await expect(anon.rpc('add', { a: 1, b: 2 })).resolves.toMatchObject({
      data: 3,
      error: null,
      status: 200,
    });
    await expect(anon.rpc('numbers', { n: 3 })).resolves.toMatchObject({ data: [1, 2, 3], status: 200 });
    await expect(anon.rpc('numbers', { n: 0 })).resolves.toMatchObject({ data: [], status: 200 });
    await expect(anon.rpc('make_pair', { n: 7 })).resolves.toMatchObject({
      data: { left_value: 7, right_value: 'x' },
      status: 200,
    });
    await expect(anon.rpc('echo_body', { any: ['thing'] })).resolves.toMatchObject({
      data: { any: ['thing'] },
    });
  });

  it('answers 204 with no body for void functions and commits their writes', async () => {
    const result = await anon.rpc('add_todo', { id: 1, title: 'first' });
    expect(result).toMatchObject({ data: null, error: null, status: 204 });
    await expect(anon.rpc('todo_rows')).resolves.toMatchObject({ data: [{ id: 1, title: 'first' }] });

    const raw = await fetch(`${stack.url}/rest/v1/rpc/add_todo`, {
      method: 'POST',
      headers: { apikey: stack.anonKey, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 4, title: 'raw' }),
    });
    expect(raw.status).toBe(204);
    expect(raw.headers.get('content-type')).toBeNull();
    expect(await raw.text()).toBe('');
  });

  it('supports GET with query arguments, read-only', async () => {
    await expect(anon.rpc('add', { a: 20, b: 22 }, { get: true })).resolves.toMatchObject({
      data: 42,
      status: 200,
    });
    const write = await anon.rpc('add_todo', { id: 2, title: 'via get' }, { get: true });
    expect(write).toMatchObject({ status: 405, error: { code: '25006' } });
  });

  it('runs STABLE functions read-only even on POST', async () => {
    const { status, error } = await anon.rpc('sneaky_write');
    expect(status).toBe(405);
    expect(error).toMatchObject({ code: '25006' });
  });

  it('maps database errors to PostgREST statuses and bodies', async () => {
    await expect(anon.rpc('refuse')).resolves.toMatchObject({
      status: 400,
      error: { code: 'P0001', message: 'I refuse!', details: 'Pretty simple', hint: 'Ask nicely' },
    });
    await anon.rpc('add_todo', { id: 3, title: 'once' });
    await expect(anon.rpc('add_todo', { id: 3, title: 'twice' })).resolves.toMatchObject({
      status: 409,
      error: {
        code: '23505',
        message: 'duplicate key value violates unique constraint "todos_pkey"',
        details: 'Key (id)=(3) already exists.',
        hint: null,
      },
    });
    await expect(anon.rpc('secret')).resolves.toMatchObject({ status: 401, error: { code: '42501' } });
    await expect(asUser.rpc('secret')).resolves.toMatchObject({ status: 403, error: { code: '42501' } });
    const service = createSupabaseClient(stack, { key: stack.serviceRoleKey });
    await expect(service.rpc('secret')).resolves.toMatchObject({ status: 200, data: 42 });
  });

  it('answers 404 PGRST202 for unknown functions and finds functions created later', async () => {
    const missing = await anon.rpc('created_later', { x: 1 });
    expect(missing).toMatchObject({
      status: 404,
      error: {
        code: 'PGRST202',
        message: 'Could not find the function public.created_later(x) in the schema cache',
        details:
          'Searched for the function public.created_later with parameters x or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.',
      },
    });
    await expect(anon.rpc('add', { a: 1, c: 2 })).resolves.toMatchObject({
      status: 404,
      error: { code: 'PGRST202', hint: 'Perhaps you meant to call the function public.add(a, b)' },
    });
    await stack.db.query(
      'create function public.created_later(x int) returns int language sql as $$ select x * 2 $$',
    );
    await expect(anon.rpc('created_later', { x: 21 })).resolves.toMatchObject({ data: 42, status: 200 });
  });

  it('applies the JWT: role, request.jwt.claims and auth.uid()', async () => {
    await expect(asUser.rpc('whoami')).resolves.toMatchObject({ data: user.id, status: 200 });
    await expect(anon.rpc('whoami')).resolves.toMatchObject({ data: null, status: 200 });
    const { data } = await asUser.rpc('request_info');
    expect(data).toMatchObject({
      claims: { sub: user.id, role: 'authenticated', email: 'ada@example.test' },
      method: 'POST',
      path: '/rpc/request_info',
      role: 'authenticated',
      apikey: true,
    });
  });

  it('refuses expired and forged tokens with 401 and PostgREST codes', async () => {
    const expired = await stack.signToken(
      { sub: user.id, role: 'authenticated', aud: 'authenticated' },
      { expiresIn: -10 },
    );
    const withExpired = createSupabaseClient(stack, { accessToken: expired });
    await expect(withExpired.rpc('whoami')).resolves.toMatchObject({
      status: 401,
      error: { code: 'PGRST303', message: 'JWT expired' },
    });
    const forged = `${user.accessToken.slice(0, -4)}AAAA`;
    const withForged = createSupabaseClient(stack, { accessToken: forged });
    await expect(withForged.rpc('whoami')).resolves.toMatchObject({
      status: 401,
      error: { code: 'PGRST301' },
    });

    const response = await fetch(`${stack.url}/rest/v1/rpc/whoami`, {
      method: 'POST',
      headers: {
        apikey: stack.anonKey,
        authorization: `Bearer ${expired}`,
        'content-type': 'application/json',
      },
      body: '{}',
    });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      'Bearer error="invalid_token", error_description="JWT expired"',
    );
  });

  it('picks the schema from Content-Profile / Accept-Profile and only exposes configured schemas', async () => {
    await expect(anon.schema('api').rpc('hello')).resolves.toMatchObject({ data: 'from api', status: 200 });
    await expect(anon.schema('api').rpc('hello', {}, { get: true })).resolves.toMatchObject({
      data: 'from api',
    });
    await expect(anon.schema('auth').rpc('uid')).resolves.toMatchObject({
      status: 406,
      error: { code: 'PGRST106', message: 'The schema must be one of the following: public, api' },
    });
  });

  it('counts every call, failed or not, per function', async () => {
    const before = stack.counters.snapshot();
    await anon.rpc('add', { a: 1, b: 1 });
    await anon.rpc('refuse');
    await anon.rpc('no_such_function');
    const after = stack.counters.snapshot();
    expect(after.rpcCalls - before.rpcCalls).toBe(3);
    expect(after.rpcErrors - before.rpcErrors).toBe(2);
    expect((after.rpcByFunction.add ?? 0) - (before.rpcByFunction.add ?? 0)).toBe(1);
    expect(after.rpcByFunction.no_such_function).toBeGreaterThanOrEqual(1);
  });

  it('shows a call that waits for the database as in flight, and counts it only when answered', async () => {
    const holder = await stack.db.connect();
    try {
      await holder.query('select pg_advisory_lock(4242)');
      const before = stack.counters.snapshot();
      expect(before.rpcInFlight).toBe(0);
      // The builder sends only when awaited: start it now.
      const call = anon.rpc('wait_for_lock').then((result) => result);
      await waitFor(() => stack.counters.rpcInFlight === 1, 'the call in flight');
      expect(stack.counters.snapshot().rpcByFunction.wait_for_lock ?? 0).toBe(0);
      await holder.query('select pg_advisory_unlock(4242)');
      await expect(call).resolves.toMatchObject({ data: 1, status: 200 });
      const after = stack.counters.snapshot();
      expect(after.rpcInFlight).toBe(0);
      expect(after.rpcByFunction.wait_for_lock).toBe(1);
    } finally {
      holder.release();
    }
  });
});
