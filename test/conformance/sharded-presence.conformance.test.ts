import { afterAll } from 'vitest';
import { ShardedPresenceStrategy } from '../../src/index';
import type { LocalSupabase } from '../../src/testing/index';
import { owningMatchmaker } from '../helpers/presenceClients';
import { startQueueStack } from '../helpers/queueStack';
import { runConformanceSuite } from './suite';

let stack: LocalSupabase | undefined;
afterAll(async () => {
  await stack?.stop();
});

// Few shards and a short rotation, so users who start in different shards meet within the suite's waits.
runConformanceSuite('sharded-presence', {
  eventTimeoutMs: 20_000,
  async setup() {
    stack ??= await startQueueStack();
    const live = stack;
    return {
      async newUserId() {
        return (await live.createUser()).id;
      },
      async createMatchmaker(userId) {
        const { matchmaker } = await owningMatchmaker(
          live,
          userId,
          (supabase) =>
            new ShardedPresenceStrategy({ supabase, shards: 4, rotateAfterMs: 300, settleMs: 50 }),
        );
        return matchmaker;
      },
      async teardown() {},
    };
  },
});
