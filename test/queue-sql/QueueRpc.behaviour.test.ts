/**
 * The queue tier's RPCs on real Postgres 15: results, idempotency, FIFO, criteria and widening, cancel,
 * heartbeat, expiry and notifications.
 */
import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  asRole,
  cancel,
  configure,
  createQueueDb,
  drain,
  heartbeat,
  join,
  newUser,
  notificationsOf,
  type QueueDb,
  state,
} from './queueDb';

let db: QueueDb;
let s: pg.Client;

beforeAll(async () => {
  db = await createQueueDb();
  s = await db.client();
});
afterAll(async () => {
  await db?.drop();
});
beforeEach(async () => {
  await s.query(`truncate matchmaker.tickets, matchmaker.ticket_history, matchmaker.matches, matchmaker.pool_heads, realtime.messages;
    update matchmaker.settings set criteria_keys = '[]', heartbeat_timeout = '30 seconds', ticket_ttl = '5 minutes';
    update matchmaker.maintenance_state set stale_swept_at = '-infinity';
    create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean language sql stable set search_path = '' as 'select true';`);
});

const ago = (seconds: number) => `clock_timestamp() - interval '${seconds} seconds'`;

describe('join', () => {
  it('waits, returns the same ticket on a double tap, and matches the next user with the oldest waiting one', async () => {
    const [a, b] = [newUser(), newUser()];
    const first = await join(s, a);
    expect(first).toMatchObject({
      status: 'waiting',
      result: 'created',
      match: null,
      topic: `matchmaker:user:${a}`,
    });
    expect(first.heartbeat_interval_ms).toBe(10_000);
    const again = await join(s, a);
    expect(again).toMatchObject({ status: 'waiting', result: 'existing' });
    expect(again.ticket!.id).toBe(first.ticket!.id);

    const second = await join(s, b);
    expect(second).toMatchObject({ status: 'matched', result: 'created' });
    expect(second.match!.partner_id).toBe(a);
    const aState = await state(s, a);
    expect(aState).toMatchObject({ status: 'matched', result: 'state' });
    expect(aState.match).toEqual({ ...second.match, partner_id: b });

    const tickets = await s.query('select count(*)::int as n from matchmaker.tickets');
    expect(tickets.rows[0].n).toBe(0);
    const matches = await s.query('select user_a, user_b from matchmaker.matches');
    expect(matches.rows).toEqual([{ user_a: a, user_b: b }]);
    const history = await s.query(
      'select user_id, outcome, partner_id from matchmaker.ticket_history order by user_id',
    );
    expect(history.rows).toEqual(
      [
        { user_id: a, outcome: 'matched', partner_id: b },
        { user_id: b, outcome: 'matched', partner_id: a },
      ].sort((x, y) => x.user_id.localeCompare(y.user_id)),
    );
    const aNotes = await notificationsOf(s, a);
    expect(aNotes).toHaveLength(1);
    expect(aNotes[0]).toMatchObject({
      event: 'matched',
      payload: {
        type: 'matched',
        user_id: a,
        ticket_id: first.ticket!.id,
        match: { partner_id: b, id: second.match!.id },
      },
    });
    expect(await notificationsOf(s, b)).toHaveLength(1);
  });

  it('treats ticket_id as an idempotency key, before and after the match', async () => {
    const [a, b, c] = [newUser(), newUser(), newUser()];
    const id = crypto.randomUUID();
    const first = await join(s, a, {}, id);
    expect(first.ticket!.id).toBe(id);
    expect((await join(s, a, {}, id)).result).toBe('existing');
    await join(s, b);
    const retried = await join(s, a, {}, id);
    expect(retried).toMatchObject({ status: 'matched', result: 'existing' });
    expect(retried.match!.partner_id).toBe(b);
    // No second search was opened by the retry.
    const open = await s.query('select count(*)::int as n from matchmaker.tickets where user_id = $1', [a]);
    expect(open.rows[0].n).toBe(0);
    // Someone else's ticket id is refused.
    await expect(join(s, c, {}, id)).rejects.toMatchObject({ code: 'MM409' });
  });

  it('supersedes an open ticket when the criteria change, telling the user', async () => {
    await configure(s, { criteria_keys: [{ key: 'lang' }] });
    const a = newUser();
    const en = await join(s, a, { lang: 'en' });
    const fr = await join(s, a, { lang: 'fr' });
    expect(fr).toMatchObject({ status: 'waiting', result: 'created' });
    expect(fr.ticket!.id).not.toBe(en.ticket!.id);
    expect(await state(s, a, en.ticket!.id)).toMatchObject({
      status: 'superseded',
      reason: 'criteria_changed',
    });
    const notes = await notificationsOf(s, a);
    expect(notes).toEqual([
      {
        event: 'cancelled',
        payload: expect.objectContaining({
          ticket_id: en.ticket!.id,
          outcome: 'superseded',
          reason: 'criteria_changed',
        }),
      },
    ]);
  });

  it('validates criteria against the declared keys', async () => {
    const a = newUser();
    await expect(join(s, a, { lang: 'en' })).rejects.toMatchObject({
      code: '22023',
      message: 'matchmaker: invalid criteria: unknown key "lang"',
    });
    await configure(s, { criteria_keys: [{ key: 'lang' }, { key: 'tz', match: 'flexible' }] });
    await expect(join(s, a, { lang: { nested: true } })).rejects.toMatchObject({ code: '22023' });
    await expect(join(s, a, { lang: 'any' })).rejects.toMatchObject({ code: '22023' });
    await expect(join(s, a, { lang: 'x'.repeat(65) })).rejects.toMatchObject({ code: '22023' });
    const ok = await join(s, a, { lang: 'en', tz: 'any' });
    expect(ok.ticket).toMatchObject({ pool: '{"lang": "en"}', criteria: { lang: 'en', tz: '*' } });
    await expect(
      s.query(`update matchmaker.settings set criteria_keys = '[{"key":"Bad Key"}]'`),
    ).rejects.toMatchObject({ code: '22023' });
    await expect(
      s.query(`update matchmaker.settings set criteria_keys = '[{"key":"tz","widen_after":"10 seconds"}]'`),
    ).rejects.toMatchObject({ code: '22023' });
  });
});

describe('criteria, FIFO and widening', () => {
  it('matches only within an exact pool, oldest first', async () => {
    await configure(s, { criteria_keys: [{ key: 'lang' }] });
    const [a, b, c, d] = [newUser(), newUser(), newUser(), newUser()];
    await join(s, a, { lang: 'en' });
    await join(s, b, { lang: 'fr' });
    await join(s, c, { lang: 'en' });
    const dState = await join(s, d, { lang: 'fr' });
    expect(dState.match!.partner_id).toBe(b);
    expect((await state(s, c)).match!.partner_id).toBe(a);
  });

  it('claims the oldest compatible ticket when flexible keys differ', async () => {
    await configure(s, { criteria_keys: [{ key: 'tz', match: 'flexible' }] });
    const [a, b, c, d] = [newUser(), newUser(), newUser(), newUser()];
    await join(s, a, { tz: 'eu' });
    await join(s, b, { tz: 'us' });
    const any = await join(s, c, { tz: 'any' });
    expect(any.match!.partner_id).toBe(a);
    expect(any.match!.criteria).toEqual({ tz: 'eu' });
    const us = await join(s, d, { tz: 'us' });
    expect(us.match!.partner_id).toBe(b);
  });

  it('widens a flexible key after widen_after: a joiner may then claim a narrower waiting ticket', async () => {
    await configure(s, { criteria_keys: [{ key: 'tz', match: 'flexible', widen_after: '10 seconds' }] });
    const [a, b, c] = [newUser(), newUser(), newUser()];
    const aJoin = await join(s, a, { tz: 'eu' });
    expect(aJoin.ticket!.widens_at).not.toBeNull();
    await join(s, b, { tz: 'asia' });
    // b has not waited 10 s yet, a has: backdate a.
    await s.query(`update matchmaker.tickets set enqueued_at = ${ago(11)} where user_id = $1`, [a]);
    const cJoin = await join(s, c, { tz: 'us' });
    expect(cJoin.match!.partner_id).toBe(a);
    expect(cJoin.match!.criteria).toEqual({ tz: 'us' });
    expect((await state(s, b)).status).toBe('waiting');
  });

  it('pairs two tickets that became compatible by widening at the next heartbeat', async () => {
    await configure(s, { criteria_keys: [{ key: 'tz', match: 'flexible', widen_after: '10 seconds' }] });
    const [a, b] = [newUser(), newUser()];
    await join(s, a, { tz: 'eu' });
    await join(s, b, { tz: 'us' });
    expect((await heartbeat(s, a)).status).toBe('waiting');
    await s.query(
      `update matchmaker.tickets set enqueued_at = enqueued_at - interval '11 seconds', widens_at = widens_at - interval '11 seconds'`,
    );
    const beat = await heartbeat(s, b);
    expect(beat).toMatchObject({ status: 'matched', result: 'alive' });
    expect(beat.match!.partner_id).toBe(a);
  });

  it('the processor pairs tickets that became compatible by widening, oldest first', async () => {
    await configure(s, { criteria_keys: [{ key: 'tz', match: 'flexible', widen_after: '10 seconds' }] });
    const [a, b, c] = [newUser(), newUser(), newUser()];
    await join(s, a, { tz: 'eu' });
    await join(s, b, { tz: 'us' });
    await join(s, c, { tz: 'asia' });
    expect((await drain(s)).reduce((n, r) => n + r.pairs, 0)).toBe(0);
    await s.query(`update matchmaker.tickets set enqueued_at = enqueued_at - interval '11 seconds'`);
    expect((await drain(s)).reduce((n, r) => n + r.pairs, 0)).toBe(1);
    expect((await state(s, a)).match!.partner_id).toBe(b);
    expect((await state(s, c)).status).toBe('waiting');
  });

  it('respects the eligibility hook and takes the next eligible ticket', async () => {
    const [a, b, c] = [newUser(), newUser(), newUser()];
    // a may pair with nobody among b and c.
    await s.query(
      `create or replace function matchmaker.is_eligible(a uuid, b uuid) returns boolean language sql stable
       set search_path = '' as $$ select not ('${a}' in (a, b) and ('${b}' in (a, b) or '${c}' in (a, b))) $$`,
    );
    await join(s, a);
    expect((await join(s, b)).status).toBe('waiting');
    const cJoin = await join(s, c);
    expect(cJoin.match!.partner_id).toBe(b);
    expect((await state(s, a)).status).toBe('waiting');
  });
});

describe('cancel', () => {
  it('cancels, then reports not_waiting; after a match it returns already_matched with the match', async () => {
    const [a, b, c] = [newUser(), newUser(), newUser()];
    const t = await join(s, a);
    const cancelled = await cancel(s, a);
    expect(cancelled).toMatchObject({ status: 'cancelled', result: 'cancelled', reason: 'user' });
    expect(await cancel(s, a)).toMatchObject({ status: 'cancelled', result: 'not_waiting' });
    expect(await notificationsOf(s, a)).toEqual([
      {
        event: 'cancelled',
        payload: expect.objectContaining({ ticket_id: t.ticket!.id, outcome: 'cancelled' }),
      },
    ]);
    // The cancelled user is not matched.
    expect((await join(s, b)).status).toBe('waiting');
    const matched = await join(s, c);
    expect(matched.match!.partner_id).toBe(b);
    const late = await cancel(s, b);
    expect(late).toMatchObject({ status: 'matched', result: 'already_matched' });
    expect(late.match!.partner_id).toBe(c);
    expect(await cancel(s, newUser())).toMatchObject({ status: 'idle', result: 'not_waiting' });
  });
});

describe('expiry and heartbeats', () => {
  it('skips and retires expired tickets at the next claim, notifying their users', async () => {
    const [a, b] = [newUser(), newUser()];
    await join(s, a);
    await s.query(`update matchmaker.tickets set expires_at = ${ago(1)} where user_id = $1`, [a]);
    expect((await state(s, a)).status).toBe('expired');
    expect((await join(s, b)).status).toBe('waiting');
    expect(await state(s, a)).toMatchObject({ status: 'expired', reason: 'ttl' });
    expect(await notificationsOf(s, a)).toEqual([
      { event: 'cancelled', payload: expect.objectContaining({ outcome: 'expired', reason: 'ttl' }) },
    ]);
  });

  it('skips tickets with a stale heartbeat; the processor retires them as disconnected', async () => {
    const [a, b] = [newUser(), newUser()];
    await join(s, a);
    await s.query(`update matchmaker.tickets set last_seen_at = ${ago(31)} where user_id = $1`, [a]);
    expect((await join(s, b)).status).toBe('waiting');
    // The claim retired a on the way (it was passed); nothing left for the processor but b.
    expect(await state(s, a)).toMatchObject({ status: 'disconnected', reason: 'heartbeat_timeout' });
    await s.query(`update matchmaker.tickets set last_seen_at = ${ago(31)} where user_id = $1`, [b]);
    const steps = await drain(s);
    expect(steps.reduce((n, r) => n + r.disconnected, 0)).toBe(1);
    expect(await notificationsOf(s, b)).toEqual([
      { event: 'cancelled', payload: expect.objectContaining({ outcome: 'disconnected' }) },
    ]);
  });

  it('the pass for stale heartbeats runs at most every heartbeat_timeout / 3', async () => {
    const [a, b] = [newUser(), newUser()];
    await s.query(`update matchmaker.settings set criteria_keys = '[{"key":"k"}]'`);
    await join(s, a, { k: 'a' });
    await join(s, b, { k: 'b' });
    await s.query(`update matchmaker.tickets set last_seen_at = ${ago(31)} where user_id = $1`, [a]);
    expect((await drain(s)).reduce((n, r) => n + r.disconnected, 0)).toBe(1);
    await s.query(`update matchmaker.tickets set last_seen_at = ${ago(31)} where user_id = $1`, [b]);
    expect((await drain(s)).reduce((n, r) => n + r.disconnected, 0)).toBe(0);
    await s.query(
      `update matchmaker.maintenance_state set stale_swept_at = stale_swept_at - interval '11 seconds'`,
    );
    expect((await drain(s)).reduce((n, r) => n + r.disconnected, 0)).toBe(1);
  });

  it('a heartbeat revives a stale ticket and pairs it with a compatible waiting one', async () => {
    const [a, b] = [newUser(), newUser()];
    await join(s, a);
    await s.query(`update matchmaker.settings set claim_retire_limit = 0`);
    await s.query(`update matchmaker.tickets set last_seen_at = ${ago(31)} where user_id = $1`, [a]);
    expect((await join(s, b)).status).toBe('waiting');
    const beat = await heartbeat(s, a);
    expect(beat).toMatchObject({ status: 'matched', result: 'alive' });
    expect(beat.match!.partner_id).toBe(b);
    await s.query(`update matchmaker.settings set claim_retire_limit = 32`);
  });

  it('the processor expires tickets with their own clock and notifies once', async () => {
    const users = [newUser(), newUser(), newUser()];
    await configure(s, { criteria_keys: [{ key: 'lang' }] });
    for (const [i, u] of users.entries()) await join(s, u, { lang: `l${i}` });
    await s.query(`update matchmaker.tickets set expires_at = ${ago(1)}`);
    const steps = await drain(s);
    expect(steps.reduce((n, r) => n + r.expired, 0)).toBe(3);
    expect(steps.reduce((n, r) => n + r.expired, 0)).toBe(3);
    for (const u of users) expect(await notificationsOf(s, u)).toHaveLength(1);
    const again = await drain(s);
    expect(again.reduce((n, r) => n + r.expired, 0)).toBe(0);
  });
});

describe('forget_user', () => {
  it("erases a user's ticket, history and matches (service role), without breaking the partner's state", async () => {
    const [a, b, c] = [newUser(), newUser(), newUser()];
    await join(s, a);
    await join(s, b);
    await join(s, c);
    const rows = await asRole(
      s,
      'service_role',
      { role: 'service_role' },
      'select matchmaker.forget_user($1) as r',
      [a],
    );
    expect(rows[0]!.r).toEqual({ tickets: 0, history: 1, matches: 1 });
    expect(await state(s, a)).toMatchObject({ status: 'idle' });
    expect(await state(s, b)).toMatchObject({ status: 'matched', match: { partner_id: a } });
    const waiting = await asRole(
      s,
      'service_role',
      { role: 'service_role' },
      'select matchmaker.forget_user($1) as r',
      [c],
    );
    expect(waiting[0]!.r).toEqual({ tickets: 1, history: 0, matches: 0 });
    await expect(
      asRole(s, 'authenticated', { sub: b, role: 'authenticated' }, 'select matchmaker.forget_user($1)', [a]),
    ).rejects.toMatchObject({ code: '42501' });
  });
});
