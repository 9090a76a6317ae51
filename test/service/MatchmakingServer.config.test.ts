import { afterEach, describe, expect, it } from 'vitest';
import {
  type MatchmakingServer,
  runServeCommand,
  ServerConfigError,
  serverOptionsFromEnv,
} from '../../src/server/index';
import { resolveServerOptions } from '../../src/server/options';
import { waitFor } from '../helpers/waitFor';
import {
  deleteKeys,
  freshPrefix,
  JWT_SECRET,
  newUserId,
  SINGLE_REDIS_URL,
  serviceMatchmaker,
} from './helpers';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

describe('configuration', () => {
  it('reads every setting from the environment', () => {
    expect(
      serverOptionsFromEnv({
        MATCHMAKER_PORT: '9000',
        MATCHMAKER_HOST: '127.0.0.1',
        SUPABASE_JWT_SECRET: 's'.repeat(32),
        MATCHMAKER_JWKS_URL: 'https://p.supabase.co/auth/v1/.well-known/jwks.json',
        MATCHMAKER_JWT_AUDIENCE: 'authenticated,partners',
        MATCHMAKER_REDIS_CLUSTER: '10.0.0.1:7001, 10.0.0.2:7001',
        DATABASE_URL: 'postgres://db/app',
        MATCHMAKER_KEY_PREFIX: 'mm:',
        MATCHMAKER_SHARDS: '32',
        MATCHMAKER_TICKET_TTL_MS: '60000',
        MATCHMAKER_WIDEN_AFTER_MS: '10000',
        MATCHMAKER_WIDEN_DROP: 'level,timezone',
        MATCHMAKER_NODE_ID: 'node-a',
      }),
    ).toEqual({
      port: 9000,
      host: '127.0.0.1',
      auth: {
        jwtSecret: 's'.repeat(32),
        jwksUrl: 'https://p.supabase.co/auth/v1/.well-known/jwks.json',
        audience: ['authenticated', 'partners'],
      },
      redis: { cluster: ['10.0.0.1:7001', '10.0.0.2:7001'] },
      persistence: { databaseUrl: 'postgres://db/app' },
      keyPrefix: 'mm:',
      shards: 32,
      ticketTtlMs: 60_000,
      widening: { afterMs: 10_000, drop: ['level', 'timezone'] },
      nodeId: 'node-a',
    });
  });

  it('explicit options win over the environment, and mistakes are explained', () => {
    const env = { SUPABASE_JWT_SECRET: 's'.repeat(32), MATCHMAKER_PORT: '9000' };
    expect(resolveServerOptions({ env, port: 0 })).toMatchObject({
      port: 0,
      auth: { jwtSecret: 's'.repeat(32) },
    });
    expect(() => resolveServerOptions({ env: {} })).toThrowError(/SUPABASE_JWT_SECRET/);
    expect(() => resolveServerOptions({ env, keyPrefix: 'mm:{x}:' })).toThrowError(ServerConfigError);
    expect(() => resolveServerOptions({ env: { ...env, MATCHMAKER_SHARDS: 'many' } })).toThrowError(
      /MATCHMAKER_SHARDS must be a non-negative integer/,
    );
    expect(() => resolveServerOptions({ env, endedRetentionMs: 1_000 })).toThrowError(/endedRetentionMs/);
  });
});

describe('serve command', () => {
  it('prints its usage and refuses unknown flags', async () => {
    const out: string[] = [];
    const err: string[] = [];
    expect(await runServeCommand(['--help'], { out: (text) => out.push(text) })).toBe(0);
    expect(out.join('')).toContain('Usage: supabase-matchmaker serve');
    expect(await runServeCommand(['--bogus'], { err: (text) => err.push(text) })).toBe(2);
    expect(err.join('')).toContain("Unknown option '--bogus'");
    expect(await runServeCommand([], { env: {}, err: () => {}, logger: silent })).toBe(2);
  });

  it('serves until a signal, then drains and exits 0', async () => {
    const keyPrefix = freshPrefix();
    cleanup.push(() => deleteKeys({ url: SINGLE_REDIS_URL }, keyPrefix));
    let server: MatchmakingServer | undefined;
    const exited = runServeCommand(
      [
        '--port',
        '0',
        '--host',
        '127.0.0.1',
        '--redis-url',
        SINGLE_REDIS_URL,
        '--key-prefix',
        keyPrefix,
        '--no-persistence',
      ],
      {
        env: { SUPABASE_JWT_SECRET: JWT_SECRET },
        logger: silent,
        signals: ['SIGUSR2'],
        onListening: (s) => {
          server = s;
        },
      },
    );
    await waitFor(() => server, 'listening');
    const [a, b] = [serviceMatchmaker(server!.url, newUserId()), serviceMatchmaker(server!.url, newUserId())];
    cleanup.push(
      () => a.close(),
      () => b.close(),
    );
    await a.start();
    await b.start();
    await waitFor(() => a.getSnapshot().status === 'matched', 'matched through the served node');
    process.emit('SIGUSR2', 'SIGUSR2');
    expect(await exited).toBe(0);
  });
});

const noop = () => {};
const silent = { debug: noop, info: noop, warn: noop, error: noop };
