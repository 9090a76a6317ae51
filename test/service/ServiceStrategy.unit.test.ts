import { build } from 'esbuild';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type ErrorEvent, isMatchmakingError, Matchmaker, type Timers } from '../../src/index';
import {
  ServiceStrategy,
  type ServiceStrategyOptions,
  type WebSocketLike,
} from '../../src/strategies/service/ServiceStrategy';
import { waitFor } from '../helpers/waitFor';

/** A scripted WebSocket: the test plays the server. */
class FakeSocket implements WebSocketLike {
  static instances: FakeSocket[] = [];
  readyState = 0;
  readonly url: string;
  readonly sent: Record<string, unknown>[] = [];
  onopen: WebSocketLike['onopen'] = null;
  onmessage: WebSocketLike['onmessage'] = null;
  onclose: WebSocketLike['onclose'] = null;
  onerror: WebSocketLike['onerror'] = null;

  constructor(url: string) {
    this.url = url;
    FakeSocket.instances.push(this);
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(code = 1000, reason = ''): void {
    this.drop(code, reason);
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  reply(frame: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify({ v: 1, ...frame }) });
  }
  drop(code: number, reason = ''): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** The last frame of `type` the client sent. */
  last(type: string): Record<string, unknown> {
    const frame = [...this.sent].reverse().find((f) => f.type === type);
    if (!frame) throw new Error(`no ${type} frame sent`);
    return frame;
  }
}

/** Timers that only run when the test says so. */
function manualTimers() {
  const pending = new Map<number, { run: () => void; ms: number; repeat: boolean }>();
  let next = 1;
  const timers: Timers = {
    setTimeout: (run, ms) => {
      pending.set(next, { run, ms, repeat: false });
      return next++;
    },
    clearTimeout: (handle) => void pending.delete(handle as number),
    setInterval: (run, ms) => {
      pending.set(next, { run, ms, repeat: true });
      return next++;
    },
    clearInterval: (handle) => void pending.delete(handle as number),
  };
  return {
    timers,
    delays: () => [...pending.values()].filter((t) => !t.repeat).map((t) => t.ms),
    /** Run every pending one-shot timer of exactly `ms` (and interval timers when `intervals`). */
    fire(filter: (timer: { ms: number; repeat: boolean }) => boolean) {
      for (const [handle, timer] of [...pending]) {
        if (!filter(timer)) continue;
        if (!timer.repeat) pending.delete(handle);
        timer.run();
      }
    },
  };
}

const URL = 'ws://matchmaker.test/v1/matchmaking';
const TICKET = '0.0123456789abcdef0123456789abcdef';

/** Play the server's part of the handshake on `socket`. */
function welcome(socket: FakeSocket, userId = 'alice'): void {
  socket.open();
  socket.reply({
    type: 'welcome',
    id: socket.last('hello').id,
    userId,
    nodeId: 'n1',
    heartbeatIntervalMs: 5_000,
  });
}
function strategy(overrides: Partial<ServiceStrategyOptions> = {}) {
  return new ServiceStrategy({
    url: URL,
    getAccessToken: async () => 'token-1',
    WebSocket: FakeSocket,
    ...overrides,
  });
}

afterEach(() => {
  FakeSocket.instances = [];
  vi.unstubAllGlobals();
});

describe('ServiceStrategy configuration', () => {
  it('says what to change', () => {
    expect(() => strategy({ url: 'http://x' })).toThrowError(/ws:\/\/ or wss:\/\//);
    expect(() => strategy({ getAccessToken: undefined as never })).toThrowError(/getAccessToken/);
    expect(() => strategy({ requestTimeoutMs: 0 })).toThrowError(/requestTimeoutMs/);
    vi.stubGlobal('WebSocket', undefined);
    expect(() => strategy({ WebSocket: undefined })).toThrowError(/no global WebSocket/);
  });

  it('refuses to search without a session', async () => {
    const matchmaker = new Matchmaker(strategy({ getAccessToken: () => null }));
    const error = await matchmaker.start().catch((e: unknown) => e);
    expect(isMatchmakingError(error, 'unauthorized')).toBe(true);
    expect(FakeSocket.instances).toHaveLength(0);
    await matchmaker.close();
  });

  it('bundles for the browser with no Node built-in and no server dependency', async () => {
    const result = await build({
      entryPoints: ['src/strategies/service/ServiceStrategy.ts'],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      logLevel: 'silent',
    });
    const code = result.outputFiles[0]!.text;
    expect(code).toMatch(/ServiceStrategy = class/);
    expect(code).not.toMatch(/ioredis|prom-client|from "node:|require\("node:/);
  });
});

describe('ServiceStrategy reconnects', () => {
  it('with the injected backoff and timers, then resumes the ticket', async () => {
    const clock = { now: () => 1_000 };
    const timers = manualTimers();
    const attempts: number[] = [];
    const tokens = ['token-1', 'token-2'];
    const matchmaker = new Matchmaker(
      strategy({
        getAccessToken: async () => tokens.shift(),
        environment: { timers: timers.timers, clock },
        reconnectAfterMs: (attempt) => {
          attempts.push(attempt);
          return 1_234;
        },
      }),
      { environment: { clock } },
    );
    const errors: ErrorEvent[] = [];
    matchmaker.on('error', (event) => errors.push(event));

    const started = matchmaker.start({ criteria: { language: 'en' } });
    const first = await waitFor(() => FakeSocket.instances[0], 'first socket');
    first.open();
    expect(first.last('hello')).toMatchObject({ token: 'token-1' });
    first.reply({
      type: 'welcome',
      id: first.last('hello').id,
      userId: 'alice',
      nodeId: 'n1',
      heartbeatIntervalMs: 5_000,
    });
    const join = first.last('join');
    expect(join).toMatchObject({ criteria: { language: 'en' } });
    expect(join.resume).toBeUndefined();
    first.reply({
      type: 'queued',
      id: join.id,
      searchId: join.searchId,
      ticketId: '3.0123456789abcdef0123456789abcdef',
    });
    await started;
    expect(matchmaker.getSnapshot().status).toBe('searching');

    first.drop(1006);
    expect(errors).toMatchObject([{ fatal: false, error: { code: 'unavailable' } }]);
    expect(attempts).toEqual([0]);
    expect(timers.delays()).toContain(1_234);
    expect(FakeSocket.instances).toHaveLength(1);
    timers.fire((t) => !t.repeat && t.ms === 1_234);

    const second = await waitFor(() => FakeSocket.instances[1], 'second socket');
    second.open();
    expect(second.last('hello')).toMatchObject({ token: 'token-2' });
    second.reply({
      type: 'welcome',
      id: second.last('hello').id,
      userId: 'alice',
      nodeId: 'n2',
      heartbeatIntervalMs: 5_000,
    });
    const resume = second.last('join');
    expect(resume).toMatchObject({ searchId: join.searchId, resume: '3.0123456789abcdef0123456789abcdef' });
    second.reply({
      type: 'matched',
      id: resume.id,
      searchId: join.searchId,
      ticketId: resume.resume,
      match: {
        matchId: 'm1',
        userIds: ['bob', 'alice'],
        createdAt: new Date(0).toISOString(),
        criteria: { language: 'en' },
      },
    });
    await waitFor(() => matchmaker.getSnapshot().status === 'matched', 'matched after resume');
    expect(matchmaker.getSnapshot()).toMatchObject({
      status: 'matched',
      match: { matchId: 'm1', userId: 'alice', partnerId: 'bob', strategy: 'service' },
    });
    await matchmaker.close();
  });

  it('drops a silent connection on the heartbeat, and a cancel does not wait for the backoff', async () => {
    let now = 0;
    const clock = { now: () => now };
    const timers = manualTimers();
    const matchmaker = new Matchmaker(
      strategy({ environment: { timers: timers.timers, clock }, reconnectAfterMs: () => 60_000 }),
    );
    const started = matchmaker.start();
    const socket = await waitFor(() => FakeSocket.instances[0], 'socket');
    welcome(socket);
    const join = socket.last('join');
    socket.reply({ type: 'queued', id: join.id, searchId: join.searchId, ticketId: TICKET });
    await started;
    now = 6_000;
    timers.fire((t) => t.repeat);
    expect(socket.last('heartbeat')).toBeDefined();
    now = 20_000;
    timers.fire((t) => t.repeat);
    expect(socket.readyState).toBe(3);
    expect(timers.delays()).toContain(60_000);

    const cancelled = matchmaker.cancel();
    const again = await waitFor(() => FakeSocket.instances[1], 'reconnected at once for the cancel');
    welcome(again);
    const cancel = await waitFor(() => again.sent.find((f) => f.type === 'cancel'), 'cancel re-sent');
    expect(cancel).toMatchObject({ searchId: join.searchId, ticketId: TICKET });
    again.reply({
      type: 'cancelled',
      id: cancel.id,
      searchId: join.searchId,
      status: 'cancelled',
      reason: 'user',
    });
    expect(await cancelled).toBe(true);
    await matchmaker.close();
  });

  it('a cancel is answered by its reply, never by the push for the same search', async () => {
    const matchmaker = new Matchmaker(strategy());
    const started = matchmaker.start();
    const socket = await waitFor(() => FakeSocket.instances[0], 'socket');
    welcome(socket);
    const join = socket.last('join');
    socket.reply({ type: 'queued', id: join.id, searchId: join.searchId, ticketId: TICKET });
    await started;
    const cancelled = matchmaker.cancel();
    const cancel = await waitFor(() => socket.sent.find((f) => f.type === 'cancel'), 'cancel sent');
    expect(cancel).toMatchObject({ ticketId: TICKET });
    socket.reply({ type: 'cancelled', searchId: join.searchId, status: 'cancelled', reason: 'user' });
    socket.reply({
      type: 'cancelled',
      id: cancel.id,
      searchId: join.searchId,
      status: 'cancelled',
      reason: 'user',
    });
    expect(await cancelled).toBe(true);
    expect(matchmaker.getSnapshot()).toMatchObject({ status: 'cancelled', reason: 'user' });
    await matchmaker.close();
  });
});
