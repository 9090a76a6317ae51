import { describe, expect, it } from 'vitest';
import { PresenceView } from '../../src/strategies/presence/PresenceView';

const meta = (user: string, rank: number, criteria: Record<string, unknown> = {}) => ({
  user_id: user,
  rank_us: rank,
  criteria,
});

function viewOf(...members: [string, number, Record<string, unknown>?][]): PresenceView {
  const view = new PresenceView();
  for (const [user, rank, criteria] of members) view.add(`ref-${user}`, meta(user, rank, criteria));
  return view;
}

const pairs = (view: PresenceView, pool = '[]') =>
  [...view.pairing(pool).pairs]
    .filter(([, p]) => p.claimer)
    .map(([user, p]) => `${user}-${p.partner.userId}`);

describe('PresenceView pairing rule', () => {
  it('pairs by (rank, user id), 1-2, 3-4; the first of each pair claims', () => {
    const view = viewOf(['d', 4], ['b', 2], ['a', 1], ['c', 3], ['e', 5]);
    expect(pairs(view)).toEqual(['a-b', 'c-d']);
    expect(view.pairOf('b')).toMatchObject({ claimer: false, partner: { userId: 'a' } });
    expect(view.pairOf('e')).toBeUndefined();
    // Equal ranks fall back to the user id.
    expect(pairs(viewOf(['y', 1], ['x', 1]))).toEqual(['x-y']);
  });

  it('is the same whatever order the presence diffs arrived in', () => {
    const members: [string, number][] = Array.from({ length: 30 }, (_, i) => [
      `u${i}`,
      1000 + ((i * 7) % 30),
    ]);
    const forward = viewOf(...members);
    const backward = viewOf(...[...members].reverse());
    expect(pairs(backward)).toEqual(pairs(forward));
  });

  it('keeps pools apart (criteria key order does not matter)', () => {
    const view = viewOf(
      ['a', 1, { lang: 'en', min: 25 }],
      ['b', 2, { lang: 'fr' }],
      ['c', 3, { min: 25, lang: 'en' }],
    );
    expect(view.pairOf('a')).toMatchObject({ partner: { userId: 'c' }, claimer: true });
    expect(view.pairOf('b')).toBeUndefined();
  });

  it('counts several metas (tabs) of one user once, at the lowest rank', () => {
    const view = viewOf(['a', 5], ['b', 2]);
    view.add('ref-a-tab2', meta('a', 1));
    expect(view.size).toBe(2);
    expect(view.metaCount).toBe(3);
    expect(view.pairOf('a')).toMatchObject({ claimer: true, partner: { userId: 'b' } });
    expect(view.remove('ref-a-tab2')).toEqual({ userId: 'a', gone: false });
    expect(view.pairOf('b')).toMatchObject({ claimer: true });
    expect(view.remove('ref-a')).toEqual({ userId: 'a', gone: true });
  });

  it('ignores malformed metas', () => {
    const view = new PresenceView();
    expect(view.add('r1', { user_id: 'a' })).toBeUndefined();
    expect(view.add('r2', { user_id: 'a', rank_us: 1.5, criteria: {} })).toBeUndefined();
    expect(view.add('r3', { user_id: 'a', rank_us: 1e17, criteria: {} })).toBeUndefined();
    expect(view.add('r4', { user_id: 'a', rank_us: 1, criteria: [] })).toBeUndefined();
    expect(view.size).toBe(0);
  });

  it('skips members a client was told to skip, and pairs the database refused', () => {
    const view = viewOf(['a', 1], ['b', 2], ['c', 3], ['d', 4]);
    expect(pairs(view)).toEqual(['a-b', 'c-d']);
    expect([...view.pairing('[]', new Set(['b'])).pairs.keys()].sort()).toEqual(['a', 'c']);
    view.markIneligible('a', 'b');
    expect(pairs(view)).toEqual(['a-c', 'b-d']);
  });

  it('appends arrivals: a newcomer ranked after everyone changes no formed pair', () => {
    const view = viewOf(['a', 1], ['b', 2], ['c', 3]);
    const before = pairs(view);
    view.add('ref-n', meta('n', view.maxRank() + 1));
    expect(pairs(view).slice(0, before.length)).toEqual(before);
    expect(view.pairOf('n')).toMatchObject({ partner: { userId: 'c' }, claimer: false });
  });

  it('two leaves of one pair cancel out: the pairs behind it are unchanged', () => {
    const view = viewOf(['a', 1], ['b', 2], ['c', 3], ['d', 4], ['e', 5], ['f', 6]);
    view.remove('ref-a');
    expect(pairs(view)).toEqual(['b-c', 'd-e']); // the moment between the two leaves
    view.remove('ref-b');
    expect(pairs(view)).toEqual(['c-d', 'e-f']);
  });
});
