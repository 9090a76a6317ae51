import { afterEach, describe, expect, it } from 'vitest';
import { isMatchmakingError, PresenceStrategy, ShardedPresenceStrategy } from '../../src/index';
import { firstJoinRefusal } from '../../src/strategies/presence/presenceProtocol';
import type { LocalSupabase, LocalSupabaseOptions } from '../../src/testing/index';
import { owningMatchmaker } from '../helpers/presenceClients';
import { startQueueStack } from '../helpers/queueStack';

/**
 * A first join the server refuses for good (the project allows only private channels, Realtime is disabled, the
 * token is refused) must end `start()` with the server's reason, at once. supabase-js would rejoin forever, and
 * before this the search waited for `joinTimeoutMs` and then reported "did not join ... Is Realtime reachable?".
 * A `joinTimeoutMs` of 10 minutes makes the old behaviour hang past the test's own 20 s timeout.
 */

let stack: LocalSupabase | undefined;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  await stack?.stop();
  stack = undefined;
});

async function start(options: LocalSupabaseOptions): Promise<LocalSupabase> {
  stack = await startQueueStack(options);
  return stack;
}

describe('presence: a join the server refuses for good', () => {
  it.each(['presence', 'sharded-presence'] as const)(
    '%s: a project that allows only private channels fails start() with forbidden and the reason',
    async (tier) => {
      const live = await start({ realtime: { privateOnly: true, errorDelays: { joinErrorMs: 50 } } });
      const user = await live.createUser();
      const { matchmaker } = await owningMatchmaker(live, user.id, (supabase) =>
        tier === 'presence'
          ? new PresenceStrategy({ supabase, joinTimeoutMs: 600_000 })
          : new ShardedPresenceStrategy({ supabase, shards: 4, joinTimeoutMs: 600_000 }),
      );
      cleanups.push(() => matchmaker.close());
      const refused = await matchmaker.start().catch((error: unknown) => error);
      expect(isMatchmakingError(refused, 'forbidden')).toBe(true);
      expect(String((refused as Error).message)).toMatch(/PrivateOnly/);
      expect(String((refused as Error).message)).toMatch(/public channels/);
      expect(matchmaker.getSnapshot().status).toBe('error');
      // Nothing is left behind in the database: no open search.
      const open = await live.db.query(
        `select count(*)::int as n from matchmaker.presence_searches where user_id = $1 and status = 'searching'`,
        [user.id],
      );
      expect(open.rows[0].n).toBe(0);
    },
    20_000,
  );
});

describe('firstJoinRefusal (the reasons of docs/realtime-protocol.md §2.3)', () => {
  it.each([
    ['PrivateOnly: This project only allows private channels', 'forbidden'],
    ['Unauthorized: You do not have permissions to read from this Channel topic: buddy', 'forbidden'],
    ['InvalidJWTToken: Token has expired 12 seconds ago', 'unauthorized'],
    ['MalformedJWT: The token provided is not a valid JWT', 'unauthorized'],
    ['JwtSignatureError: Failed to validate JWT signature', 'unauthorized'],
    ['RealtimeDisabledForTenant: Realtime disabled for this tenant', 'unavailable'],
    ['TenantNotFound: Tenant with the given ID does not exist', 'unavailable'],
    ['ChannelRateLimitReached: Too many channels', 'rate_limited'],
    ['ClientJoinRateLimitReached: Too many joins per second', 'rate_limited'],
    ['ConnectionRateLimitReached: Too many connected users', 'rate_limited'],
  ])('%s → %s', (reason, code) => {
    expect(firstJoinRefusal(reason)?.code).toBe(code);
  });

  it.each([
    'RealtimeRestarting: Realtime is restarting, please standby',
    'InitializingProjectConnection: Initializing project connection',
    'UnableToConnectToProject: Unable to connect to project database',
    'Unknown Error on Channel',
    '',
  ])('%s → retried', (reason) => {
    expect(firstJoinRefusal(reason)).toBeUndefined();
  });
});
