import { afterAll } from 'vitest';
import { Matchmaker, QueueStrategy } from '../../src/index';
import type { QueueNotifyMode } from '../../src/strategies/queue/QueueStrategy';
import type { LocalSupabase } from '../../src/testing/index';
import { OwningStrategy } from '../helpers/presenceClients';
import { startQueueStack } from '../helpers/queueStack';
import { createSupabaseClient } from '../helpers/supabaseClient';
import { runConformanceSuite } from './suite';

let stack: LocalSupabase | undefined;
afterAll(async () => {
  await stack?.stop();
});

for (const notify of ['broadcast', 'postgres_changes', 'poll'] as QueueNotifyMode[]) {
  runConformanceSuite(`queue (notify: ${notify})`, {
    eventTimeoutMs: 20_000,
    async setup() {
      stack ??= await startQueueStack();
      const live = stack;
      return {
        async newUserId() {
          return (await live.createUser()).id;
        },
        async createMatchmaker(userId) {
          const token = await live.signToken({ sub: userId, role: 'authenticated', aud: 'authenticated' });
          const supabase = createSupabaseClient(live, { accessToken: token });
          const strategy = new QueueStrategy({
            supabase,
            notify,
            poll: { minIntervalMs: 100, maxIntervalMs: 500 },
          });
          return new Matchmaker(
            new OwningStrategy(strategy, async () => {
              await supabase.removeAllChannels();
              await supabase.realtime.disconnect();
            }),
          );
        },
        async teardown() {},
      };
    },
  });
}
