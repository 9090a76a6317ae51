import { afterAll } from 'vitest';
import { PresenceStrategy } from '../../src/index';
import type { LocalSupabase } from '../../src/testing/index';
import { owningMatchmaker } from '../helpers/presenceClients';
import { startQueueStack } from '../helpers/queueStack';
import { runConformanceSuite } from './suite';

let stack: LocalSupabase | undefined;
afterAll(async () => {
  await stack?.stop();
});

runConformanceSuite('presence', {
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
          (supabase) => new PresenceStrategy({ supabase, settleMs: 50 }),
        );
        return matchmaker;
      },
      async teardown() {},
    };
  },
});
