import { createServer } from 'node:http';
import { Redis } from 'ioredis';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
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
): Promise<{ server: MatchmakingServer; keys: KeySpace }> {
  const keyPrefix = freshPrefix();
  cleanup.push(() => deleteKeys(redisOptions, keyPrefix));
  const server = await startNode(redisOptions, { keyPrefix, ...options });
  cleanup.push(() => server.close());
  return { server, keys: new KeySpace(keyPrefix, 16) };
}

async function raw(server: MatchmakingServer): Promise<RawClient> {
  const client = await new RawClient(server.url).open();
  cleanup.push(() => client.close());
  return client;
}

/** Two other users who must still be matched, proving a misbehaving client disturbed nobody. */
async function bystandersStillMatch(server: MatchmakingServer): Promise<void> {
  const [a, b] = [serviceMatchmaker(server.url, newUserId()), serviceMatchmaker(server.url, newUserId())];
  cleanup.push(
    () => a.close(),
    () => b.close(),
  );
  await a.start({ criteria: { room: 'bystanders' } });
  await b.start({ criteria: { room: 'bystanders' } });
  await waitFor(
    () => a.getSnapshot().status === 'matched' && b.getSnapshot().status === 'matched',
    'bystanders matched',
  );
}

describe('authentication', () => {
  const cases: [string, () => Promise<string>][] = [
    [
      'forged (wrong secret)',
      () => signToken(newUserId(), { secret: 'some-other-secret-that-is-32-characters-long' }),
    ],
    ['expired', () => signToken(newUserId(), { expiresIn: -60 })],
    ['wrong audience', () => signToken(newUserId(), { audience: 'anon' })],
    ['without sub', () => signToken(newUserId(), { sub: null })],
    ['not a JWT', async () => 'not-a-jwt'],
  ];

  it.each(cases)('refuses a %s token with an error frame and closes', async (_name, token) => {
    const { server } = await node();
    const client = await raw(server);
    const answer = await client.hello(await token());
    expect(answer).toMatchObject({ type: 'error', code: 'unauthorized' });
    expect(String(answer.message)).not.toBe('');
    expect(await client.closed()).toBe(4001);
    await bystandersStillMatch(server);
  });

  it('takes the user from the token only, and refuses anything before hello', async () => {
    const { server } = await node();
    const client = await raw(server);
    expect(await client.request({ type: 'join', searchId: 's1', criteria: {} })).toMatchObject({
      type: 'error',
      code: 'unauthenticated',
    });
    const userId = newUserId();
    expect(await client.hello(await signToken(userId))).toMatchObject({ type: 'welcome', userId });
    // A hello for another user on the same connection is refused; the connection stays the first user's.
    expect(await client.hello(await signToken(newUserId()))).toMatchObject({
      type: 'error',
      code: 'forbidden',
    });
    expect(await client.request({ type: 'heartbeat' })).toMatchObject({ type: 'heartbeat' });
  });

  it('verifies asymmetric tokens against a JWKS URL', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const other = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'key-1', alg: 'RS256', use: 'sig' };
    const jwks = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise((resolve) => jwks.close(() => resolve())));
    const { port } = jwks.address() as { port: number };
    const { server } = await node({
      auth: { jwksUrl: `http://127.0.0.1:${port}/auth/v1/.well-known/jwks.json` },
    });
    const sign = (key: CryptoKey, sub: string) =>
      new SignJWT({ sub, role: 'authenticated', aud: 'authenticated' })
        .setProtectedHeader({ alg: 'RS256', kid: 'key-1' })
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(key);
    const userId = newUserId();
    const good = await raw(server);
    expect(await good.hello(await sign(privateKey, userId))).toMatchObject({ type: 'welcome', userId });
    const bad = await raw(server);
    expect(await bad.hello(await sign(other.privateKey, newUserId()))).toMatchObject({
      type: 'error',
      code: 'unauthorized',
    });
    // An HS256 token is refused when only a JWKS is configured.
    const hs = await raw(server);
    expect(await hs.hello(await signToken(newUserId()))).toMatchObject({
      type: 'error',
      code: 'unauthorized',
    });
  });
});

describe('frame validation', () => {
  let token: string;
  let userId: string;
  beforeAll(async () => {
    userId = newUserId();
    token = await signToken(userId);
  });

  it('answers malformed frames with typed errors and changes nothing', async () => {
    const { server, keys } = await node({ maxFrameBytes: 1_024 });
    const client = await raw(server);
    await client.hello(token);
    const bad: [unknown, string][] = [
      ['{not json', 'invalid_frame'],
      ['[1,2,3]', 'invalid_frame'],
      [{ v: 1, type: 'join', searchId: 's1', criteria: {} }, 'invalid_frame'],
      [{ v: 1, type: 'teleport', id: 'x1' }, 'invalid_frame'],
      [{ v: 2, type: 'join', id: 'x2', searchId: 's1', criteria: {} }, 'unsupported_protocol'],
      [{ v: 1, type: 'join', id: 'x3', searchId: 's1', criteria: {}, userId: newUserId() }, 'invalid_frame'],
      [{ v: 1, type: 'join', id: 'x4', searchId: 's1', criteria: { nested: { a: 1 } } }, 'invalid_frame'],
      [{ v: 1, type: 'join', id: 'x5', searchId: 's1', criteria: {}, resume: '../../etc' }, 'invalid_frame'],
      [{ v: 1, type: 'cancel', id: 'x6', searchId: 42 }, 'invalid_frame'],
      [
        {
          v: 1,
          type: 'join',
          id: 'x7',
          searchId: 's1',
          criteria: { pad: 'x'.repeat(200) },
          more: 'y'.repeat(2_000),
        },
        'frame_too_large',
      ],
    ];
    for (const [frame, code] of bad) {
      const before = client.frames.length;
      client.send(frame);
      await waitFor(() => client.frames.length > before, `answer to a frame that should get ${code}`);
      const answer = client.frames[before]!;
      expect(answer).toMatchObject({ type: 'error', code });
      const id = typeof frame === 'object' ? (frame as { id?: string }).id : undefined;
      if (id && code !== 'frame_too_large') expect(answer.id).toBe(id);
    }
    client.socket.send(Buffer.from([1, 2, 3]), { binary: true });
    await client.next((f) => f.type === 'error' && String(f.message).includes('binary'), 'binary refused');
    // Still usable, and no ticket was created for the user.
    expect(await client.request({ type: 'heartbeat' })).toMatchObject({ type: 'heartbeat' });
    const redis = new Redis(SINGLE_REDIS_URL);
    cleanup.push(async () => void (await redis.quit()));
    expect(await redis.exists(keys.user(userId))).toBe(0);
    await bystandersStillMatch(server);
  });

  it('closes the socket on a frame far beyond the limit', async () => {
    const { server } = await node({ maxFrameBytes: 1_024 });
    const client = await raw(server);
    client.send('x'.repeat(1_024 * 17));
    expect(await client.closed()).toBe(1009);
    await bystandersStillMatch(server);
  });

  it('rate-limits a flood of joins from one user, keeping one ticket and disturbing nobody', async () => {
    // Practically no refill during the test: exactly the burst gets through.
    const { server, keys } = await node({ joinRateLimit: { perSecond: 0.0001, burst: 3 } });
    const floods = [await raw(server), await raw(server)];
    for (const client of floods) await client.hello(token);
    for (let i = 0; i < 40; i += 1) {
      floods[i % 2]!.send({
        v: 1,
        type: 'join',
        id: `j${i}`,
        searchId: `s${i}`,
        criteria: { room: `r${i % 5}` },
      });
    }
    const answers = await waitFor(() => {
      const all = floods.flatMap((client) => client.frames.filter((f) => f.id?.startsWith('j')));
      return all.length === 40 ? all : undefined;
    }, 'every join answered');
    const limited = answers.filter((f) => f.type === 'error' && f.code === 'rate_limited');
    const accepted = answers.filter((f) => f.type === 'queued');
    expect(accepted).toHaveLength(3);
    expect(limited).toHaveLength(37);
    // However many joins got through, the user holds one ticket.
    expect(new Set(accepted.map((f) => f.ticketId)).size).toBe(1);
    const redis = new Redis(SINGLE_REDIS_URL);
    cleanup.push(async () => void (await redis.quit()));
    expect(await redis.hget(keys.user(userId), 'ticket')).toBe(accepted[0]!.ticketId);
    await bystandersStillMatch(server);
  });

  it("refuses to resume or cancel another user's ticket", async () => {
    const { server } = await node();
    const victimId = newUserId();
    const victimClient = await raw(server);
    await victimClient.hello(await signToken(victimId));
    const queued = await victimClient.request({ type: 'join', searchId: 'v1', criteria: { room: 'v' } });
    const attacker = await raw(server);
    await attacker.hello(await signToken(newUserId()));
    expect(
      await attacker.request({
        type: 'join',
        searchId: 'a1',
        criteria: { room: 'v' },
        resume: queued.ticketId,
      }),
    ).toMatchObject({ type: 'error', code: 'forbidden' });
    expect(
      await attacker.request({ type: 'cancel', searchId: 'a1', ticketId: queued.ticketId }),
    ).toMatchObject({
      type: 'error',
      code: 'forbidden',
    });
    // The victim's ticket still waits: a partner pairs with it.
    const partner = serviceMatchmaker(server.url, newUserId());
    cleanup.push(() => partner.close());
    await partner.start({ criteria: { room: 'v' } });
    await victimClient.next((f) => f.type === 'matched', 'victim matched');
  });
});
