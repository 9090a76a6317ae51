/**
 * The maintenance job under REAL pg_cron, on the cluster the tests own (scripts/pg-cron-cluster.sh:
 * PostgreSQL 15 with pg_cron preloaded and cron.database_name = 'postgres'). pg_cron only runs jobs in that
 * database, so this file resets our objects there instead of creating a fresh database.
 *
 * Debian's pg_cron is 1.4 (schedules by the minute): the migration schedules '* * * * *' and the job loops for
 * 50 s sweeping every 5 s; with pg_cron 1.5+ it would schedule '5 seconds'. The test waits for the sweep (up to
 * ~70 s on 1.4). The last test schedules two workers (20261128000900) and waits for pg_cron to start both.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyMigrations } from '../../src/migrations';
import { installSupabaseShape } from '../../src/testing/supabaseShape';
import { insertWaiting, join, newUser, state } from './queueDb';

const CRON_URL = process.env.MATCHMAKER_CRON_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:54329/postgres';

let client: pg.Client;

async function connectCronCluster(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: CRON_URL, connectionTimeoutMillis: 3000 });
  c.on('error', () => {});
  try {
    await c.connect();
  } catch (cause) {
    throw new Error(
      `The pg_cron test cluster is not reachable at ${CRON_URL}. Create and start it with ` +
        '`sudo bash scripts/pg-cron-cluster.sh` (or set MATCHMAKER_CRON_DATABASE_URL to a database of a ' +
        "cluster with shared_preload_libraries = 'pg_cron' whose cron.database_name it is).",
      { cause },
    );
  }
  return c;
}

async function stopOurJobs(c: pg.Client): Promise<void> {
  await c.query(`do $$ begin
    if exists (select 1 from pg_extension where extname = 'pg_cron') then
      perform cron.unschedule(jobid) from cron.job where jobname like 'matchmaker%';
    end if; end $$`);
  // Job runs started by pg_cron for our schedule (the 1.4 job loops for up to 50 s).
  await c.query(`select pg_cancel_backend(pid) from pg_stat_activity
    where datname = current_database() and pid <> pg_backend_pid() and query like 'call matchmaker.run_maintenance%'`);
}

beforeAll(async () => {
  client = await connectCronCluster();
  // The cluster and its job are shared by every run on this machine (another checkout's tests, a second
  // session): this file resets both, so runs take turns, held for the whole file by this session-level lock.
  await client.query('select pg_advisory_lock(1835887400)');
  const preload = (await client.query('show shared_preload_libraries')).rows[0]
    .shared_preload_libraries as string;
  if (!preload.includes('pg_cron')) {
    throw new Error(
      `${CRON_URL} does not preload pg_cron (shared_preload_libraries = '${preload}'); run scripts/pg-cron-cluster.sh`,
    );
  }
  await stopOurJobs(client);
  // Reset what earlier runs left (this database belongs to the tests).
  await client.query(`drop schema if exists matchmaker cascade`);
  const fns = await client.query(`select p.oid::regprocedure::text as fn from pg_proc p
    where p.pronamespace = 'public'::regnamespace and p.proname like 'matchmaker\\_%'`);
  for (const { fn } of fns.rows) await client.query(`drop function ${fn}`);
  await client.query(`do $$ declare r record; begin
    for r in select policyname from pg_policies where schemaname = 'realtime' and policyname like 'matchmaker%' loop
      execute format('drop policy %I on realtime.messages', r.policyname);
    end loop; exception when undefined_table then null; end $$`);
  await client.query('create extension if not exists pg_cron');
  await installSupabaseShape(client);
  await applyMigrations(client);
}, 600_000);

afterAll(async () => {
  if (client) {
    await stopOurJobs(client).catch(() => {});
    await client.end(); // also releases the advisory lock
  }
});

it('the migration schedules the maintenance job for the installed pg_cron version', async () => {
  const version = (await client.query(`select extversion from pg_extension where extname = 'pg_cron'`))
    .rows[0].extversion as string;
  const [major, minor] = version.split(/[.-]/).map(Number) as [number, number];
  const jobs = await client.query(
    `select schedule, command, database, active from cron.job where jobname = 'matchmaker-maintenance'`,
  );
  expect(jobs.rows).toHaveLength(1);
  const job = jobs.rows[0];
  expect(job.active).toBe(true);
  expect(job.database).toBe('postgres');
  if (major > 1 || minor >= 5) {
    expect(job).toMatchObject({ schedule: '5 seconds', command: 'call matchmaker.run_maintenance()' });
  } else {
    expect(job).toMatchObject({
      schedule: '* * * * *',
      command: `call matchmaker.run_maintenance('50 seconds'::interval, '5 seconds'::interval)`,
    });
  }
  // Rescheduling replaces the job (no duplicates).
  await client.query(`select matchmaker.schedule_maintenance(interval '10 seconds')`);
  await client.query(`select matchmaker.schedule_maintenance()`);
  const again = await client.query(
    `select count(*)::int as n from cron.job where jobname = 'matchmaker-maintenance'`,
  );
  expect(again.rows[0].n).toBe(1);
});

it('real pg_cron sweeps an expired ticket (history + notification) and pairs a stranded backlog', {
  timeout: 150_000,
}, async () => {
  const u = newUser();
  const t = await join(client, u);
  expect(t.status).toBe('waiting');
  await client.query(
    `update matchmaker.tickets set expires_at = clock_timestamp() - interval '1 second' where id = $1`,
    [t.ticket!.id],
  );
  // Two compatible tickets that no join will pair (inserted directly, as a backlog import would; nobody
  // heartbeats them, so heartbeat expiry is off for this test).
  await client.query(
    `update matchmaker.settings set criteria_keys = '[{"key":"lang"}]', heartbeat_timeout = null`,
  );
  const backlog = [newUser(), newUser()];
  await insertWaiting(client, backlog, { lang: 'eo' });
  const deadline = Date.now() + 140_000;
  let done = false;
  while (!done) {
    const r = await client.query(
      `select (select outcome from matchmaker.ticket_history where ticket_id = $1) as expired,
              (select count(*)::int from matchmaker.ticket_history where user_id = any ($2::uuid[]) and outcome = 'matched') as paired`,
      [t.ticket!.id, backlog],
    );
    done = r.rows[0].expired === 'expired' && r.rows[0].paired === 2;
    if (!done) {
      if (Date.now() > deadline) {
        const runs = await client.query(
          `select status, return_message from cron.job_run_details order by start_time desc limit 3`,
        );
        throw new Error(`pg_cron did not sweep in time; last runs: ${JSON.stringify(runs.rows)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  expect(await state(client, u)).toMatchObject({ status: 'expired', reason: 'ttl' });
  const notes = await client.query(
    `select event, payload->>'outcome' as outcome from realtime.messages where topic = $1`,
    [`matchmaker:user:${u}`],
  );
  expect(notes.rows).toEqual([{ event: 'cancelled', outcome: 'expired' }]);
  const runs =
    await client.query(`select count(*)::int as n from cron.job_run_details d join cron.job j using (jobid)
    where j.jobname = 'matchmaker-maintenance' and d.status = 'failed'`);
  expect(runs.rows[0].n).toBe(0);
});

it('real pg_cron runs two maintenance workers at once, and the backlog they drain is paired as by one worker', {
  timeout: 150_000,
}, async () => {
  await client.query(
    `update matchmaker.settings set criteria_keys = '[{"key":"lang"}]', heartbeat_timeout = null`,
  );
  // Only the two workers scheduled here run: the earlier job and any run of it are stopped first.
  await stopOurJobs(client);
  const deadline = Date.now() + 140_000;
  const runningWorkers = async () =>
    Number(
      (
        await client.query(`select count(*)::int as n from pg_stat_activity
          where datname = current_database() and query like 'call matchmaker.run_maintenance%' and state = 'active'`)
      ).rows[0].n,
    );
  while ((await runningWorkers()) > 0) {
    if (Date.now() > deadline) throw new Error('an earlier maintenance run did not stop');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await client.query(`select matchmaker.schedule_maintenance(interval '2 seconds', 2)`);
  const jobs = await client.query(
    `select jobname, schedule, command from cron.job where jobname like 'matchmaker-maintenance%' order by jobname`,
  );
  expect(jobs.rows.map((j) => j.jobname)).toEqual(['matchmaker-maintenance', 'matchmaker-maintenance-2']);
  expect(new Set(jobs.rows.map((j) => `${j.schedule} ${j.command}`)).size).toBe(1);
  // pg_cron starts both jobs at the next run (the minute, on 1.4); wait until both loops are running.
  while ((await runningWorkers()) < 2) {
    if (Date.now() > deadline) throw new Error('pg_cron did not start both maintenance workers in time');
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  // A backlog in one pool (inserted directly, as an import would): both loops sweep it every 2 s.
  const size = 6_000;
  const inserted = await client.query(
    `insert into matchmaker.tickets (user_id, pool, criteria, expires_at)
     select gen_random_uuid(), '{"lang": "tok"}', '{"lang": "tok"}', clock_timestamp() + interval '5 minutes'
     from generate_series(1, $1)
     returning user_id, seq`,
    [size],
  );
  const seqs = [...inserted.rows].sort((x, y) => Number(x.seq) - Number(y.seq));
  while (
    Number(
      (await client.query(`select count(*)::int as n from matchmaker.tickets where pool = '{"lang": "tok"}'`))
        .rows[0].n,
    ) > 0
  ) {
    if (Date.now() > deadline) throw new Error('the two workers did not drain the backlog in time');
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  // Every ticket matched exactly once, with its neighbour in enqueue order (1-2, 3-4, ...): FIFO as one worker.
  const order = new Map(seqs.map((row, i) => [row.user_id as string, i]));
  const matches = await client.query(
    `select user_a, user_b from matchmaker.matches where pool = '{"lang": "tok"}'`,
  );
  expect(matches.rows).toHaveLength(size / 2);
  const seen = new Set<string>();
  for (const m of matches.rows) {
    const [a, b] = [order.get(m.user_a as string), order.get(m.user_b as string)];
    expect(a !== undefined && b !== undefined && a % 2 === 0 && b === a + 1, `${a}-${b}`).toBe(true);
    seen.add(m.user_a as string).add(m.user_b as string);
  }
  expect(seen.size).toBe(size);
  const failed =
    await client.query(`select count(*)::int as n from cron.job_run_details d join cron.job j using (jobid)
    where j.jobname like 'matchmaker-maintenance%' and d.status = 'failed'`);
  expect(failed.rows[0].n).toBe(0);
});
