import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { defaultTimers, type MatchedEvent, silentLogger } from '../../src/index';
import { applyMigrations } from '../../src/migrations/index';
import type { MatchmakingServer, PgPoolLike } from '../../src/server/index';
import { KeySpace } from '../../src/server/keys';
import { MatchPersister } from '../../src/server/MatchPersister';
import { createStackDatabase, DEFAULT_DATABASE_URL, type StackDatabase } from '../../src/testing/database';
import { waitFor } from '../helpers/waitFor';
import {
  deleteKeys,
  freshPrefix,
  newUserId,
  SINGLE_REDIS_URL,
  serviceMatchmaker,
  startNode,
} from './helpers';

const redisOptions = { url: SINGLE_REDIS_URL };
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function migratedDatabase(): Promise<StackDatabase> {
  const db = await createStackDatabase();
  cleanup.push(() => db.drop());
  const client = await db.pool.connect();
  try {
    await applyMigrations(client);
  } finally {
    client.release();
  }
  return db;
}

interface Row {
  id: string;
  user_a: string;
  user_b: string;
  ticket_a: string;
  ticket_b: string;
  pool: string;
  criteria: Record<string, unknown>;
  created_at: Date;
}

async function rows(db: StackDatabase): Promise<Row[]> {
  return (await db.pool.query<Row>('select * from matchmaker.matches order by created_at')).rows;
}

/** Pair `count` couples through `node`; resolves with every match as the first user of each pair saw it. */
async function makeMatches(node: MatchmakingServer, count: number, criteria = {}): Promise<MatchedEvent[]> {
  const seen: MatchedEvent[] = [];
  for (let i = 0; i < count; i += 1) {
    const [a, b] = [serviceMatchmaker(node.url, newUserId()), serviceMatchmaker(node.url, newUserId())];
    cleanup.push(
      () => a.close(),
      () => b.close(),
    );
    a.on('matched', (event) => seen.push(event));
    await a.start({ criteria });
    await b.start({ criteria });
  }
  await waitFor(() => seen.length === count, `${count} matches delivered`);
  return seen;
}

async function streamLength(keys: KeySpace, redis: Redis): Promise<number> {
  let total = 0;
  for (let bucket = 0; bucket < keys.shards; bucket += 1) total += await redis.xlen(keys.matchStream(bucket));
  return total;
}

it('writes every match to matchmaker.matches once, then empties the stream', async () => {
  const db = await migratedDatabase();
  const keyPrefix = freshPrefix();
  cleanup.push(() => deleteKeys(redisOptions, keyPrefix));
  const node = await startNode(redisOptions, {
    keyPrefix,
    persistence: { databaseUrl: db.url, pollIntervalMs: 50 },
  });
  cleanup.push(() => node.close());
  const matches = [
    ...(await makeMatches(node, 2)),
    ...(await makeMatches(node, 1, { language: 'en', level: 3 })),
  ];

  await waitFor(async () => (await rows(db)).length === 3, 'three rows written');
  const written = await rows(db);
  for (const { match } of matches) {
    const row = written.find((r) => r.id === match.matchId);
    expect(row).toBeDefined();
    expect([row!.user_a, row!.user_b]).toEqual([...match.userIds]);
    expect(row!.criteria).toEqual(match.criteria);
    expect(row!.created_at.toISOString()).toBe(match.createdAt);
    expect(row!.ticket_a).toMatch(/^[0-9a-f-]{36}$/);
    expect(row!.ticket_a).not.toBe(row!.ticket_b);
  }
  expect(written.find((r) => r.criteria.language === 'en')!.pool).toBe('[["language","en"],["level",3]]');
  const redis = new Redis(SINGLE_REDIS_URL);
  cleanup.push(async () => void (await redis.quit()));
  await waitFor(async () => (await streamLength(new KeySpace(keyPrefix, 16), redis)) === 0, 'stream emptied');
  expect((await node.metrics.persisted.get()).values[0]!.value).toBe(3);
});

it('a Postgres outage delays persistence but loses nothing; matches are still delivered', async () => {
  const db = await migratedDatabase();
  const admin = new pg.Client({ connectionString: process.env.DATABASE_URL || DEFAULT_DATABASE_URL });
  await admin.connect();
  cleanup.push(async () => {
    await admin.query(`alter database ${db.name} allow_connections true`);
    await admin.end();
  });
  const keyPrefix = freshPrefix();
  cleanup.push(() => deleteKeys(redisOptions, keyPrefix));
  const node = await startNode(redisOptions, {
    keyPrefix,
    persistence: { databaseUrl: db.url, pollIntervalMs: 50, maxRetryDelayMs: 200 },
  });
  cleanup.push(() => node.close());
  const before = await makeMatches(node, 1);
  await waitFor(async () => (await rows(db)).length === 1, 'first match written');

  // Outage: nobody may connect, and every session is cut.
  await admin.query(`alter database ${db.name} allow_connections false`);
  await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1', [db.name]);
  const during = await makeMatches(node, 2);
  await waitFor(
    async () => (await node.metrics.persistFailures.get()).values[0]!.value > 0,
    'the persister tried and failed',
  );

  await admin.query(`alter database ${db.name} allow_connections true`);
  await waitFor(
    async () => (await rows(db).catch(() => [])).length === 3,
    'every match written after the outage',
  );
  expect(new Set((await rows(db)).map((r) => r.id))).toEqual(
    new Set([...before, ...during].map((event) => event.match.matchId)),
  );
});

it('takes over what a dead node left unwritten, idempotently, and sets refused matches aside', async () => {
  const db = await migratedDatabase();
  const keyPrefix = freshPrefix();
  cleanup.push(() => deleteKeys(redisOptions, keyPrefix));
  // A node whose Postgres writes commit and then "crash" before the acknowledgement: the worst redelivery case.
  let commits = 0;
  const crashing: PgPoolLike = {
    async query(text, params) {
      await db.pool.query(text, params);
      commits += 1;
      throw Object.assign(new Error('connection terminated unexpectedly'), { code: '57P01' });
    },
  };
  const node = await startNode(redisOptions, {
    keyPrefix,
    persistence: { pool: crashing, pollIntervalMs: 50 },
  });
  const matches = await makeMatches(node, 3);
  await waitFor(() => commits > 0, 'the doomed node committed a batch (and lost the acknowledgement)');
  await node.close({ drainTimeoutMs: 0 });
  const committedBefore = (await rows(db)).length;
  expect(committedBefore).toBeGreaterThan(0);

  // A match Postgres will refuse (a user id that is not a UUID) sits in the same stream.
  const keys = new KeySpace(keyPrefix, 16);
  const redis = new Redis(SINGLE_REDIS_URL);
  cleanup.push(async () => void (await redis.quit()));
  const poison = {
    matchId: randomUUID(),
    userIds: ['not-a-uuid', newUserId()],
    ticketIds: [`0.${randomUUID().replaceAll('-', '')}`, `0.${randomUUID().replaceAll('-', '')}`],
    enqueuedAtMs: [Date.now(), Date.now()],
    createdAtMs: Date.now(),
    criteria: {},
  };
  await redis.xadd(keys.matchStream(0), '*', 'match', JSON.stringify(poison));

  const rescuer = new MatchPersister({
    redis,
    keys,
    pool: db.pool,
    consumer: 'rescuer',
    logger: silentLogger,
    timers: defaultTimers,
    claimIdleMs: 100,
    pollIntervalMs: 50,
  });
  rescuer.start();
  cleanup.push(() => rescuer.stop());
  await waitFor(
    async () => (await streamLength(keys, redis)) === 0,
    'every entry taken over and acknowledged',
  );
  const written = await rows(db);
  expect(written.map((r) => r.id).sort()).toEqual(matches.map((event) => event.match.matchId).sort());
  // Rows written twice were ignored (ON CONFLICT), not refused: only the poison match was set aside.
  const dead = await redis.xrange(`${keys.matchStream(0)}:dead`, '-', '+');
  expect(dead).toHaveLength(1);
  expect(JSON.parse(dead[0]![1][1]!)).toMatchObject({ matchId: poison.matchId });
});
