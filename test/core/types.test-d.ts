import { describe, expectTypeOf, it } from 'vitest';
import type {
  CancelReason,
  MatchForUser,
  Matchmaker,
  MatchmakerEvent,
  MatchmakerSnapshot,
  MatchmakingError,
} from '../../src/index';

describe('snapshot narrowing', () => {
  it('`match` exists only when matched, `reason` only when cancelled', () => {
    const snapshot = {} as MatchmakerSnapshot;
    if (snapshot.status === 'matched') {
      expectTypeOf(snapshot.match).toEqualTypeOf<MatchForUser>();
    }
    if (snapshot.status === 'cancelled') {
      expectTypeOf(snapshot.reason).toEqualTypeOf<CancelReason>();
      expectTypeOf(snapshot.error).toEqualTypeOf<MatchmakingError | undefined>();
    }
    if (snapshot.status === 'error') {
      expectTypeOf(snapshot.error).toEqualTypeOf<MatchmakingError>();
    }
    // @ts-expect-error `match` is not on the union without narrowing
    snapshot.match;
    // @ts-expect-error `reason` is not on the union without narrowing
    snapshot.reason;
  });

  it('event listeners get the payload of their event', () => {
    const m = {} as Matchmaker;
    m.on('matched', (event) => {
      expectTypeOf(event.match.partnerId).toEqualTypeOf<string>();
      expectTypeOf(event.type).toEqualTypeOf<'matched'>();
    });
    m.on('cancelled', (event) => {
      expectTypeOf(event.reason).toEqualTypeOf<CancelReason>();
    });
    // @ts-expect-error unknown event name
    m.on('paired', () => {});
  });

  it('the event union discriminates on type', () => {
    const event = {} as MatchmakerEvent;
    if (event.type === 'state') expectTypeOf(event.snapshot).toEqualTypeOf<MatchmakerSnapshot>();
    expectTypeOf<MatchmakerEvent['type']>().toEqualTypeOf<
      'searching' | 'matched' | 'cancelled' | 'error' | 'state' | 'warning'
    >();
  });
});
