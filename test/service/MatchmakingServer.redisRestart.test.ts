import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, expect, it } from 'vitest';
import { type ErrorEvent, isMatchmakingError, type MatchedEvent } from '../../src/index';
import { waitFor } from '../helpers/waitFor';
import { newUserId, serviceMatchmaker, startNode } from './helpers';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A dedicated, throw-away redis-server (no persistence) in the foreground of a child process. */
async function startRedis(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  try {
    await waitFor(
      () =>
        promisify(execFile)('redis-cli', ['-p', String(port), 'ping']).then(
          ({ stdout }) => stdout.trim() === 'PONG',
          () => false,
        ),
      'redis-server answering',
    );
  } catch (error) {
    await stop(child);
    throw error;
  }
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await once(child, 'exit');
}

it('a Redis restart: clients get clear errors, then their searches resume and match', async () => {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'mm-redis-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  let redis = await startRedis(port, dir);
  cleanup.push(() => stop(redis));
  const node = await startNode({ url: `redis://127.0.0.1:${port}` });
  cleanup.push(() => node.close());

  const alice = serviceMatchmaker(node.url, newUserId());
  cleanup.push(() => alice.close());
  const errors: ErrorEvent[] = [];
  const matched: MatchedEvent[] = [];
  alice.on('error', (event) => errors.push(event));
  alice.on('matched', (event) => matched.push(event));
  await alice.start();

  await stop(redis);
  // The searching client is told, without losing its search.
  await waitFor(() => errors.length > 0, 'alice told that the queue is down');
  expect(errors[0]).toMatchObject({ fatal: false, error: { code: 'unavailable' } });
  expect(errors[0]!.error.message).toMatch(/Redis|unreachable/);
  expect(alice.getSnapshot().status).toBe('searching');
  const health = await fetch(`${node.httpUrl}/healthz`);
  expect(health.status).toBe(503);
  expect(await health.json()).toMatchObject({ redis: 'down' });

  // A new search during the outage fails fast with a clear error.
  const bobId = newUserId();
  const bob = serviceMatchmaker(node.url, bobId);
  cleanup.push(() => bob.close());
  const refused = await bob.start().catch((error: unknown) => error);
  expect(isMatchmakingError(refused, 'unavailable')).toBe(true);
  expect(bob.getSnapshot()).toMatchObject({ status: 'error', error: { code: 'unavailable' } });

  // Redis comes back empty (no persistence): the node re-creates alice's ticket, and bob's retry pairs with it.
  redis = await startRedis(port, dir);
  await waitFor(async () => (await fetch(`${node.httpUrl}/healthz`)).status === 200, 'node healthy again');
  await bob.start();
  await waitFor(() => matched.length > 0, 'alice matched after the restart');
  expect(matched[0]!.match.partnerId).toBe(bobId);
  expect(bob.getSnapshot()).toMatchObject({
    status: 'matched',
    match: { matchId: matched[0]!.match.matchId },
  });
  expect(alice.getSnapshot().status).toBe('matched');
});
