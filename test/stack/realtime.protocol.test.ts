/**
 * Protocol details of the local Realtime server that need no database: connect-time refusals, join checks,
 * duplicate and stale joins, idle sockets, postgres_changes subscription errors and payload shaping, private
 * channel policies, the HTTP API and the counters. Runs against a {@link FakeBridge}.
 */

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { RowChange } from '../../src/testing/internal/contracts';
import { createJwtIssuer } from '../../src/testing/jwt';
import { type FakeRealtimeStack, startFakeRealtimeStack } from '../helpers/fakeRealtimeStack';
import { RawClient, uniqueName, type WireMessage } from '../helpers/realtimeWire';

let stack: FakeRealtimeStack;
const raws: RawClient[] = [];

async function raw(vsn: '1.0.0' | '2.0.0' = '2.0.0', apikey = stack.anonKey): Promise<RawClient> {
  const client = await RawClient.connect(stack.url, apikey, vsn);
  raws.push(client);
  return client;
}

beforeEach(async () => {
  stack = await startFakeRealtimeStack({ errorDelays: { joinErrorMs: 30, connectErrorMs: 30 } });
});

afterEach(async () => {
  await Promise.all(raws.splice(0).map((client) => client.close()));
  await stack.stop();
});

/** The HTTP answer to a WebSocket upgrade that was refused. */
function refusal(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const ws = new WebSocket(url, { headers });
  return new Promise((resolve, reject) => {
    ws.on('unexpected-response', (_request, response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        ws.terminate();
      });
    });
    ws.on('open', () => {
      ws.close();
      reject(new Error('the upgrade was accepted'));
    });
    ws.on('error', () => {});
  });
}

describe('connecting', () => {
  it('refuses bad connect tokens with the server’s HTTP errors after the delay', async () => {
    const base = `${stack.wsUrl}?vsn=2.0.0`;
    const other = createJwtIssuer('another-secret-that-is-at-least-32-characters');
    const expired = await stack.jwt.sign({ role: 'anon' }, { expiresIn: -10 });
    const noRole = await stack.jwt.sign({ sub: 'x' });
    const forged = await other.anonKey();
    const started = Date.now();
    expect(await refusal(base)).toEqual({ status: 401, body: '{"error":"API key is missing"}' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(await refusal(`${base}&apikey=${expired}`)).toEqual({
      status: 401,
      body: '{"error":"Token has expired"}',
    });
    expect(await refusal(`${base}&apikey=abc`)).toEqual({
      status: 401,
      body: '{"error":"The token provided is not a valid JWT"}',
    });
    expect(await refusal(`${base}&apikey=${forged}`)).toEqual({
      status: 401,
      body: '{"error":"Failed to validate JWT signature"}',
    });
    expect(await refusal(`${base}&apikey=${noRole}`)).toEqual({
      status: 401,
      body: '{"error":"Fields `role` and `exp` are required in JWT"}',
    });
    expect(await refusal(`${stack.wsUrl}?apikey=${stack.anonKey}&vsn=3.0.0`)).toEqual({
      status: 403,
      body: '',
    });
    expect((await refusal(`${stack.url.replace('http', 'ws')}/realtime/v1/elsewhere`)).status).toBe(404);
  });

  it('takes the x-api-key header over the apikey query parameter and ignores unknown parameters', async () => {
    const ws = new WebSocket(`${stack.wsUrl}?apikey=garbage&vsn=2.0.0&log_level=info&extra=1`, {
      headers: { 'x-api-key': stack.anonKey },
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.close();
    expect(stack.counters.snapshot().connectionsOpened).toBe(1);
  });

  it('closes a socket that sends nothing for the idle timeout with code 1000', async () => {
    const idle = await startFakeRealtimeStack({ idleTimeoutMs: 150 });
    try {
      const client = await RawClient.connect(idle.url, idle.anonKey, '2.0.0');
      const code = await new Promise<number>((resolve) =>
        client.ws.once('close', (closeCode) => resolve(closeCode)),
      );
      expect(code).toBe(1000);
    } finally {
      await idle.stop();
    }
  });

  it('closes every socket with 1012 when the server closes', async () => {
    const client = await raw();
    const closed = new Promise<number>((resolve) => client.ws.once('close', (code) => resolve(code)));
    await stack.realtime.close();
    expect(await closed).toBe(1012);
    expect(stack.realtime.connectionCount).toBe(0);
  });
});

describe('joining and routing', () => {
  it('answers the join checks with the server’s reasons', async () => {
    const client = await raw();
    const reason = async (topic: string, ref: string, extra: Record<string, unknown> = {}) =>
      (await client.join(topic, ref, {}, extra)).payload;
    expect(await reason('realtime:', '1')).toEqual({
      status: 'error',
      response: { reason: 'TopicNameRequired: You must provide a topic name' },
    });
    const expired = await stack.jwt.sign({ role: 'authenticated' }, { expiresIn: -7 });
    expect((await reason('realtime:a', '2', { access_token: expired })).response.reason).toMatch(
      /^InvalidJWTToken: Token has expired (7|8) seconds ago$/,
    );
    expect((await reason('realtime:b', '3', { access_token: 'not-a-jwt' })).response.reason).toBe(
      'MalformedJWT: The token provided is not a valid JWT',
    );
    const noRole = await stack.jwt.sign({ sub: 'x' });
    expect((await reason('realtime:c', '4', { access_token: noRole })).response.reason).toBe(
      'InvalidJWTToken: Fields `role` and `exp` are required in JWT',
    );
    expect(stack.counters.snapshot().joinErrors).toBe(4);

    const privateOnly = await startFakeRealtimeStack({ privateOnly: true, errorDelays: { joinErrorMs: 1 } });
    try {
      const strict = await RawClient.connect(privateOnly.url, privateOnly.anonKey, '2.0.0');
      expect((await strict.join('realtime:pub', '1')).payload.response.reason).toBe(
        'PrivateOnly: This project only allows private channels',
      );
      await strict.close();
    } finally {
      await privateOnly.stop();
    }
  });

  it('answers unmatched topics and ignores stale join_refs', async () => {
    const client = await raw();
    const notRealtime = await client.join('room:lobby', '1');
    expect(client.inbox.items.at(-1)?.json).toEqual([
      null,
      '1',
      'room:lobby',
      'phx_reply',
      { status: 'error', response: { reason: 'unmatched topic' } },
    ]);
    expect(notRealtime.payload.status).toBe('error');

    const from = client.inbox.items.length;
    client.send('5', '6', 'realtime:not-joined', 'presence', { type: 'presence', event: 'untrack' });
    const unmatched = await client.next((m) => m.ref === '6', 'unmatched topic', from);
    expect(unmatched.joinRef).toBeNull();
    expect(unmatched.payload).toEqual({ status: 'error', response: { reason: 'unmatched topic' } });

    await client.join('realtime:joined', '10');
    const mark = client.inbox.items.length;
    client.send('9', '11', 'realtime:joined', 'presence', { type: 'presence', event: 'untrack' });
    client.send('9', '12', 'realtime:joined', 'phx_leave', {});
    const barrier = await client.barrier('13');
    expect(client.inbox.items.slice(mark, barrier)).toEqual([]);
  });

  it('replaces a duplicate join: reply to the new join, then phx_close for the old join_ref', async () => {
    const client = await raw();
    await client.join('realtime:dup', '1');
    const from = client.inbox.items.length;
    const second = await client.join('realtime:dup', '2');
    expect(second.payload.status).toBe('ok');
    const close = await client.next((m) => m.event === 'phx_close', 'phx_close', from);
    expect(client.inbox.items.slice(from).map((item) => item.json)).toEqual([
      ['2', '2', 'realtime:dup', 'phx_reply', { status: 'ok', response: { postgres_changes: [] } }],
      ['1', '1', 'realtime:dup', 'phx_close', {}],
    ]);
    expect(close.ref).toBe('1');
  });

  it('counts deliveries by kind, joins and broadcasts', async () => {
    const a = await raw();
    const b = await raw('1.0.0');
    await a.join('realtime:count', '1', { broadcast: { self: true, ack: true } });
    await b.join('realtime:count', '1');
    const before = stack.counters.snapshot();
    a.send('1', '2', 'realtime:count', 'broadcast', { type: 'broadcast', event: 'e', payload: {} });
    await a.next((m) => m.ref === '2', 'ack');
    await b.next((m) => m.event === 'broadcast', 'delivery');
    const after = stack.counters.snapshot();
    expect(after.delivered.broadcast - before.delivered.broadcast).toBe(2);
    expect(after.delivered.reply - before.delivered.reply).toBe(1);
    expect(after.broadcastsReceived - before.broadcastsReceived).toBe(1);
    expect(after.joins).toBe(2);
    expect(after.connectionsOpen).toBe(2);
  });
});

describe('postgres_changes', () => {
  const columns = [
    { name: 'id', type: 'int8' },
    { name: 'owner', type: 'uuid' },
    { name: 'secret', type: 'text' },
    { name: 'title', type: 'text' },
  ];

  function change(overrides: Partial<RowChange> = {}): RowChange {
    return {
      schema: 'public',
      table: 'items',
      type: 'INSERT',
      commitTimestamp: '2026-01-01T00:00:00.000Z',
      columns,
      record: { id: 1, owner: null, secret: 's', title: 'hello' },
      primaryKey: ['id'],
      rlsEnabled: true,
      ...overrides,
    };
  }

  async function subscribe(client: RawClient, topic: string, bindings: Array<Record<string, unknown>>) {
    const from = client.inbox.items.length;
    const reply = await client.join(topic, '1', { postgres_changes: bindings });
    const system = await client.next(
      (m) => m.event === 'system' && m.topic === topic,
      'system message',
      from,
    );
    return { reply, system };
  }

  it('reports bad filters and unpublished tables as system errors and stays joined', async () => {
    stack.bridge.tables.set('public.items', columns);
    const client = await raw();
    const bad = await subscribe(client, 'realtime:bad', [
      { event: '*', schema: 'public', table: 'items', filter: 'x=foo.hey' },
    ]);
    expect(bad.reply.payload.status).toBe('ok');
    expect(bad.system.payload).toEqual({
      extension: 'postgres_changes',
      status: 'error',
      message: 'Error parsing `filter` params: ["foo", "hey"]',
      channel: 'bad',
    });
    const missing = await subscribe(client, 'realtime:missing', [
      { event: '*', schema: 'public', table: 'nope' },
    ]);
    expect(missing.system.payload.message).toBe(
      'Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: nope, filters: [], select: nil]',
    );
    const column = await subscribe(client, 'realtime:column', [
      { event: 'INSERT', schema: 'public', table: 'items', filter: 'nope=eq.1' },
    ]);
    expect(column.system.payload.message).toBe(
      'Unable to subscribe to changes with given parameters. An exception happened so please check your connect parameters: [event: INSERT, schema: public, table: items, filters: [{"nope", "eq", "1", false}], select: nil]. Exception: ERROR P0001 (raise_exception) invalid column for filter nope',
    );
    const from = client.inbox.items.length;
    client.send('1', '5', 'realtime:bad', 'presence', { type: 'presence', event: 'untrack' });
    expect((await client.next((m) => m.ref === '5', 'reply', from)).payload.status).toBe('ok');
  });

  it('sends selectable columns only, honours select, and keeps only the key of RLS DELETEs', async () => {
    stack.bridge.tables.set('public.items', columns);
    stack.bridge.rowVisibleTo = async () => ({ visible: true, columns: ['id', 'owner', 'title'] });
    const client = await raw();
    await subscribe(client, 'realtime:shape', [
      { event: '*', schema: 'public', table: 'items' },
      { event: 'INSERT', schema: 'public', table: 'items', select: ['title'] },
    ]);
    const from = client.inbox.items.length;
    stack.bridge.emitChange(change());
    stack.bridge.emitChange(
      change({
        type: 'DELETE',
        record: undefined,
        oldRecord: { id: 1, owner: null, secret: 's', title: 'x' },
      }),
    );
    await client.next(
      (m) => m.event === 'postgres_changes' && m.payload.data.type === 'DELETE',
      'DELETE',
      from,
    );
    const messages = client.inbox.items.slice(from).map((item) => item.message as WireMessage);
    expect(messages.map((m) => [m.payload.data.type, m.payload.ids.length])).toEqual([
      ['INSERT', 1],
      ['INSERT', 1],
      ['DELETE', 1],
    ]);
    expect(messages[0]?.payload.data.columns.map((c: { name: string }) => c.name)).toEqual([
      'id',
      'owner',
      'title',
    ]);
    expect(messages[0]?.payload.data.record).toEqual({ id: 1, owner: null, title: 'hello' });
    expect(messages[1]?.payload.data.columns.map((c: { name: string }) => c.name)).toEqual(['id', 'title']);
    expect(messages[1]?.payload.data.record).toEqual({ id: 1, title: 'hello' });
    expect(messages[2]?.payload.data).not.toHaveProperty('record');
    expect(messages[2]?.payload.data.old_record).toEqual({ id: 1 });
  });

  it('checks RLS per subscriber for INSERT/UPDATE but not DELETE, and reports tables without a key', async () => {
    stack.bridge.tables.set('public.items', columns);
    stack.bridge.visibility = (claims) => claims.role === 'service_role';
    const anon = await raw();
    const service = await raw('2.0.0', stack.serviceRoleKey);
    await subscribe(anon, 'realtime:rls', [{ event: '*', schema: 'public', table: 'items' }]);
    await subscribe(service, 'realtime:rls', [{ event: '*', schema: 'public', table: 'items' }]);
    const fromAnon = anon.inbox.items.length;
    stack.bridge.emitChange(change({ record: { id: 2, owner: null, secret: 's', title: 'hidden' } }));
    stack.bridge.emitChange(change({ type: 'DELETE', record: undefined, oldRecord: { id: 2 } }));
    stack.bridge.emitChange(
      change({ primaryKey: [], record: { id: 3, owner: null, secret: 's', title: 'nokey' } }),
    );
    await service.next((m) => m.payload?.data?.record?.id === 2, 'the visible row');
    const deleted = await anon.next((m) => m.payload?.data?.type === 'DELETE', 'DELETE for anon', fromAnon);
    expect(deleted.payload.data.old_record).toEqual({ id: 2 });
    const nokey = await anon.next(
      (m) => m.payload?.data?.errors !== null && m.payload?.data?.errors !== undefined,
      'error row',
      fromAnon,
    );
    expect(nokey.payload.data).toEqual({
      schema: 'public',
      table: 'items',
      type: 'INSERT',
      errors: ['Error 400: Bad Request, no primary key'],
    });
    const types = anon.inbox.items.slice(fromAnon).map((item) => item.message?.payload.data.type);
    expect(types).toEqual(['DELETE', 'INSERT']);
  });
});

describe('private channels', () => {
  it('denies track and broadcast without the write policy, silently for broadcast even with ack', async () => {
    const user = createJwtIssuer(stack.jwt.secret);
    const token = await user.userToken({ sub: '00000000-0000-4000-8000-000000000001' });
    stack.bridge.writePolicy = () => false;
    const client = await raw('2.0.0', token);
    const joined = await client.join('realtime:vault', '1', {
      private: true,
      broadcast: { ack: true },
      presence: { key: 'k', enabled: true },
    });
    expect(joined.payload.status).toBe('ok');
    const from = client.inbox.items.length;
    client.send('1', '2', 'realtime:vault', 'broadcast', { type: 'broadcast', event: 'x', payload: {} });
    client.send('1', '3', 'realtime:vault', 'presence', {
      type: 'presence',
      event: 'track',
      payload: { a: 1 },
    });
    const trackReply = await client.next((m) => m.ref === '3', 'track reply', from);
    expect(trackReply.payload).toEqual({ status: 'error', response: {} });
    expect(client.inbox.items.slice(from).map((item) => item.message?.ref)).toEqual(['3']);
    expect(stack.bridge.calls).toContain('write vault broadcast authenticated');
  });

  it('stops the channel when a new token loses the read permission', async () => {
    const issuer = createJwtIssuer(stack.jwt.secret);
    const first = await issuer.userToken({ sub: '00000000-0000-4000-8000-000000000002' });
    const second = await issuer.userToken({ sub: '00000000-0000-4000-8000-000000000003' });
    stack.bridge.readPolicy = (claims) => ({
      read: { broadcast: claims.sub === '00000000-0000-4000-8000-000000000002', presence: false },
    });
    const client = await raw('2.0.0', first);
    expect((await client.join('realtime:members', '1', { private: true })).payload.status).toBe('ok');
    const from = client.inbox.items.length;
    client.send('1', '2', 'realtime:members', 'access_token', { access_token: second });
    const system = await client.next((m) => m.event === 'system', 'system error', from);
    expect(system.payload).toEqual({
      extension: 'system',
      status: 'error',
      message: 'You do not have permissions to read from this Channel topic: members',
      channel: 'members',
    });
    const close = await client.next((m) => m.event === 'phx_close', 'phx_close', from);
    expect(close.ref).toBe('1');
    expect(client.inbox.items.slice(from).some((item) => item.message?.ref === '2')).toBe(false);
  });
});

describe('HTTP broadcast API', () => {
  async function post(path: string, body: string, headers: Record<string, string>) {
    const response = await fetch(`${stack.url}${path}`, { method: 'POST', body, headers });
    const text = await response.text();
    return { status: response.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
  }

  it('authorizes, validates and answers like the server', async () => {
    const json = { 'content-type': 'application/json' };
    expect(await post('/realtime/v1/api/broadcast', '{"messages":[]}', json)).toEqual({
      status: 401,
      body: { message: 'Unauthorized' },
    });
    const auth = { ...json, apikey: stack.anonKey };
    expect(await post('/realtime/v1/api/broadcast', '{}', auth)).toEqual({
      status: 422,
      body: { errors: { messages: ["can't be blank"] } },
    });
    expect(
      await post('/realtime/v1/api/broadcast', '{"messages":[{"topic":"t","payload":"x"}]}', auth),
    ).toEqual({
      status: 422,
      body: { errors: { messages: [{ event: ["can't be blank"], payload: ['is invalid'] }] } },
    });
    expect(
      await post('/realtime/v1/api/broadcast', '{"messages":[{"topic":"t","event":"e","payload":{}}]}', auth),
    ).toEqual({ status: 202, body: undefined });
    stack.bridge.writePolicy = () => false;
    expect(await post('/realtime/v1/api/broadcast/room/events/e?private=true', '{}', auth)).toEqual({
      status: 403,
      body: { message: 'Unauthorized' },
    });
  });

  it('delivers binary single broadcasts as kind 4 with raw encoding, and nothing to 1.0.0 members', async () => {
    const name = uniqueName('bin');
    const v2 = await raw('2.0.0');
    const v1 = await raw('1.0.0');
    await v2.join(`realtime:${name}`, '1');
    await v1.join(`realtime:${name}`, '1');
    const from1 = v1.inbox.items.length;
    const response = await fetch(`${stack.url}/realtime/v1/api/broadcast/${name}/events/blob`, {
      method: 'POST',
      body: new Uint8Array([1, 2, 3]),
      headers: { apikey: stack.anonKey, 'content-type': 'application/octet-stream' },
    });
    expect(response.status).toBe(202);
    const frame = await v2.inbox.waitFor((item) => item.binary, 'binary broadcast');
    expect([...(frame.bytes as Buffer).subarray(0, 5)]).toEqual([4, name.length + 9, 4, 0, 0]);
    expect([...((frame.message as WireMessage).payload.payload as Buffer)]).toEqual([1, 2, 3]);
    const barrier = await v1.barrier('9');
    expect(v1.inbox.items.slice(from1, barrier)).toEqual([]);
  });

  it('delivers database broadcasts as kind 4 with metadata {"id": ...}', async () => {
    const client = await raw();
    await client.join('realtime:db', '1');
    stack.bridge.emitBroadcast({
      id: 'msg-1',
      topic: 'db',
      event: 'changed',
      payload: { n: 1 },
      private: false,
    });
    stack.bridge.emitBroadcast({ id: 'msg-2', topic: 'db', event: 'private', payload: {}, private: true });
    stack.bridge.emitBroadcast({ id: 'msg-3', topic: 'db', event: 'after', payload: {}, private: false });
    await client.next((m) => m.payload?.event === 'after', 'the last broadcast');
    const broadcasts = client.inbox.items.filter((item) => item.binary);
    expect(broadcasts.map((item) => item.message?.payload)).toEqual([
      { type: 'broadcast', event: 'changed', payload: { n: 1 }, meta: { id: 'msg-1' } },
      { type: 'broadcast', event: 'after', payload: {}, meta: { id: 'msg-3' } },
    ]);
  });
});
