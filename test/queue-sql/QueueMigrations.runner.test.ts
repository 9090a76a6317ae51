/**
 * The migration runner and CLI on real Postgres: fresh apply, rerun no-op, atomic rollback, checksum and
 * schema checks, concurrent runners, host tables, and the CLI's migrate / check / migrations commands.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli';
import { isMatchmakingError } from '../../src/core/errors';
import {
  applyMigrations,
  checkSchema,
  LATEST_SCHEMA_VERSION,
  MIGRATIONS,
  type Migration,
  MigrationError,
  SchemaMismatchError,
} from '../../src/migrations';
import { createQueueDb, type QueueDb } from './queueDb';

const databases: QueueDb[] = [];
const fresh = async (setupSql?: string) => {
  const db = await createQueueDb({ migrate: false, ...(setupSql ? { setupSql } : {}) });
  databases.push(db);
  return db;
};
afterAll(async () => {
  await Promise.all(databases.map((db) => db.drop()));
});

const versions = MIGRATIONS.map((m) => m.version);
const failing: Migration = {
  version: '29991231235959',
  name: 'broken',
  filename: '29991231235959_broken.sql',
  checksum: 'x',
  sql: 'create table matchmaker.will_roll_back (id int); select 1 / 0;',
};

describe('applyMigrations', () => {
  it('applies every shipped migration once; a rerun is a no-op', async () => {
    const db = await fresh();
    const client = await db.client();
    await expect(checkSchema(client)).rejects.toBeInstanceOf(SchemaMismatchError);
    const first = await applyMigrations(client);
    expect(first).toEqual({ applied: versions, skipped: [], version: LATEST_SCHEMA_VERSION });
    const ledger = await client.query(
      'select version, checksum, applied_at from matchmaker.schema_migrations order by version',
    );
    expect(ledger.rows.map((r) => [r.version, r.checksum])).toEqual(
      MIGRATIONS.map((m) => [m.version, m.checksum]),
    );
    const objects = async () =>
      (
        await client.query(
          `select count(*)::int as n from pg_proc where pronamespace = 'matchmaker'::regnamespace`,
        )
      ).rows[0].n;
    const before = await objects();
    const second = await applyMigrations(client);
    expect(second).toEqual({ applied: [], skipped: versions, version: LATEST_SCHEMA_VERSION });
    expect(await objects()).toBe(before);
    const again = await client.query(
      'select version, checksum, applied_at from matchmaker.schema_migrations order by version',
    );
    expect(again.rows).toEqual(ledger.rows);
    expect(await checkSchema(client)).toEqual({
      version: LATEST_SCHEMA_VERSION,
      expected: LATEST_SCHEMA_VERSION,
      newer: false,
    });
    // Without pg_cron the migration still applies, and scheduling says how to enable it.
    await expect(client.query('select matchmaker.schedule_maintenance()')).rejects.toMatchObject({
      code: '55000',
      hint: expect.stringContaining('create extension pg_cron'),
    });
  });

  it('rolls back everything, earlier migrations of the run included, when one fails', async () => {
    const db = await fresh();
    const client = await db.client();
    const error = await applyMigrations(client, { migrations: [...MIGRATIONS, failing] }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MigrationError);
    expect(error).toMatchObject({ code: 'migration_failed', version: failing.version });
    expect(isMatchmakingError(error)).toBe(true);
    expect((error as Error).message).toContain(
      '29991231235959_broken.sql failed, nothing was applied: division by zero',
    );
    const left = await client.query(`select to_regnamespace('matchmaker') as schema,
      (select count(*)::int from pg_policies where policyname = 'matchmaker_user_topic_read') as policies,
      (select count(*)::int from pg_proc where proname like 'matchmaker\\_%') as functions`);
    expect(left.rows[0]).toEqual({ schema: null, policies: 0, functions: 0 });
    const missing = await checkSchema(client).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'schema_mismatch', reason: 'missing' });
    expect((missing as Error).message).toContain('npx supabase-matchmaker migrate --database-url');
    // The session is usable and a normal run then succeeds.
    expect((await applyMigrations(client)).applied).toEqual(versions);
  });

  it('reports an outdated schema, applies only what is missing, and refuses an edited migration', async () => {
    const db = await fresh();
    const client = await db.client();
    await applyMigrations(client, { migrations: MIGRATIONS.slice(0, 1) });
    if (MIGRATIONS.length > 1) {
      await expect(checkSchema(client)).rejects.toMatchObject({
        reason: 'outdated',
        missing: versions.slice(1),
      });
    }
    expect((await applyMigrations(client)).applied).toEqual(versions.slice(1));
    const edited: Migration = {
      ...MIGRATIONS[0]!,
      sql: `${MIGRATIONS[0]!.sql}\n-- edited`,
      checksum: 'edited',
    };
    await expect(applyMigrations(client, { migrations: [edited] })).rejects.toMatchObject({
      code: 'migration_checksum_mismatch',
      version: edited.version,
    });
    // A database migrated by a newer package passes the check and says so.
    await client.query(
      `insert into matchmaker.schema_migrations (version, name) values ('29990101000000', 'future')`,
    );
    expect(await checkSchema(client)).toMatchObject({ version: '29990101000000', newer: true });
  });

  it('serialises concurrent runners: one applies, the other finds nothing to do', async () => {
    const db = await fresh();
    const [a, b] = [await db.client(), await db.client()];
    const results = await Promise.all([applyMigrations(a), applyMigrations(b)]);
    expect(results.map((r) => r.applied.length).sort()).toEqual([0, versions.length]);
  });

  it('applies on top of a database with host tables and functions of similar names, leaving them intact', async () => {
    const db = await fresh(`
      create table public.profiles (id uuid primary key, display_name text, looking_for_buddy boolean default false);
      insert into public.profiles values (gen_random_uuid(), 'Ada', true), (gen_random_uuid(), 'Grace', false);
      create table public.matches (id bigserial primary key, note text);
      create table public.tickets (id int primary key);
      create function public.is_eligible(a uuid, b uuid) returns boolean language sql as 'select false';
      create schema app; create table app.settings (k text primary key, v text);`);
    const client = await db.client();
    expect((await applyMigrations(client)).applied).toEqual(versions);
    const host = await client.query(`select (select count(*)::int from public.profiles) as profiles,
      (select count(*)::int from public.matches) as matches, public.is_eligible(gen_random_uuid(), gen_random_uuid()) as hook`);
    expect(host.rows[0]).toEqual({ profiles: 2, matches: 0, hook: false });
  });

  it('refuses a pool (it needs one session)', async () => {
    const db = await fresh();
    await expect(applyMigrations(db.pool)).rejects.toMatchObject({ code: 'invalid_argument' });
  });
});

describe('supabase-matchmaker CLI', () => {
  const io = () => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } };
  };

  it('migrate, check, and usage errors', async () => {
    const db = await fresh();
    const a = io();
    expect(await runCli(['migrate', '--database-url', db.url], a.io)).toBe(0);
    expect(a.out).toEqual([`applied ${versions.join(', ')}; schema at ${LATEST_SCHEMA_VERSION}`]);
    const b = io();
    expect(await runCli(['migrate', `--database-url=${db.url}`], b.io)).toBe(0);
    expect(b.out).toEqual([`up to date at ${LATEST_SCHEMA_VERSION}`]);
    const c = io();
    expect(await runCli(['check', '--database-url', db.url], c.io)).toBe(0);
    const saved = process.env.DATABASE_URL;
    delete process.env.DATABASE_URL;
    try {
      const d = io();
      expect(await runCli(['migrate'], d.io)).toBe(2);
      expect(d.err.join('\n')).toContain('--database-url <postgres url> is required');
    } finally {
      if (saved !== undefined) process.env.DATABASE_URL = saved;
    }
    const e = io();
    expect(await runCli(['frobnicate'], e.io)).toBe(2);
    expect(e.err.join('\n')).toContain('unknown command "frobnicate"');
  });

  it('check fails with the fix when the schema is missing', async () => {
    const db = await fresh();
    const a = io();
    expect(await runCli(['check', '--database-url', db.url], a.io)).toBe(1);
    expect(a.err.join('\n')).toContain('not installed');
  });

  it('migrations --out copies the SQL files, leaves edited copies alone unless --force', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sm-migrations-'));
    try {
      const a = io();
      expect(await runCli(['migrations', '--out', dir], a.io)).toBe(0);
      const files = (await readdir(dir)).sort();
      expect(files).toEqual(MIGRATIONS.map((m) => m.filename));
      for (const m of MIGRATIONS) {
        expect(await readFile(join(dir, m.filename), 'utf8')).toBe(
          await readFile(new URL(`../../supabase/migrations/${m.filename}`, import.meta.url), 'utf8'),
        );
      }
      const first = join(dir, MIGRATIONS[0]!.filename);
      await writeFile(first, '-- local edit\n');
      const b = io();
      expect(await runCli(['migrations', '--out', dir], b.io)).toBe(1);
      expect(await readFile(first, 'utf8')).toBe('-- local edit\n');
      const c = io();
      expect(await runCli(['migrations', '--out', dir, '--force'], c.io)).toBe(0);
      expect(await readFile(first, 'utf8')).toBe(MIGRATIONS[0]!.sql);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs as a process (bin entry) against a real database', async () => {
    const db = await fresh();
    const run = promisify(execFile);
    const cli = new URL('../../src/cli.ts', import.meta.url).pathname;
    const { stdout } = await run('npx', ['tsx', cli, 'migrate', '--database-url', db.url]);
    expect(stdout.trim()).toBe(`applied ${versions.join(', ')}; schema at ${LATEST_SCHEMA_VERSION}`);
    const check = await run('npx', ['tsx', cli, 'check', '--database-url', db.url]);
    expect(check.stdout.trim()).toBe(`up to date at ${LATEST_SCHEMA_VERSION}`);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      expect((await checkSchema(client)).version).toBe(LATEST_SCHEMA_VERSION);
    } finally {
      await client.end();
    }
  });
});
