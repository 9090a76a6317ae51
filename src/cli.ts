#!/usr/bin/env node
/**
 * `supabase-matchmaker` command line.
 *
 * ```
 * supabase-matchmaker migrate --database-url <url>     apply every shipped migration (one transaction)
 * supabase-matchmaker check --database-url <url>       read-only: is the schema up to date?
 * supabase-matchmaker migrations --out <dir> [--force] copy the .sql files into a Supabase project
 * supabase-matchmaker serve [options]                  run the service tier's matchmaking server
 * ```
 *
 * `--database-url` defaults to `$DATABASE_URL`. Exit codes: 0 success, 1 failure, 2 usage error.
 *
 * @packageDocumentation
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isMatchmakingError } from './core/errors';
import { applyMigrations } from './migrations/applyMigrations';
import { checkSchema } from './migrations/checkSchema';
import { MIGRATIONS } from './migrations/migrations.generated';
import type { PgQueryable } from './migrations/types';

const USAGE = `Usage:
  supabase-matchmaker migrate --database-url <postgres url>
      Apply the shipped SQL migrations of every tier (one transaction, advisory-locked; a rerun is a no-op).
  supabase-matchmaker check --database-url <postgres url>
      Read-only: exit 0 when the schema is up to date, 1 (with the fix) when not.
  supabase-matchmaker migrations --out <dir> [--force]
      Copy the migration files into a Supabase project (e.g. supabase/migrations), then run \`supabase db push\`.
      Existing files with other content are left alone unless --force.

  supabase-matchmaker serve [options]
      Run the service tier's WebSocket matchmaking server (see \`supabase-matchmaker serve --help\`).

--database-url defaults to $DATABASE_URL.`;

/** Output sinks, injectable for tests. */
export interface CliIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

class UsageError extends Error {}

interface ParsedArgs {
  readonly command: string | undefined;
  readonly flags: Map<string, string | true>;
}

function parseArgs(argv: readonly string[]): ParsedArgs {
  const flags = new Map<string, string | true>();
  let command: string | undefined;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      if (eq > 0) {
        flags.set(arg.slice(2, eq), arg.slice(eq + 1));
      } else {
        const next = argv[i + 1];
        if (next !== undefined && !next.startsWith('--') && arg !== '--force' && arg !== '--help') {
          flags.set(arg.slice(2), next);
          i += 1;
        } else {
          flags.set(arg.slice(2), true);
        }
      }
    } else if (arg === '-h') {
      flags.set('help', true);
    } else if (command === undefined) {
      command = arg;
    } else {
      throw new UsageError(`unexpected argument "${arg}"`);
    }
  }
  return { command, flags };
}

function stringFlag(flags: Map<string, string | true>, name: string): string | undefined {
  const value = flags.get(name);
  if (value === true) throw new UsageError(`--${name} needs a value`);
  return value;
}

interface PgClientLike extends PgQueryable {
  connect(): Promise<unknown>;
  end(): Promise<unknown>;
}

async function connect(url: string): Promise<PgClientLike> {
  let pg: { Client: new (config: { connectionString: string }) => PgClientLike };
  try {
    const mod = (await import('pg')) as unknown as { default?: typeof pg } & typeof pg;
    pg = mod.default ?? mod;
  } catch (cause) {
    throw new Error('the `pg` package is needed for this command: npm i pg', { cause });
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

function databaseUrl(flags: Map<string, string | true>): string {
  const url = stringFlag(flags, 'database-url') ?? process.env.DATABASE_URL;
  if (!url) throw new UsageError('--database-url <postgres url> is required (or set DATABASE_URL)');
  return url;
}

async function copyMigrations(dir: string, force: boolean, io: CliIo): Promise<number> {
  const target = resolve(dir);
  await mkdir(target, { recursive: true });
  let conflicts = 0;
  for (const migration of MIGRATIONS) {
    const path = join(target, migration.filename);
    let existing: string | undefined;
    try {
      existing = await readFile(path, 'utf8');
    } catch {
      existing = undefined;
    }
    if (existing === migration.sql) {
      io.out(`unchanged ${path}`);
    } else if (existing !== undefined && !force) {
      io.err(`differs   ${path} (left alone; use --force to overwrite)`);
      conflicts += 1;
    } else {
      await writeFile(path, migration.sql);
      io.out(`${existing === undefined ? 'wrote    ' : 'replaced '} ${path}`);
    }
  }
  return conflicts === 0 ? 0 : 1;
}

/**
 * Runs the CLI with `argv` (without the node and script paths) and resolves to the exit code.
 *
 * @example
 * ```ts
 * process.exitCode = await runCli(process.argv.slice(2));
 * ```
 */
export async function runCli(
  argv: readonly string[],
  io: CliIo = { out: (line) => console.log(line), err: (line) => console.error(line) },
): Promise<number> {
  try {
    if (argv[0] === 'serve') {
      // Loaded on demand: the service tier needs ioredis and prom-client, the other commands do not.
      const { runServeCommand } = await import('./server/cli');
      return await runServeCommand(argv.slice(1));
    }
    const { command, flags } = parseArgs(argv);
    if (flags.has('help') || command === undefined || command === 'help') {
      io.out(USAGE);
      return command === undefined && !flags.has('help') ? 2 : 0;
    }
    if (command === 'migrations') {
      const out = stringFlag(flags, 'out');
      if (!out) throw new UsageError('--out <dir> is required');
      return await copyMigrations(out, flags.get('force') === true, io);
    }
    if (command === 'migrate' || command === 'check') {
      const client = await connect(databaseUrl(flags));
      try {
        if (command === 'migrate') {
          const result = await applyMigrations(client);
          io.out(
            result.applied.length === 0
              ? `up to date at ${result.version}`
              : `applied ${result.applied.join(', ')}; schema at ${result.version}`,
          );
        } else {
          const status = await checkSchema(client);
          io.out(
            `up to date at ${status.version}${status.newer ? ' (the database also has newer migrations)' : ''}`,
          );
        }
      } finally {
        await client.end().catch(() => undefined);
      }
      return 0;
    }
    throw new UsageError(`unknown command "${command}"`);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`supabase-matchmaker: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    io.err(isMatchmakingError(error) || error instanceof Error ? error.message : String(error));
    return 1;
  }
}

const invokedDirectly = (() => {
  const entry = process.argv[1];
  if (!entry) return false;
  return /(?:^|[\\/])(?:cli\.(?:ts|js|cjs|mjs)|supabase-matchmaker)$/.test(entry);
})();

if (invokedDirectly) {
  runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
