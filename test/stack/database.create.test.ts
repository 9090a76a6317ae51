import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createStackDatabase } from '../../src/testing/database';

async function databaseExists(serverUrl: string, name: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    const result = await client.query('select 1 from pg_database where datname = $1', [name]);
    return result.rowCount === 1;
  } finally {
    await client.end();
  }
}

function serverOf(url: string): string {
  const parsed = new URL(url);
  parsed.pathname = '/postgres';
  return parsed.toString();
}

describe('createStackDatabase', () => {
  it('creates a shaped sm_ database on the reachable server and drops it idempotently', async () => {
    const database = await createStackDatabase();
    expect(database.embedded).toBe(false);
    expect(database.name).toMatch(/^sm_[0-9a-f]{12}$/);
    const shaped = await database.pool.query(
      `select to_regclass('realtime.messages') is not null as messages, to_regprocedure('auth.uid()') is not null as uid`,
    );
    expect(shaped.rows[0]).toEqual({ messages: true, uid: true });
    expect(await databaseExists(serverOf(database.url), database.name)).toBe(true);

    await Promise.all([database.drop(), database.drop()]);
    expect(await databaseExists(serverOf(database.url), database.name)).toBe(false);
  });

  it('refuses an explicit server that is not reachable instead of falling back', async () => {
    await expect(
      createStackDatabase({ serverUrl: 'postgres://postgres@127.0.0.1:1/postgres', connectTimeoutMs: 500 }),
    ).rejects.toThrow(/not reachable/);
  });

  it('runs on the embedded Postgres 18 when asked to', async () => {
    const database = await createStackDatabase({ embedded: true });
    try {
      expect(database.embedded).toBe(true);
      const result = await database.pool.query<{ major: number; roles: number }>(
        `select current_setting('server_version_num')::int / 10000 as major,
                (select count(*)::int from pg_roles where rolname in ('anon', 'authenticated', 'service_role')) as roles`,
      );
      expect(result.rows[0]).toEqual({ major: 18, roles: 3 });
    } finally {
      await database.drop();
    }
    await expect(database.pool.query('select 1')).rejects.toThrow();
  });
});
