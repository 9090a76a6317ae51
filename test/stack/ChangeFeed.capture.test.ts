import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ChangeFeed } from '../../src/testing/changes/ChangeFeed';
import { createStackDatabase, type StackDatabase } from '../../src/testing/database';
import type { DatabaseBroadcast, RowChange } from '../../src/testing/internal/contracts';
import { waitFor } from '../helpers/waitFor';

let database: StackDatabase;
let feed: ChangeFeed;
const changes: RowChange[] = [];
const broadcasts: DatabaseBroadcast[] = [];

beforeAll(async () => {
  database = await createStackDatabase();
  await database.pool.query(`
    create table public.todos (id int8 primary key, title text, done bool not null default false,
                               tags text[], meta jsonb, blob bytea, at timestamptz);
    create table public.audit (id uuid primary key default gen_random_uuid(), note text);
    create table public.quiet (id int primary key, note text);
    create table public.full_rows (id int primary key, note text);
    alter table public.full_rows replica identity full;
    alter publication supabase_realtime add table public.todos, public.audit;
  `);
  feed = await ChangeFeed.start({ pool: database.pool, connectionString: database.url });
  feed.onChange((change) => changes.push(change));
  feed.onBroadcast((message) => broadcasts.push(message));
});

afterAll(async () => {
  await feed?.close();
  await database?.drop();
});

beforeEach(() => {
  changes.length = 0;
  broadcasts.length = 0;
});

describe('ChangeFeed', () => {
  it('delivers INSERT, UPDATE and DELETE with Realtime shapes', async () => {
    await database.pool.query(
      `insert into public.todos (id, title, tags, meta, blob, at)
       values (1, 'write tests', '{a,b}', '{"k":1}', '\\xdead', '2026-01-01T00:00:00Z')`,
    );
    await database.pool.query(`update public.todos set done = true where id = 1`);
    await database.pool.query(`delete from public.todos where id = 1`);
    await waitFor(() => changes.length >= 3, 'three changes');

    const [insert, update, del] = changes;
    expect(insert).toMatchObject({
      schema: 'public',
      table: 'todos',
      type: 'INSERT',
      primaryKey: ['id'],
      rlsEnabled: false,
      record: { id: 1, title: 'write tests', done: false, tags: ['a', 'b'], meta: { k: 1 }, blob: 'dead' },
    });
    expect(insert?.oldRecord).toBeUndefined();
    expect(insert?.columns).toEqual([
      { name: 'id', type: 'int8' },
      { name: 'title', type: 'text' },
      { name: 'done', type: 'bool' },
      { name: 'tags', type: '_text' },
      { name: 'meta', type: 'jsonb' },
      { name: 'blob', type: 'bytea' },
      { name: 'at', type: 'timestamptz' },
    ]);
    expect(insert?.commitTimestamp).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(update).toMatchObject({ type: 'UPDATE', record: { id: 1, done: true }, oldRecord: { id: 1 } });
    expect(del).toMatchObject({ type: 'DELETE', oldRecord: { id: 1 } });
    expect(del?.record).toBeUndefined();
  });

  it('keeps the whole old row with REPLICA IDENTITY FULL, and picks up tables published later', async () => {
    await database.pool.query(`alter publication supabase_realtime add table public.full_rows`);
    await database.pool.query(`insert into public.full_rows values (7, 'before')`);
    await database.pool.query(`update public.full_rows set note = 'after' where id = 7`);
    await waitFor(() => changes.length >= 2, 'two changes');
    expect(changes[1]).toMatchObject({
      table: 'full_rows',
      type: 'UPDATE',
      record: { id: 7, note: 'after' },
      oldRecord: { id: 7, note: 'before' },
    });
  });

  it('emits nothing for unpublished tables and for rolled-back transactions', async () => {
    await database.pool.query(`insert into public.quiet values (1, 'unpublished')`);
    const client = await database.pool.connect();
    try {
      await client.query('begin');
      await client.query(`insert into public.todos (id, title) values (99, 'rolled back')`);
      await client.query('rollback');
    } finally {
      client.release();
    }
    // A later published change proves the earlier ones were processed (notifications arrive in commit order).
    await database.pool.query(`insert into public.todos (id, title) values (2, 'marker')`);
    await waitFor(() => changes.length >= 1, 'the marker change');
    expect(changes.map((change) => `${change.table}:${change.record?.title}`)).toEqual(['todos:marker']);
  });

  it('delivers changes in commit order, not in statement order', async () => {
    const first = new pg.Client({ connectionString: database.url });
    const second = new pg.Client({ connectionString: database.url });
    await Promise.all([first.connect(), second.connect()]);
    try {
      await first.query('begin');
      await first.query(`insert into public.todos (id, title) values (10, 'written first, committed last')`);
      await second.query('begin');
      await second.query(
        `insert into public.todos (id, title) values (11, 'written second, committed first')`,
      );
      await second.query(`insert into public.audit (note) values ('same transaction')`);
      await second.query('commit');
      await first.query('commit');
    } finally {
      await Promise.all([first.end(), second.end()]);
    }
    await waitFor(() => changes.length >= 3, 'three changes');
    expect(changes.map((change) => change.record?.title ?? change.record?.note)).toEqual([
      'written second, committed first',
      'same transaction',
      'written first, committed last',
    ]);
  });

  it('delivers realtime.send() from a SECURITY DEFINER function to onBroadcast after commit', async () => {
    await database.pool.query(`
      create or replace function public.announce(room text) returns void
      language sql security definer set search_path = '' as
      $$ select realtime.send(jsonb_build_object('room', room), 'announced', room, false) $$;
      grant execute on function public.announce(text) to authenticated;
    `);
    const client = await database.pool.connect();
    try {
      await client.query('begin');
      await client.query(`set local role authenticated`);
      await client.query(`select public.announce('lobby')`);
      await client.query('commit');
    } finally {
      client.release();
    }
    const [message] = await waitFor(() => (broadcasts.length > 0 ? broadcasts : undefined), 'a broadcast');
    expect(message).toMatchObject({
      topic: 'lobby',
      event: 'announced',
      payload: { room: 'lobby' },
      private: false,
    });
    expect(message?.id).toMatch(/^[0-9a-f-]{36}$/);
  });
});
