import { Cluster } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { MatchedEvent, Matchmaker, SearchCriteria } from '../../src/index';
import type { MatchmakingServer, RedisConnectionOptions } from '../../src/server/index';
import { waitFor } from '../helpers/waitFor';
import {
  clusterSeedUrls,
  deleteKeys,
  freshPrefix,
  newUserId,
  SINGLE_REDIS_URL,
  serviceMatchmaker,
  startNode,
} from './helpers';

const targets: [string, () => Promise<RedisConnectionOptions>][] = [
  ['single Redis', async () => ({ url: SINGLE_REDIS_URL })],
  ['Redis Cluster', async () => ({ cluster: await clusterSeedUrls() })],
];

describe.each(targets)('two nodes sharing one queue (%s)', (_name, target) => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  it('matches users split across the nodes, each exactly once', async () => {
    const redis = await target();
    const keyPrefix = freshPrefix();
    cleanup.push(() => deleteKeys(redis, keyPrefix));
    const nodes: MatchmakingServer[] = [];
    for (let i = 0; i < 2; i += 1) {
      const node = await startNode(redis, { keyPrefix, shards: 64 });
      nodes.push(node);
      cleanup.push(() => node.close());
    }
    const users: { id: string; node: number; matchmaker: Matchmaker; matches: MatchedEvent[] }[] = [];
    const criteria: SearchCriteria[] = [{}, { language: 'en' }, { language: 'fr', level: 2 }];
    for (let i = 0; i < 24; i += 1) {
      const id = newUserId();
      const node = i % 2;
      const matchmaker = serviceMatchmaker(nodes[node]!.url, id);
      cleanup.push(() => matchmaker.close());
      const user = { id, node, matchmaker, matches: [] as MatchedEvent[] };
      matchmaker.on('matched', (event) => user.matches.push(event));
      users.push(user);
    }
    // Half start one after the other (alternating nodes, so pairs straddle them), half all at once.
    for (const [i, user] of users.slice(0, 12).entries())
      await user.matchmaker.start({ criteria: criteria[i % 3] });
    await Promise.all(users.slice(12).map((user, i) => user.matchmaker.start({ criteria: criteria[i % 3] })));

    await waitFor(() => users.every((user) => user.matches.length > 0), 'every user matched');
    const byMatch = new Map<string, string[]>();
    for (const user of users) {
      expect(user.matches).toHaveLength(1);
      const { match } = user.matches[0]!;
      expect(match.userId).toBe(user.id);
      expect(match.strategy).toBe('service');
      byMatch.set(match.matchId, [...(byMatch.get(match.matchId) ?? []), user.id]);
    }
    expect(byMatch.size).toBe(users.length / 2);
    let crossNode = 0;
    for (const members of byMatch.values()) {
      expect(members).toHaveLength(2);
      const [a, b] = members.map((id) => users.find((user) => user.id === id)!);
      expect(a!.matches[0]!.match.partnerId).toBe(b!.id);
      expect(b!.matches[0]!.match.partnerId).toBe(a!.id);
      expect(a!.matches[0]!.match.criteria).toEqual(b!.matches[0]!.match.criteria);
      if (a!.node !== b!.node) crossNode += 1;
    }
    expect(crossNode).toBeGreaterThan(0);
    // The nodes together made exactly one match per pair.
    const made = await Promise.all(
      nodes.map(async (node) => (await node.metrics.matches.get()).values[0]!.value),
    );
    expect(made.reduce((sum, n) => sum + n, 0)).toBe(users.length / 2);

    if ('cluster' in redis) {
      // The three pools' hash tags put their tickets on different masters (the slot layout is the script's).
      const cluster = new Cluster(
        redis.cluster.map((seed) => ({ host: new URL(seed).hostname, port: Number(new URL(seed).port) })),
      );
      cleanup.push(async () => void (await cluster.quit()));
      await new Promise((resolve) => cluster.once('ready', resolve));
      let mastersWithTickets = 0;
      for (const master of cluster.nodes('master')) {
        const [, keys] = await master.scan('0', 'MATCH', `${keyPrefix}*:t:*`, 'COUNT', 100_000);
        if (keys.length > 0) mastersWithTickets += 1;
      }
      expect(mastersWithTickets).toBeGreaterThan(1);
    }
  });
});
