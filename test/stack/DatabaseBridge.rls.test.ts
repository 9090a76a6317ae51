import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChangeFeed } from '../../src/testing/changes/ChangeFeed';
import { DatabaseBridge } from '../../src/testing/changes/DatabaseBridge';
import { createStackDatabase, type StackDatabase } from '../../src/testing/database';
import type { JwtClaims, RowChange } from '../../src/testing/internal/contracts';
import { waitFor } from '../helpers/waitFor';

let database: StackDatabase;
let feed: ChangeFeed;
let bridge: DatabaseBridge;
const alice = randomUUID();
const bob = randomUUID();
const exp = Math.floor(Date.now() / 1000) + 3600;
const asUser = (sub: string): JwtClaims => ({ sub, role: 'authenticated', aud: 'authenticated', exp });
const anon: JwtClaims = { role: 'anon', exp };
const serviceRole: JwtClaims = { role: 'service_role', exp };

beforeAll(async () => {
  database = await createStackDatabase();
  await database.pool.query(`
    create table public.notes (id int primary key, owner uuid not null, body text, secret text);
    alter table public.notes enable row level security;
    create policy owner_reads on public.notes for select to authenticated using (owner = auth.uid());
    revoke select on public.notes from authenticated;
    grant select (id, owner, body) on public.notes to authenticated;
    alter publication supabase_realtime add table public.notes;

    create policy members_read on realtime.messages for select to authenticated
      using (realtime.topic() = 'room:' || (auth.jwt() ->> 'sub') and extension = 'broadcast');
    create policy members_write on realtime.messages for insert to authenticated
      with check (realtime.topic() = 'room:' || auth.uid()::text and extension in ('broadcast', 'presence'));
  `);
  feed = await ChangeFeed.start({ pool: database.pool, connectionString: database.url });
  bridge = new DatabaseBridge({ pool: database.pool, feed });
});

afterAll(async () => {
  await feed?.close();
  await database?.drop();
});

async function capture(sql: string): Promise<RowChange> {
  const seen: RowChange[] = [];
  const stop = bridge.onChange((change) => seen.push(change));
  try {
    await database.pool.query(sql);
    return (await waitFor(() => seen[0], 'a captured change')) as RowChange;
  } finally {
    stop();
  }
}

describe('DatabaseBridge.rowVisibleTo', () => {
  it('applies the table SELECT policies and column privileges of the subscriber', async () => {
    const change = await capture(`insert into public.notes values (1, '${alice}', 'hello', 'hidden')`);
    expect(change.rlsEnabled).toBe(true);

    await expect(bridge.rowVisibleTo(asUser(alice), change)).resolves.toEqual({
      visible: true,
      columns: ['id', 'owner', 'body'],
    });
    await expect(bridge.rowVisibleTo(asUser(bob), change)).resolves.toMatchObject({ visible: false });
    await expect(bridge.rowVisibleTo(serviceRole, change)).resolves.toEqual({
      visible: true,
      columns: ['id', 'owner', 'body', 'secret'],
    });
  });

  it('treats a role without SELECT as not seeing the row, and DELETE as not RLS-checked', async () => {
    const insert = await capture(`insert into public.notes values (2, '${alice}', 'x', 'y')`);
    await database.pool.query('revoke select on public.notes from anon');
    await expect(bridge.rowVisibleTo(anon, insert)).resolves.toEqual({ visible: false, columns: [] });

    const del = await capture('delete from public.notes where id = 2');
    await expect(bridge.rowVisibleTo(asUser(bob), del)).resolves.toMatchObject({ visible: true });
  });
});

describe('DatabaseBridge channel authorization', () => {
  it('grants read per extension from the SELECT policies on realtime.messages', async () => {
    await expect(
      bridge.authorizeChannelRead(asUser(alice), `room:${alice}`, ['broadcast', 'presence']),
    ).resolves.toEqual({ read: { broadcast: true, presence: false } });
    await expect(bridge.authorizeChannelRead(asUser(bob), `room:${alice}`, ['broadcast'])).resolves.toEqual({
      read: { broadcast: false, presence: false },
    });
    await expect(bridge.authorizeChannelRead(anon, `room:${alice}`, ['broadcast'])).resolves.toEqual({
      read: { broadcast: false, presence: false },
    });
  });

  it('grants write from the INSERT policy and never keeps the probe rows', async () => {
    await expect(bridge.authorizeChannelWrite(asUser(alice), `room:${alice}`, 'presence')).resolves.toBe(
      true,
    );
    await expect(bridge.authorizeChannelWrite(asUser(bob), `room:${alice}`, 'broadcast')).resolves.toBe(
      false,
    );
    await expect(bridge.authorizeChannelWrite(anon, `room:${alice}`, 'broadcast')).resolves.toBe(false);
    const left = await database.pool.query('select count(*)::int as n from realtime.messages');
    expect(left.rows[0]).toEqual({ n: 0 });
  });
});

describe('DatabaseBridge catalog lookups', () => {
  it('answers publication membership and table columns', async () => {
    await expect(bridge.isPublished('public', 'notes')).resolves.toBe(true);
    await expect(bridge.isPublished('public', undefined)).resolves.toBe(true);
    await expect(bridge.isPublished('public', 'missing')).resolves.toBe(false);
    await expect(bridge.isPublished('auth', undefined)).resolves.toBe(false);
    await expect(bridge.tableColumns('public', 'notes')).resolves.toEqual([
      { name: 'id', type: 'int4' },
      { name: 'owner', type: 'uuid' },
      { name: 'body', type: 'text' },
      { name: 'secret', type: 'text' },
    ]);
    await expect(bridge.tableColumns('public', 'missing')).resolves.toBeUndefined();
  });
});
