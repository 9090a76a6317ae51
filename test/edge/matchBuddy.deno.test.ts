import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalSupabase } from '../../src/testing/index';
import { startQueueStack } from '../helpers/queueStack';

const root = resolve(dirname(new URL(import.meta.url).pathname), '../..');
const deno = resolve(dirname(createRequire(import.meta.url).resolve('deno/package.json')), 'bin.cjs');
const denoEnv = { ...process.env, DENO_DIR: resolve(root, '.ci/cache/deno'), NO_COLOR: '1' };

let stack: LocalSupabase;
let server: ChildProcess;
let baseUrl: string;

async function startFunction(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [deno, 'run', '--allow-net', '--allow-env', 'test/deno/serveMatchBuddy.ts'],
    {
      cwd: root,
      env: { ...denoEnv, SUPABASE_URL: stack.url, SUPABASE_ANON_KEY: stack.anonKey },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const port = await new Promise<number>((resolvePort, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      const found = /listening on (\d+)/.exec(chunk.toString());
      if (found) resolvePort(Number(found[1]));
    });
    child.once('exit', (code) => reject(new Error(`deno exited with ${code}: ${stderr}`)));
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

async function call(body: unknown, token?: string, init: RequestInit = {}) {
  const response = await fetch(baseUrl, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
    ...init,
  });
  return {
    status: response.status,
    body: (await response.json().catch(() => null)) as Record<string, unknown>,
  };
}

beforeAll(async () => {
  stack = await startQueueStack();
  ({ child: server, url: baseUrl } = await startFunction());
}, 180_000);

afterAll(async () => {
  server?.kill();
  await stack?.stop();
});

describe('match-buddy Edge Function under Deno', () => {
  it('type-checks under Deno as Supabase deploys it (index.ts)', async () => {
    await promisify(execFile)(process.execPath, [deno, 'check', 'supabase/functions/match-buddy/index.ts'], {
      cwd: root,
      env: denoEnv,
    });
  });

  it('joins, matches two users and reports state, acting as the caller', async () => {
    const [alice, bob] = [await stack.createUser(), await stack.createUser()];
    const joined = await call({ action: 'join' }, alice.accessToken);
    expect(joined).toMatchObject({ status: 200, body: { status: 'waiting', result: 'created' } });
    expect(joined.body.topic).toBe(`matchmaker:user:${alice.id}`);
    const matched = await call({ action: 'join' }, bob.accessToken);
    expect(matched).toMatchObject({
      status: 200,
      body: { status: 'matched', match: { partner_id: alice.id } },
    });
    const state = await call({ action: 'state' }, alice.accessToken);
    expect(state.body).toMatchObject({ status: 'matched', match: { partner_id: bob.id } });
  });

  it('leave cancels the caller’s ticket; a retried join with the same ticket_id opens no second ticket', async () => {
    const carol = await stack.createUser();
    const ticketId = crypto.randomUUID();
    const first = await call({ action: 'join', ticket_id: ticketId }, carol.accessToken);
    const retry = await call({ action: 'join', ticket_id: ticketId }, carol.accessToken);
    expect(retry.body).toMatchObject({ status: 'waiting', result: 'existing' });
    expect((retry.body.ticket as { id: string }).id).toBe((first.body.ticket as { id: string }).id);
    const left = await call({ action: 'leave' }, carol.accessToken);
    expect(left).toMatchObject({ status: 200, body: { status: 'cancelled', result: 'cancelled' } });
    const { rows } = await stack.db.query(
      'select count(*)::int as n from matchmaker.tickets where user_id = $1',
      [carol.id],
    );
    expect(rows[0].n).toBe(0);
  });

  it('refuses bad requests with a typed error saying how to fix them', async () => {
    const dave = await stack.createUser();
    expect(await call({ action: 'join' })).toMatchObject({
      status: 401,
      body: { error: { code: 'unauthorized' } },
    });
    expect(await call({ action: 'dance' }, dave.accessToken)).toMatchObject({
      status: 400,
      body: { error: { code: 'invalid_action' } },
    });
    expect(await call({ action: 'join', ticket_id: 'nope' }, dave.accessToken)).toMatchObject({
      status: 400,
      body: { error: { code: 'invalid_ticket_id' } },
    });
    expect(await call({ action: 'join', criteria: [1] }, dave.accessToken)).toMatchObject({
      status: 400,
      body: { error: { code: 'invalid_criteria' } },
    });
    const get = await fetch(baseUrl, { method: 'GET' });
    expect(get.status).toBe(405);
    const notJson = await fetch(baseUrl, {
      method: 'POST',
      body: 'x',
      headers: { Authorization: 'Bearer x' },
    });
    expect(notJson.status).toBe(415);
  });

  it('passes database refusals through: the anon key is not a user', async () => {
    const anon = await call({ action: 'join' }, stack.anonKey);
    expect(anon.status).toBe(401);
    expect(anon.body).toMatchObject({ error: { code: '42501' } });
    const forged = await call({ action: 'join' }, `${(await stack.createUser()).accessToken}x`);
    expect(forged.status).toBe(401);
  });
});
