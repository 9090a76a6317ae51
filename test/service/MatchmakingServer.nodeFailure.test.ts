import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterEach, expect, it } from 'vitest';
import type { ErrorEvent, MatchedEvent, Matchmaker } from '../../src/index';
import { KeySpace } from '../../src/server/keys';
import { waitFor } from '../helpers/waitFor';
import {
  deleteKeys,
  freshPrefix,
  JWT_SECRET,
  newUserId,
  RawClient,
  SINGLE_REDIS_URL,
  serviceMatchmaker,
  signToken,
  startNode,
} from './helpers';

const FIXTURE = fileURLToPath(new URL('./fixtures/serveNode.ts', import.meta.url));
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** Start `supabase-matchmaker serve` in a child process; resolves with its WebSocket URL. */
async function spawnNode(args: string[]): Promise<{ child: ChildProcess; url: string; nodeId: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, ...args], {
    env: { ...process.env, SUPABASE_JWT_SECRET: JWT_SECRET, DATABASE_URL: '', MATCHMAKER_DATABASE_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const listening = await new Promise<{ url: string; nodeId: string }>((resolve, reject) => {
    let buffer = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      for (const line of buffer.split('\n')) {
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string; nodeId?: string };
          if (entry.msg === 'listening' && entry.url && entry.nodeId)
            resolve({ url: entry.url, nodeId: entry.nodeId });
        } catch {
          // partial line
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code} before listening: ${output}`)));
  });
  return { child, ...listening };
}

it('a killed node: its users resume on the other node, keep their place, and are matched exactly once', async () => {
  const redisOptions = { url: SINGLE_REDIS_URL };
  const keyPrefix = freshPrefix();
  cleanup.push(() => deleteKeys(redisOptions, keyPrefix));
  const timings = { sweepIntervalMs: 100, nodeTimeoutMs: 1_500, resumeGraceMs: 3_000 };
  const nodeB = await startNode(redisOptions, { keyPrefix, ...timings });
  cleanup.push(() => nodeB.close());
  const a = await spawnNode([
    '--port=0',
    '--host=127.0.0.1',
    `--redis-url=${SINGLE_REDIS_URL}`,
    `--key-prefix=${keyPrefix}`,
    '--shards=16',
    `--sweep-interval-ms=${timings.sweepIntervalMs}`,
    `--node-timeout-ms=${timings.nodeTimeoutMs}`,
    `--resume-grace-ms=${timings.resumeGraceMs}`,
    '--no-persistence',
  ]);
  cleanup.push(async () => {
    if (a.child.exitCode === null && a.child.signalCode === null) {
      a.child.kill('SIGKILL');
      await once(a.child, 'exit');
    }
  });

  // A load balancer in miniature: node A while it lives, node B afterwards.
  let route = a.url;
  const track = (matchmaker: Matchmaker) => {
    const seen = { matched: [] as MatchedEvent[], errors: [] as ErrorEvent[] };
    matchmaker.on('matched', (event) => seen.matched.push(event));
    matchmaker.on('error', (event) => seen.errors.push(event));
    cleanup.push(() => matchmaker.close());
    return seen;
  };
  const onA = Array.from({ length: 4 }, (_, i) => {
    const id = newUserId();
    const matchmaker = serviceMatchmaker(() => route, id);
    return { id, room: `room-${i}`, matchmaker, seen: track(matchmaker) };
  });
  for (const user of onA) await user.matchmaker.start({ criteria: { room: user.room } });

  // A user on A whose client never comes back: after the grace window the ticket is gone.
  const lost = await new RawClient(a.url).open();
  cleanup.push(() => lost.close());
  await lost.hello(await signToken(newUserId()));
  const lostQueued = await lost.request({ type: 'join', searchId: 'lost-1', criteria: { room: 'lost' } });
  expect(lostQueued.type).toBe('queued');

  route = nodeB.url;
  a.child.kill('SIGKILL');
  await once(a.child, 'exit');

  // Every client notices (a non-fatal error), reconnects to B and resumes its ticket.
  await waitFor(() => onA.every((user) => user.seen.errors.length > 0), 'clients told about the outage');
  for (const user of onA) {
    expect(user.seen.errors[0]).toMatchObject({ fatal: false, error: { code: 'unavailable' } });
    expect(user.matchmaker.getSnapshot().status).toBe('searching');
  }

  // B notices A is dead and releases its tickets; the resumed ones keep waiting, the lost one is ended.
  const redis = new Redis(SINGLE_REDIS_URL);
  cleanup.push(async () => void (await redis.quit()));
  const keys = new KeySpace(keyPrefix, 16);
  await waitFor(async () => (await redis.zscore(keys.nodes(), a.nodeId)) === null, 'node A forgotten');
  const lostTicket = String(lostQueued.ticketId);
  const lostKey = keys.ticket(keys.bucketOfTicket(lostTicket)!, lostTicket);
  await waitFor(async () => (await redis.hget(lostKey, 'reason')) === 'disconnected', 'lost ticket ended');

  // Partners arrive on B: each pairs with the resumed user of its room (their tickets kept their place).
  const partners = onA.map((user) => {
    const id = newUserId();
    const matchmaker = serviceMatchmaker(nodeB.url, id);
    return { id, room: user.room, matchmaker, seen: track(matchmaker) };
  });
  for (const partner of partners) await partner.matchmaker.start({ criteria: { room: partner.room } });
  const late = serviceMatchmaker(nodeB.url, newUserId());
  const lateSeen = track(late);
  await late.start({ criteria: { room: 'lost' } });

  await waitFor(
    () => [...onA, ...partners].every((user) => user.seen.matched.length > 0),
    'everyone on the dead node matched with their partner',
  );
  const matchIds = new Set<string>();
  for (const [i, user] of onA.entries()) {
    const partner = partners[i]!;
    expect(user.seen.matched).toHaveLength(1);
    expect(partner.seen.matched).toHaveLength(1);
    expect(user.seen.matched[0]!.match.partnerId).toBe(partner.id);
    expect(partner.seen.matched[0]!.match.matchId).toBe(user.seen.matched[0]!.match.matchId);
    matchIds.add(user.seen.matched[0]!.match.matchId);
  }
  expect(matchIds.size).toBe(onA.length);
  expect((await nodeB.metrics.matches.get()).values[0]!.value).toBe(onA.length);
  // Nobody is waiting in the lost user's room but the late user: the disconnected ticket was not matched.
  expect(lateSeen.matched).toHaveLength(0);
  expect(late.getSnapshot().status).toBe('searching');
});
