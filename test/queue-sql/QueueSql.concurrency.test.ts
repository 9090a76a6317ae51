/**
 * 4,000 users over 16 connections with random duplicate joins (double taps and retries, same ticket id) and
 * cancels, in two exact pools with a flexible key. Once quiet: no self matches, nobody in two matches, no
 * stranded pair (the processor finds nothing to pair and no two waiting tickets are compatible), and every
 * user ends matched, cancelled or expired exactly once, with exactly one notification.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cancel, createQueueDb, drain, join, type QueueDb } from './queueDb';

const USERS = 4000;
const CONNECTIONS = 16;

let db: QueueDb;
let admin: pg.Client;

beforeAll(async () => {
  db = await createQueueDb();
  admin = await db.client();
  await admin.query(`update matchmaker.settings set heartbeat_timeout = null, ticket_ttl = '1 hour',
    criteria_keys = '[{"key":"lang"},{"key":"tz","match":"flexible"}]'`);
});
afterAll(async () => {
  await db?.drop();
});

type Op = { kind: 'join' | 'cancel'; user: number };

/** Deterministic pseudo-random numbers (a failing run can be replayed). */
function rng(seed: number): (n: number) => number {
  let state = seed >>> 0;
  return (n) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % n;
  };
}

it('4,000 users, 16 connections, duplicate joins and cancels: every user ends exactly once', {
  timeout: 240_000,
}, async () => {
  const rand = rng(20261128);
  // The last user searches alone in a pool of their own and never cancels: whatever the interleaving, at least
  // one ticket is still waiting when quiet, so the expiry below always has one to end.
  const loner = USERS - 1;
  const users = Array.from({ length: USERS }, (_, i) => ({
    id: randomUUID(),
    ticket: randomUUID(),
    criteria:
      i === loner
        ? { lang: 'eo', tz: 'eu' }
        : { lang: ['en', 'fr', 'de'][rand(3)]!, tz: ['eu', 'us', 'asia', 'any'][rand(4)]! },
    index: i,
  }));
  // The operation stream: every user joins; 20% send the same join again right away (a double tap, likely
  // served by another connection at the same moment) and 5% once more later (a retry); 15% cancel later.
  const ops: Op[] = [];
  const later: Op[] = [];
  for (const user of users) {
    ops.push({ kind: 'join', user: user.index });
    if (rand(5) === 0) ops.push({ kind: 'join', user: user.index });
    if (rand(20) === 0) later.push({ kind: 'join', user: user.index });
    if (rand(100) < 15 && user.index !== loner) later.push({ kind: 'cancel', user: user.index });
  }
  // Later operations land 1-40 operations after the user's join (so some race it on another connection).
  for (const op of later) {
    const at = ops.findIndex((o) => o.user === op.user);
    ops.splice(Math.min(ops.length, at + 1 + rand(40)), 0, op);
  }

  const sessions = await Promise.all(Array.from({ length: CONNECTIONS }, () => db.client()));
  const errors: unknown[] = [];
  let next = 0;
  await Promise.all(
    sessions.map(async (session) => {
      for (;;) {
        const op = ops[next];
        next += 1;
        if (op === undefined) return;
        const user = users[op.user]!;
        try {
          if (op.kind === 'join') await join(session, user.id, user.criteria, user.ticket);
          else await cancel(session, user.id, user.ticket);
        } catch (error) {
          errors.push(error);
        }
      }
    }),
  );
  expect(errors).toEqual([]);

  // Quiet. No stranded pair: nothing for the processor to pair, and no two waiting tickets are compatible.
  const quiet = await drain(admin);
  expect(quiet.reduce((n, r) => n + r.pairs, 0)).toBe(0);
  const compatibleWaiting = await admin.query(`select count(*)::int as n from matchmaker.tickets a
    join matchmaker.tickets b on b.pool = a.pool and b.seq > a.seq
    where matchmaker._compatible(a.criteria, b.criteria)`);
  expect(compatibleWaiting.rows[0].n).toBe(0);
  const waiting = (await admin.query('select count(*)::int as n from matchmaker.tickets')).rows[0]
    .n as number;

  // Let the rest expire and sweep them.
  await admin.query(`update matchmaker.tickets set expires_at = clock_timestamp() - interval '1 second'`);
  const swept = await drain(admin);
  expect(swept.reduce((n, r) => n + r.expired, 0)).toBe(waiting);
  expect((await admin.query('select count(*)::int as n from matchmaker.tickets')).rows[0].n).toBe(0);

  // Exactly one terminal row per user (one ticket each: duplicates carried the same ticket id).
  const history = await admin.query(
    `select user_id, ticket_id, outcome, partner_id, match_id from matchmaker.ticket_history`,
  );
  const byUser = new Map<string, (typeof history.rows)[number]>();
  for (const row of history.rows) {
    expect(byUser.has(row.user_id), `two terminal rows for ${row.user_id}`).toBe(false);
    byUser.set(row.user_id, row);
  }
  expect(byUser.size).toBe(USERS);
  for (const user of users) expect(byUser.get(user.id)!.ticket_id).toBe(user.ticket);
  expect(byUser.get(users[loner]!.id)!.outcome).toBe('expired');
  const outcomes = new Map<string, number>();
  for (const row of history.rows) outcomes.set(row.outcome, (outcomes.get(row.outcome) ?? 0) + 1);
  expect([...outcomes.keys()].sort()).toEqual(['cancelled', 'expired', 'matched']);
  expect(outcomes.get('matched')).toBeGreaterThan(USERS / 2);
  expect(outcomes.get('cancelled')).toBeGreaterThan(0);
  expect(outcomes.get('expired')).toBeGreaterThan(0);

  // Matches: no self match, nobody in two, both sides recorded symmetrically, criteria compatible.
  const matches = await admin.query('select id, user_a, user_b, criteria from matchmaker.matches');
  expect(matches.rows.filter((m) => m.user_a === m.user_b)).toEqual([]);
  const seen = new Set<string>();
  for (const m of matches.rows) {
    for (const [u, partner] of [
      [m.user_a, m.user_b],
      [m.user_b, m.user_a],
    ]) {
      expect(seen.has(u), `user ${u} in two matches`).toBe(false);
      seen.add(u);
      expect(byUser.get(u)).toMatchObject({ outcome: 'matched', partner_id: partner, match_id: m.id });
    }
  }
  expect(seen.size).toBe(outcomes.get('matched'));
  const crossPool = await admin.query(`select count(*)::int as n from matchmaker.ticket_history a
    join matchmaker.ticket_history b on b.match_id = a.match_id and b.user_id <> a.user_id
    where a.pool <> b.pool or not matchmaker._compatible(a.criteria, b.criteria)`);
  expect(crossPool.rows[0].n).toBe(0);

  // Exactly one notification per terminal outcome, on the user's own topic, naming the ticket.
  const notes = await admin.query(`select topic, event, payload from realtime.messages`);
  expect(notes.rows).toHaveLength(USERS);
  const noted = new Set<string>();
  for (const note of notes.rows) {
    const row = byUser.get(note.payload.user_id)!;
    expect(note.topic).toBe(`matchmaker:user:${note.payload.user_id}`);
    expect(noted.has(note.payload.user_id)).toBe(false);
    noted.add(note.payload.user_id);
    expect(note.payload.ticket_id).toBe(row.ticket_id);
    if (row.outcome === 'matched') {
      expect(note.event).toBe('matched');
      expect(note.payload.match).toMatchObject({ id: row.match_id, partner_id: row.partner_id });
    } else {
      expect(note.event).toBe('cancelled');
      expect(note.payload.outcome).toBe(row.outcome);
    }
  }
});
