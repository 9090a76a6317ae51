import type { RedisConnectionOptions } from '../../src/server/index';
import { runConformanceSuite } from '../conformance/suite';
import {
  clusterSeedUrls,
  deleteKeys,
  freshPrefix,
  newUserId,
  SINGLE_REDIS_URL,
  serviceMatchmaker,
  startNode,
} from './helpers';

function factory(name: string, redis: () => Promise<RedisConnectionOptions>, shards: number): void {
  runConformanceSuite(name, {
    async setup() {
      const target = await redis();
      const keyPrefix = freshPrefix();
      const server = await startNode(target, { keyPrefix, shards });
      return {
        async createMatchmaker(userId) {
          return serviceMatchmaker(server.url, userId);
        },
        async newUserId() {
          return newUserId();
        },
        async teardown() {
          await server.close();
          await deleteKeys(target, keyPrefix);
        },
      };
    },
  });
}

factory('service (single Redis)', async () => ({ url: SINGLE_REDIS_URL }), 16);
factory('service (Redis Cluster)', async () => ({ cluster: await clusterSeedUrls() }), 64);
