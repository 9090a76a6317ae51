import { Cluster, Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { MatchmakingServer, RedisConnectionOptions } from '../../src/server/index';
import { KeySpace } from '../../src/server/keys';
import { waitFor } from '../helpers/waitFor';
import {
  clusterSeedUrls,
  deleteKeys,
  type Frame,
  freshPrefix,
  newUserId,
  RawClient,
  SINGLE_REDIS_URL,
  signToken,
  startNode,
} from './helpers';

const targets: [string, () => Promise<RedisConnectionOptions>][] = [
  ['single Redis', async () => ({ url: SINGLE_REDIS_URL })],
  ['Redis Cluster', async () => ({ cluster: await clusterSeedUrls() })],
];

/** Keys under `prefix` matching `pattern` (every master of a cluster). */
async function keysMatching(redis: RedisConnectionOptions, pattern: string): Promise<string[]> {
  if ('url' in redis) {
    const client = new Redis(redis.url);
    try {
      return await client.keys(pattern);
    } finally {
      await client.quit();
    }
  }
  if (!('cluster' in redis)) return [];
  const cluster = new Cluster(
    redis.cluster.map((seed) => ({ host: new URL(seed).hostname, port: Number(new URL(seed).port) })),
  );
  try {
    await new Promise((resolve) => cluster.once('ready', resolve));
    const found: string[] = [];
    for (const master of cluster.nodes('master')) found.push(...(await master.keys(pattern)));
    return found;
  } finally {
    await cluster.quit();
  }
}

/**
 * On a standalone Redis the pairing script releases the user records of the tickets it matches: none is left. On a
 * Redis Cluster records are released lazily (the next claim replaces them): every record left names a ticket that
 * is no longer waiting, so it blocks nothing.
 */
async function expectRecordsReleased(redis: RedisConnectionOptions, keyPrefix: string, userId: string) {
  const pattern = `${keyPrefix}*:user:${userId}`;
  if ('url' in redis) {
    await waitFor(async () => (await keysMatching(redis, pattern)).length === 0, 'user records released', {
      intervalMs: 50,
    });
    return;
  }
  const cluster = new Cluster(
    (redis as { cluster: string[] }).cluster.map((seed) => ({
      host: new URL(seed).hostname,
      port: Number(new URL(seed).port),
    })),
  );
  try {
    const keys = new KeySpace(keyPrefix, 16);
    for (const record of await keysMatching(redis, pattern)) {
      const ticketId = await cluster.hget(record, 'ticket');
      expect(ticketId).toBeTruthy();
      const state = await cluster.hget(keys.ticket(keys.bucketOfTicket(ticketId!)!, ticketId!), 'state');
      expect(state).not.toBe('waiting');
    }
  } finally {
    await cluster.quit();
  }
}

describe.each(targets)('concurrent joins, auto-pipelined (%s)', (_name, target) => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  async function nodes(count: number, options: Parameters<typeof startNode>[1] = {}) {
    const redis = await target();
    const keyPrefix = freshPrefix();
    cleanup.push(() => deleteKeys(redis, keyPrefix));
    const started: MatchmakingServer[] = [];
    for (let i = 0; i < count; i += 1) {
      const node = await startNode(redis, { keyPrefix, shards: 16, ...options });
      started.push(node);
      cleanup.push(() => node.close());
    }
    return { redis, keyPrefix, nodes: started };
  }

  async function client(node: MatchmakingServer, userId: string): Promise<RawClient> {
    const raw = await new RawClient(node.url).open();
    cleanup.push(() => raw.close());
    expect(await raw.hello(await signToken(userId))).toMatchObject({ type: 'welcome' });
    return raw;
  }

  it('many users across two nodes joining at once, three rounds: each search matched exactly once, no duplicate frame between partners on one node', async () => {
    const {
      redis,
      keyPrefix,
      nodes: [a, b],
    } = await nodes(2);
    const users: { id: string; node: number; raw: RawClient }[] = [];
    for (let i = 0; i < 80; i += 1) {
      const id = newUserId();
      users.push({ id, node: i % 2, raw: await client(i % 2 === 0 ? a! : b!, id) });
    }
    const rounds = 3;
    // Round 0: rooms of 8 users of one node (matches delivered from the script's reply); round 1: rooms of two,
    // one user per node (matches published to the other node); round 2: rooms of 8, 4 on each node.
    const roomOf = (i: number, round: number) =>
      round === 0 ? `a${i % 10}` : round === 1 ? `b${Math.floor(i / 2)}` : `c${Math.floor(i / 4) % 10}`;
    for (let round = 0; round < rounds; round += 1) {
      // Every join of the round in the same tick: their Redis commands share pipelines.
      for (const [i, user] of users.entries()) {
        user.raw.send({
          v: 1,
          type: 'join',
          id: `j${round}`,
          searchId: `r${round}`,
          criteria: { room: roomOf(i, round) },
        });
      }
      await waitFor(
        () =>
          users.every((user) =>
            user.raw.frames.some((f) => f.type === 'matched' && f.searchId === `r${round}`),
          ),
        `every user matched in round ${round}`,
      );
    }
    await expectRecordsReleased(redis, keyPrefix, '*');

    const byMatch = new Map<string, { user: (typeof users)[number]; frame: Frame }[]>();
    for (const user of users) {
      for (let round = 0; round < rounds; round += 1) {
        const frames = user.raw.frames.filter((f) => f.type === 'matched' && f.searchId === `r${round}`);
        if (round === 0) {
          // Partners on one node: one matched frame per search (the join's answer or a push, never both).
          expect(frames).toHaveLength(1);
        } else if (frames.length > 1) {
          // A push from the other node may overtake the join's answer: then the answer repeats it.
          expect(frames).toHaveLength(2);
          expect(frames[0]!.id).toBeUndefined();
          expect(frames[1]!.id).toBe(`j${round}`);
          expect(frames[1]!.match).toEqual(frames[0]!.match);
        }
        const match = frames[0]!.match as { matchId: string; userIds: string[] };
        expect(match.userIds).toContain(user.id);
        byMatch.set(match.matchId, [...(byMatch.get(match.matchId) ?? []), { user, frame: frames[0]! }]);
      }
      expect(user.raw.frames.filter((f) => f.type === 'error')).toEqual([]);
    }
    expect(byMatch.size).toBe((users.length / 2) * rounds);
    let crossNode = 0;
    let sameNode = 0;
    for (const members of byMatch.values()) {
      expect(members).toHaveLength(2);
      const [x, y] = members;
      expect(x!.user.id).not.toBe(y!.user.id);
      expect(x!.frame.searchId).toBe(y!.frame.searchId);
      const round = Number(String(x!.frame.searchId).slice(1));
      if (round !== 2) expect(x!.user.node === y!.user.node).toBe(round === 0);
      if (x!.user.node === y!.user.node) sameNode += 1;
      else crossNode += 1;
    }
    expect(crossNode).toBeGreaterThan(0);
    expect(sameNode).toBeGreaterThan(0);
    const made = await Promise.all(
      [a!, b!].map(async (node) => (await node.metrics.matches.get()).values[0]!.value),
    );
    expect(made.reduce((sum, n) => sum + n, 0)).toBe((users.length / 2) * rounds);
    // The nodes' ticket indexes (kept by the scripts) hold nothing once every ticket is matched.
    expect(await keysMatching(redis, `${keyPrefix}*:n:*`)).toEqual([]);
  });

  it('a flood of joins from one user spread over three nodes is limited as on one node (shared limit)', async () => {
    // Practically no refill during the test: the burst is all that gets through, across the nodes together.
    const {
      redis,
      keyPrefix,
      nodes: three,
    } = await nodes(3, {
      joinRateLimit: { perSecond: 0.0001, burst: 3 },
    });
    const userId = newUserId();
    const floods = await Promise.all(three.map((node) => client(node, userId)));
    for (let i = 0; i < 30; i += 1) {
      floods[i % 3]!.send({
        v: 1,
        type: 'join',
        id: `j${i}`,
        searchId: `s${i}`,
        criteria: { room: 'flood' },
      });
    }
    const answers = await waitFor(() => {
      const all = floods.flatMap((raw) => raw.frames.filter((f) => f.id?.startsWith('j')));
      return all.length === 30 ? all : undefined;
    }, 'every join answered');
    const accepted = answers.filter((f) => f.type === 'queued');
    const limited = answers.filter((f) => f.type === 'error' && f.code === 'rate_limited');
    // Per node alone, 3 per node (9) would get through.
    expect(accepted).toHaveLength(3);
    expect(limited).toHaveLength(27);
    expect(new Set(accepted.map((f) => f.ticketId)).size).toBe(1);
    expect(await keysMatching(redis, `${keyPrefix}*:user:${userId}`)).toHaveLength(1);

    // Another user is not limited by it.
    const bystander = await client(three[1]!, newUserId());
    expect(
      await bystander.request({ type: 'join', searchId: 'b', criteria: { room: 'flood' } }),
    ).toMatchObject({ type: 'matched' });
  });
  it('a user record left behind (its ticket matched, the release lost or lazy) does not block the next join, on this node or another; a second tab follows the open ticket', async () => {
    const {
      redis,
      keyPrefix,
      nodes: [a, b],
    } = await nodes(2);
    const keys = new KeySpace(keyPrefix, 16);
    const userId = newUserId();
    const user = await client(a!, userId);
    const partner = await client(a!, newUserId());
    const first = await user.request({ type: 'join', searchId: 's1', criteria: { room: 'left' } });
    expect(first).toMatchObject({ type: 'queued' });
    expect(await partner.request({ type: 'join', searchId: 'p1', criteria: { room: 'left' } })).toMatchObject(
      { type: 'matched' },
    );
    await user.next((f) => f.type === 'matched' && f.searchId === 's1', 'user matched');
    await expectRecordsReleased(redis, keyPrefix, userId);

    // What a node dying between the pairing and an eager release leaves (and what a lazy release leaves on a
    // cluster): the record still names the matched ticket.
    const writer =
      'url' in redis
        ? new Redis(redis.url)
        : new Cluster(
            (redis as { cluster: string[] }).cluster.map((seed) => ({
              host: new URL(seed).hostname,
              port: Number(new URL(seed).port),
            })),
          );
    try {
      await writer.hset(keys.user(userId), {
        ticket: String(first.ticketId),
        crit: '{"room":"left"}',
        c0: String(Date.now()),
      });
      await writer.pexpire(keys.user(userId), 60_000);
    } finally {
      await writer.quit();
    }

    // A connection on the other node, which never saw that ticket end.
    const elsewhere = await client(b!, userId);
    const second = await elsewhere.request({ type: 'join', searchId: 's2', criteria: { room: 'right' } });
    expect(second).toMatchObject({ type: 'queued', searchId: 's2' });
    expect(second.ticketId).not.toBe(first.ticketId);
    // Another tab of the same user, other criteria: it follows the open ticket.
    const tab = await client(a!, userId);
    expect(
      await tab.request({ type: 'join', searchId: 't2', criteria: { room: 'elsewhere' } }),
    ).toMatchObject({ type: 'queued', ticketId: second.ticketId });

    const other = await client(a!, newUserId());
    const otherMatched = await other.request({ type: 'join', searchId: 'o', criteria: { room: 'right' } });
    expect(otherMatched).toMatchObject({ type: 'matched' });
    expect((otherMatched.match as { userIds: string[] }).userIds).toContain(userId);
    for (const [raw, searchId] of [
      [elsewhere, 's2'],
      [tab, 't2'],
    ] as const) {
      const matched = await raw.next((f) => f.type === 'matched' && f.searchId === searchId, searchId);
      expect(matched.match).toEqual(otherMatched.match);
    }
    await expectRecordsReleased(redis, keyPrefix, userId);

    // The first connection saw its ticket end; it searches again at once and gets a fresh ticket.
    const third = await user.request({ type: 'join', searchId: 's3', criteria: { room: 'third' } });
    expect(third).toMatchObject({ type: 'queued', searchId: 's3' });
    expect([first.ticketId, second.ticketId]).not.toContain(third.ticketId);
    for (const raw of [user, elsewhere, tab]) {
      expect(raw.frames.filter((f) => f.type === 'error')).toEqual([]);
    }
  });
});
