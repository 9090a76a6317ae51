/**
 * `npm run bench:instructions -- [--before <version>…] [--keep]`: instructions per transaction of the queue
 * tier's join, per pair of its batch processor, of pgbench's TPC-B transaction and of two PostgREST-shaped floors,
 * counted by valgrind's callgrind
 * on a single-user Postgres backend (`postgres --single`). Throughput on a shared 2-core machine moves by 10% between
 * identical runs; an instruction count does not depend on the load (two runs of this tool agree within 1%), so two
 * versions of the join can be compared exactly (see bench/README.md "Joins, session 5").
 *
 * Every transaction kind runs a fixed script twice, with 1,000 and with 3,000 transactions, each on a fresh copy of
 * its database; the figure is (Ir(3,000) - Ir(1,000)) / 2,000, so start-up and the first transactions' cache
 * loading cancel out. The join script is the benchmark's PostgREST-shaped transaction (`begin`, the role and JWT
 * claims by `set_config`, `select public.matchmaker_join(...)` for a new user in one of 1,000 pools, `commit`) with
 * the users and pools drawn from a fixed seed. The batch figure is one `CALL matchmaker.run_maintenance()` (one worker)
 * on a backlog of 4,000 and of 20,000 waiting tickets in one pool: (Ir(20,000) - Ir(4,000)) / 8,000 pairs. Each
 * `--before` version gets a join row and a batch row.
 *
 * Needs: root (the backend runs as `postgres` through `su`), valgrind, Debian's `pg_createcluster` for
 * PostgreSQL 15 and `pgbench`. It creates its own cluster (`15/mm_instr`, port `BENCH_INSTR_PORT`, default 54339)
 * and drops it at the end unless `--keep`.
 *
 * @packageDocumentation
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import pg from 'pg';
import { MIGRATIONS } from '../../src/migrations/migrations.generated';
import { createPgbenchDatabase } from '../lib/calibration';
import { readBenchConfig } from '../lib/config';
import {
  createQueueDatabase,
  insertBacklog,
  type QueueDatabase,
  type QueueDatabaseSchema,
} from '../lib/queueDatabases';

const PG_VERSION = '15';
const CLUSTER = 'mm_instr';
const PORT = Number(process.env.BENCH_INSTR_PORT ?? 54339);
const DATA_DIR = `/var/lib/postgresql/${PG_VERSION}/${CLUSTER}`;
const CONFIG_FILE = `/etc/postgresql/${PG_VERSION}/${CLUSTER}/postgresql.conf`;
const POSTGRES = `/usr/lib/postgresql/${PG_VERSION}/bin/postgres`;
const SHORT = 1_000;
const LONG = 3_000;
const POOLS = 1_000;

interface Args {
  readonly before: readonly string[];
  readonly keep: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const before: string[] = [];
  let keep = false;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--keep') keep = true;
    else if (arg === '--before') {
      const version = argv[i + 1];
      if (version === undefined || !MIGRATIONS.some((m) => m.version === version)) {
        throw new Error(
          `--before needs a shipped migration version (one of ${MIGRATIONS.map((m) => m.version).join(', ')})`,
        );
      }
      before.push(version);
      i += 1;
    } else
      throw new Error(
        `unknown argument ${arg}; usage: npm run bench:instructions -- [--before <version>…] [--keep]`,
      );
  }
  return { before, keep };
}

function requireTools(): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (the backend is started as postgres through su)');
  for (const tool of ['valgrind', 'pg_createcluster', 'pgbench', 'su']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) missing.push(tool);
  }
  if (!existsSync(POSTGRES)) missing.push(POSTGRES);
  if (missing.length > 0) {
    throw new Error(
      `bench:instructions needs ${missing.join(', ')}. On Debian: apt-get install valgrind postgresql-${PG_VERSION} postgresql-contrib, and run as root.`,
    );
  }
}

const run = (command: string, args: readonly string[]): string =>
  execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function clusterExists(): boolean {
  return run('pg_lsclusters', ['--no-header'])
    .split('\n')
    .some((line) => {
      const [version, name] = line.trim().split(/\s+/);
      return version === PG_VERSION && name === CLUSTER;
    });
}

function startCluster(): void {
  spawnSync('pg_ctlcluster', [PG_VERSION, CLUSTER, 'start'], { stdio: 'ignore' });
}

function stopCluster(): void {
  spawnSync('pg_ctlcluster', [PG_VERSION, CLUSTER, 'stop'], { stdio: 'ignore' });
}

function ensureCluster(): void {
  if (!clusterExists()) {
    run('pg_createcluster', [PG_VERSION, CLUSTER, '-p', String(PORT), '--', '--auth=trust']);
  }
  startCluster();
}

async function withClient<T>(database: string, body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ host: '127.0.0.1', port: PORT, user: 'postgres', database });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

/** The benchmark's configuration, pointed at this tool's cluster. */
const config = readBenchConfig({
  ...process.env,
  PGHOST: '127.0.0.1',
  PGPORT: String(PORT),
  PGUSER: 'postgres',
});

/**
 * A queue database (the shared benchmark helper) with the `room` criteria key of the join script, usable as a
 * template: its set-up session is closed. `prepare` runs in that session first.
 *
 * Tickets live and count as seen for a day: under callgrind a backend runs ~50x slower, so a ticket waits minutes
 * for the next join of its pool, and with the default 30 s heartbeat timeout (or a short TTL) the next join would
 * find it stale and retire it, a different and costlier path, taken more often the longer a run lasts (so the
 * figure would depend on the machine's speed). In the benchmark's own rounds a ticket waits well under a second.
 * {@link noTicketRetired} checks that no run took that path.
 */
async function queueTemplate(
  schema: QueueDatabaseSchema,
  prepare?: (client: pg.Client) => Promise<unknown>,
): Promise<QueueDatabase> {
  const db = await createQueueDatabase(config, schema);
  await db.admin.query(
    `update matchmaker.settings set criteria_keys = '[{"key":"room"}]', ticket_ttl = '1 day', heartbeat_timeout = '1 day'`,
  );
  await prepare?.(db.admin);
  await db.admin.end();
  return db;
}

/** The floors: a SECURITY DEFINER function that only builds a small jsonb, and a table for a one-row insert. */
const FLOOR_SQL = `
  create function public.floor_call(criteria jsonb default '{}'::jsonb) returns jsonb
  language plpgsql volatile security definer set search_path = '' as $fn$
  begin
    return pg_catalog.jsonb_build_object('status', 'waiting', 'user', auth.uid());
  end
  $fn$;
  grant execute on function public.floor_call(jsonb) to authenticated;
  create table public.floor_rows (id uuid primary key default gen_random_uuid(), user_id uuid not null, room text not null);
  grant insert on public.floor_rows to authenticated;`;

const SMALL_BACKLOG = 4_000;
const LARGE_BACKLOG = 20_000;

/**
 * Waiting tickets in one pool, alive for a day (and not stale: the template's heartbeat timeout is a day), so none
 * expires or goes stale while a copy of the database is drained minutes later.
 */
const backlogOf = (count: number) => async (client: pg.Client) => {
  await insertBacklog(client, count, { room: 'backlog' }, { lifetime: '1 day' });
  await client.query('vacuum analyze');
};

/** mulberry32: a small seeded generator, so every run and every version gets the same users and pools. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function uuidFrom(next: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(next() * 16).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

type ScriptKind = 'join' | 'call' | 'insert' | 'tpcb' | 'drain';

/** One statement per line (single-user mode ends a statement at the newline). */
function script(kind: ScriptKind, transactions: number): string {
  if (kind === 'drain') return 'call matchmaker.run_maintenance();\n';
  const next = seeded(7);
  const lines: string[] = [];
  for (let i = 0; i < transactions; i += 1) {
    if (kind === 'tpcb') {
      const aid = 1 + Math.floor(next() * 1_000_000);
      const tid = 1 + Math.floor(next() * 100);
      const bid = 1 + Math.floor(next() * 10);
      const delta = Math.floor(next() * 10_001) - 5_000;
      lines.push(
        'begin;',
        `update pgbench_accounts set abalance = abalance + ${delta} where aid = ${aid};`,
        `select abalance from pgbench_accounts where aid = ${aid};`,
        `update pgbench_tellers set tbalance = tbalance + ${delta} where tid = ${tid};`,
        `update pgbench_branches set bbalance = bbalance + ${delta} where bid = ${bid};`,
        `insert into pgbench_history (tid, bid, aid, delta, mtime) values (${tid}, ${bid}, ${aid}, ${delta}, current_timestamp);`,
        'end;',
      );
      continue;
    }
    const user = uuidFrom(next);
    const room = `r${Math.floor(next() * POOLS)}`;
    const call =
      kind === 'join'
        ? `select public.matchmaker_join(jsonb_build_object('room', '${room}'));`
        : kind === 'call'
          ? `select public.floor_call(jsonb_build_object('room', '${room}'));`
          : `insert into public.floor_rows (user_id, room) values (auth.uid(), '${room}');`;
    lines.push(
      'begin;',
      `select set_config('role', 'authenticated', true), set_config('request.jwt.claims', '{"sub":"${user}","role":"authenticated"}', true);`,
      call,
      'commit;',
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Instructions of one single-user backend running `scriptFile` on a fresh copy of `template`. */
async function instructions(
  template: string,
  scriptFile: string,
  workDir: string,
  verify?: (client: pg.Client) => Promise<void>,
): Promise<number> {
  const runDb = `instr_run_${process.pid}`;
  await withClient('postgres', async (c) => {
    await c.query(`drop database if exists "${runDb}" with (force)`);
    await c.query(`create database "${runDb}" template "${template}"`);
  });
  stopCluster();
  const out = joinPath(workDir, 'callgrind.out');
  const err = joinPath(workDir, 'backend.err');
  try {
    const command = [
      'valgrind --tool=callgrind',
      `--callgrind-out-file=${out}`,
      POSTGRES,
      `--single -D ${DATA_DIR} -c config_file=${CONFIG_FILE} -c fsync=off -c synchronous_commit=off`,
      runDb,
      `< ${scriptFile} > /dev/null 2> ${err}`,
    ].join(' ');
    const result = spawnSync('su', ['postgres', '-c', command], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`valgrind failed: ${result.stderr}`);
    const backendErrors = execFileSync('sh', ['-c', `grep -c -E '^(ERROR|FATAL)' ${err} || true`], {
      encoding: 'utf8',
    }).trim();
    if (backendErrors !== '0') {
      throw new Error(`${backendErrors} statements of ${scriptFile} failed; see ${err}`);
    }
    const summary = execFileSync('sh', ['-c', `grep -E '^summary:' ${out}`], { encoding: 'utf8' });
    const count = Number(summary.replace('summary:', '').trim());
    if (!Number.isFinite(count) || count <= 0) throw new Error(`no instruction count in ${out}`);
    if (verify) {
      startCluster();
      await withClient(runDb, verify);
    }
    return count;
  } finally {
    rmSync(out, { force: true });
    startCluster();
    await withClient('postgres', (c) => c.query(`drop database if exists "${runDb}" with (force)`));
  }
}

/** After a join script: every ticket that ended was matched (none expired, went stale or was cancelled). */
async function noTicketRetired(client: pg.Client): Promise<void> {
  const { rows: counted } = await client.query<{ retired: number; matched: number }>(
    `select count(*) filter (where outcome <> 'matched')::int as retired,
            count(*) filter (where outcome = 'matched')::int as matched
     from matchmaker.ticket_history`,
  );
  const got = counted[0];
  if (got === undefined || got.retired !== 0 || got.matched === 0) {
    throw new Error(
      `the join script retired ${got?.retired} tickets (and matched ${got?.matched}): its figure would not be a join's`,
    );
  }
}

async function perTransaction(template: string, kind: ScriptKind, workDir: string): Promise<number> {
  const files = [SHORT, LONG].map((n) => {
    const file = joinPath(workDir, `${kind}_${n}.sql`);
    if (!existsSync(file)) {
      writeFileSync(file, script(kind, n));
      chmodSync(file, 0o644);
    }
    return file;
  });
  const verify = kind === 'join' ? noTicketRetired : undefined;
  const short = await instructions(template, files[0]!, workDir, verify);
  const long = await instructions(template, files[1]!, workDir, verify);
  return Math.round((long - short) / (LONG - SHORT));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  requireTools();
  ensureCluster();
  const workDir = mkdtempSync(joinPath(tmpdir(), 'bench-instructions-'));
  chmodSync(workDir, 0o777); // the backend (user postgres) writes its callgrind file and stderr here
  const rows: { label: string; perTx: number }[] = [];
  const dropAtEnd: (() => Promise<void>)[] = [];
  try {
    process.stderr.write('preparing databases\n');
    const tpcb = await createPgbenchDatabase(config);
    dropAtEnd.push(tpcb.drop);
    const join = await queueTemplate('current', (client) => client.query(FLOOR_SQL));
    const before = new Map<string, QueueDatabase>();
    for (const version of args.before) before.set(version, await queueTemplate({ before: version }));
    dropAtEnd.push(join.drop, ...[...before.values()].map((db) => db.drop));

    const measure = async (label: string, template: string, kind: ScriptKind) => {
      process.stderr.write(`measuring ${label}\n`);
      rows.push({ label, perTx: await perTransaction(template, kind, workDir) });
    };
    await measure('pgbench TPC-B transaction', tpcb.name, 'tpcb');
    await measure('PostgREST-shaped call of a function building a small jsonb', join.name, 'call');
    await measure('PostgREST-shaped one-row insert', join.name, 'insert');
    await measure('join, every shipped migration', join.name, 'join');
    for (const [version, db] of before) {
      await measure(`join, migrations before ${version}`, db.name, 'join');
    }
    const drainFile = joinPath(workDir, 'drain.sql');
    writeFileSync(drainFile, script('drain', 1));
    chmodSync(drainFile, 0o644);
    // Every ticket must have been paired (none expired or went stale): otherwise the figure is not a pair's.
    const allPaired = (backlog: number) => async (client: pg.Client) => {
      const { rows: counted } = await client.query<{ matches: number; open: number }>(
        'select (select count(*) from matchmaker.matches)::int as matches, (select count(*) from matchmaker.tickets)::int as open',
      );
      const got = counted[0];
      if (got?.matches !== backlog / 2 || got.open !== 0) {
        throw new Error(
          `the drain of ${backlog} tickets made ${got?.matches} matches and left ${got?.open} open`,
        );
      }
    };
    const measureBatch = async (label: string, schema: QueueDatabaseSchema) => {
      process.stderr.write(`measuring ${label}\n`);
      const small = await queueTemplate(schema, backlogOf(SMALL_BACKLOG));
      const large = await queueTemplate(schema, backlogOf(LARGE_BACKLOG));
      dropAtEnd.push(small.drop, large.drop);
      const smallIr = await instructions(small.name, drainFile, workDir, allPaired(SMALL_BACKLOG));
      const largeIr = await instructions(large.name, drainFile, workDir, allPaired(LARGE_BACKLOG));
      rows.push({ label, perTx: Math.round((largeIr - smallIr) / ((LARGE_BACKLOG - SMALL_BACKLOG) / 2)) });
      await Promise.all([small.drop(), large.drop()]);
    };
    await measureBatch('batch pair, every shipped migration (run_maintenance, 1 worker)', 'current');
    for (const version of args.before) {
      await measureBatch(`batch pair, migrations before ${version}`, { before: version });
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
    for (const drop of dropAtEnd) await drop().catch(() => {});
    if (!args.keep) {
      stopCluster();
      spawnSync('pg_dropcluster', [PG_VERSION, CLUSTER], { stdio: 'ignore' });
    }
  }
  const tpcb = rows[0]!.perTx;
  const width = Math.max(...rows.map((r) => r.label.length));
  process.stdout.write(
    `\nInstructions per transaction (callgrind, ${LONG - SHORT} transactions after ${SHORT}; ${POOLS} pools)\n\n`,
  );
  process.stdout.write(`${'transaction'.padEnd(width)}  instructions  x TPC-B\n`);
  for (const row of rows) {
    process.stdout.write(
      `${row.label.padEnd(width)}  ${row.perTx.toLocaleString('en-US').padStart(12)}  ${(row.perTx / tpcb).toFixed(2).padStart(7)}\n`,
    );
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:instructions: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
