import { Redis } from 'ioredis';
import { afterEach, expect, it } from 'vitest';
import type { MatchedEvent } from '../../src/index';
import type { MatchmakingServer } from '../../src/server/index';
import { KeySpace } from '../../src/server/keys';
import { waitFor } from '../helpers/waitFor';
import {
  deleteKeys,
  freshPrefix,
  newUserId,
  RawClient,
  SINGLE_REDIS_URL,
  serviceMatchmaker,
  signToken,
  startNode,
} from './helpers';

const redisOptions = { url: SINGLE_REDIS_URL };
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function node(
  options: Parameters<typeof startNode>[1] = {},
): Promise<{ server: MatchmakingServer; keys: KeySpace; keyPrefix: string }> {
  const keyPrefix = options.keyPrefix ?? freshPrefix();
  cleanup.push(() => deleteKeys(redisOptions, keyPrefix));
  const server = await startNode(redisOptions, { keyPrefix, ...options });
  cleanup.push(() => server.close());
  return { server, keys: new KeySpace(keyPrefix, 16), keyPrefix };
}

function matchmaker(url: string | (() => string), userId = newUserId()) {
  const m = serviceMatchmaker(url, userId);
  cleanup.push(() => m.close());
  const matched: MatchedEvent[] = [];
  m.on('matched', (event) => matched.push(event));
  return { id: userId, m, matched };
}

async function raw(server: MatchmakingServer, userId: string): Promise<RawClient> {
  const client = await new RawClient(server.url).open();
  cleanup.push(() => client.close());
  await client.hello(await signToken(userId));
  return client;
}

it('widening moves a waiting ticket to the broader pool, keeping its place', async () => {
  const { server } = await node({ widening: { afterMs: 200, drop: ['level'] } });
  const carol = matchmaker(server.url);
  const alice = matchmaker(server.url);
  const bob = matchmaker(server.url);
  await carol.m.start({ criteria: { language: 'en' } });
  await alice.m.start({ criteria: { language: 'en', level: 1 } });
  await bob.m.start({ criteria: { language: 'en', level: 2 } });
  // Nobody shares a pool yet; after the wait, alice (widened first: she came first) meets carol.
  await waitFor(() => alice.matched.length > 0, 'alice matched after widening');
  const { match } = alice.matched[0]!;
  expect(match.partnerId).toBe(carol.id);
  expect(match.criteria).toEqual({ language: 'en' });
  expect(match.userIds).toEqual([carol.id, alice.id]);
  await waitFor(() => carol.matched.length > 0, 'carol matched');
  expect(bob.m.getSnapshot().status).toBe('searching');
});

it('expires a ticket after its lifetime (reason expired)', async () => {
  const { server } = await node({ ticketTtlMs: 1_000 });
  const alice = matchmaker(server.url);
  await alice.m.start();
  await waitFor(() => alice.m.getSnapshot().status === 'cancelled', 'alice expired');
  expect(alice.m.getSnapshot()).toMatchObject({ status: 'cancelled', reason: 'expired' });
});

it('a dropped connection resumes its ticket within the grace window; after it, the ticket is gone', async () => {
  const { server, keys } = await node({ resumeGraceMs: 600 });
  const aliceId = newUserId();
  const first = await raw(server, aliceId);
  const queued = await first.request({ type: 'join', searchId: 'a-1', criteria: { room: 'g' } });
  first.socket.terminate();
  const second = await raw(server, aliceId);
  expect(
    await second.request({ type: 'join', searchId: 'a-1', criteria: { room: 'g' }, resume: queued.ticketId }),
  ).toMatchObject({ type: 'queued', ticketId: queued.ticketId });
  const partner = matchmaker(server.url);
  await partner.m.start({ criteria: { room: 'g' } });
  expect(await second.next((f) => f.type === 'matched', 'resumed search matched')).toMatchObject({
    searchId: 'a-1',
    ticketId: queued.ticketId,
    match: { userIds: [aliceId, partner.id] },
  });

  // Bob drops and does not come back in time.
  const bobId = newUserId();
  const bobFirst = await raw(server, bobId);
  const bobQueued = await bobFirst.request({ type: 'join', searchId: 'b-1', criteria: { room: 'h' } });
  bobFirst.socket.terminate();
  const redis = new Redis(SINGLE_REDIS_URL);
  cleanup.push(async () => void (await redis.quit()));
  const ticketId = String(bobQueued.ticketId);
  const ticketKey = keys.ticket(keys.bucketOfTicket(ticketId)!, ticketId);
  await waitFor(async () => (await redis.hget(ticketKey, 'reason')) === 'disconnected', 'bob disconnected');
  const bobLater = await raw(server, bobId);
  expect(
    await bobLater.request({ type: 'join', searchId: 'b-1', criteria: { room: 'h' }, resume: ticketId }),
  ).toMatchObject({ type: 'cancelled', reason: 'disconnected' });
});

it('one open ticket per user: a second connection with other criteria follows the same ticket', async () => {
  const { server } = await node();
  const userId = newUserId();
  const tab1 = await raw(server, userId);
  const tab2 = await raw(server, userId);
  const q1 = await tab1.request({ type: 'join', searchId: 't1', criteria: { language: 'en' } });
  const q2 = await tab2.request({ type: 'join', searchId: 't2', criteria: { language: 'fr' } });
  expect(q2).toMatchObject({ type: 'queued', ticketId: q1.ticketId });
  const partner = matchmaker(server.url);
  await partner.m.start({ criteria: { language: 'en' } });
  const [m1, m2] = [
    await tab1.next((f) => f.type === 'matched', 'tab 1 matched'),
    await tab2.next((f) => f.type === 'matched', 'tab 2 matched'),
  ];
  expect(m1).toMatchObject({ searchId: 't1' });
  expect(m2).toMatchObject({ searchId: 't2' });
  expect((m1.match as { matchId: string }).matchId).toBe((m2.match as { matchId: string }).matchId);
  // After the match the user can search again: a new ticket.
  const q3 = await tab1.request({ type: 'join', searchId: 't3', criteria: {} });
  expect(q3.type).toBe('queued');
  expect(q3.ticketId).not.toBe(q1.ticketId);
});

it('serves /healthz and Prometheus /metrics', async () => {
  const { server } = await node();
  const health = await fetch(`${server.httpUrl}/healthz`);
  expect(health.status).toBe(200);
  expect(await health.json()).toMatchObject({ status: 'ok', redis: 'up', nodeId: server.nodeId });
  const [a, b] = [matchmaker(server.url), matchmaker(server.url)];
  await a.m.start();
  await b.m.start();
  await waitFor(() => a.matched.length > 0, 'a matched');
  const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
  expect(metrics).toMatch(/^matchmaker_matches_total 1$/m);
  expect(metrics).toMatch(/^matchmaker_match_wait_seconds_count 2$/m);
  expect(metrics).toMatch(/^matchmaker_connections 2$/m);
  expect(metrics).toMatch(/^matchmaker_searchers 0$/m);
  expect(metrics).toMatch(/^matchmaker_frames_total\{type="join"\} 2$/m);
  expect(metrics).toContain('matchmaker_errors_total');
  expect((await fetch(`${server.httpUrl}/nope`)).status).toBe(404);
});

it('graceful shutdown drains: clients move to another node and keep their search', async () => {
  const { server: nodeA, keyPrefix } = await node();
  const { server: nodeB } = await node({ keyPrefix });
  let route = nodeA.url;
  const alice = matchmaker(() => route);
  await alice.m.start({ criteria: { room: 'drain' } });
  route = nodeB.url;
  await nodeA.close();
  expect((await fetch(`${nodeB.httpUrl}/healthz`)).status).toBe(200);
  const bob = matchmaker(nodeB.url);
  await bob.m.start({ criteria: { room: 'drain' } });
  await waitFor(() => alice.matched.length > 0, 'alice matched through node B');
  expect(alice.matched[0]!.match.partnerId).toBe(bob.id);
  expect(alice.matched).toHaveLength(1);
});
