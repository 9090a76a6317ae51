import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { isMatchmakingError, MatchmakingError } from '../../src/index';

describe('MatchmakingError', () => {
  it('carries code, cause, details and a name', () => {
    const cause = new Error('socket hang up');
    const error = new MatchmakingError('unavailable', 'Could not reach Supabase', {
      cause,
      details: { status: 503 },
    });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('MatchmakingError');
    expect(error.code).toBe('unavailable');
    expect(error.cause).toBe(cause);
    expect(error.details).toEqual({ status: 503 });
  });

  it('the guard narrows by code', () => {
    const error = new MatchmakingError('forbidden', 'no');
    expect(isMatchmakingError(error)).toBe(true);
    expect(isMatchmakingError(error, 'forbidden')).toBe(true);
    expect(isMatchmakingError(error, 'closed')).toBe(false);
    expect(isMatchmakingError(new Error('plain'))).toBe(false);
    expect(isMatchmakingError(null)).toBe(false);
    expect(isMatchmakingError({ code: 'forbidden', name: 'MatchmakingError' })).toBe(false);
  });

  it('the guard recognises an error from another copy of the package', async () => {
    // A second module instance stands for a second bundle of the SDK: instanceof fails, the guard does not.
    const other = (await import(
      '../../src/core/errors?copy=2' as string
    )) as typeof import('../../src/core/errors');
    expect(other.MatchmakingError).not.toBe(MatchmakingError);
    const foreign = new other.MatchmakingError('closed', 'from the other copy');
    expect(foreign instanceof MatchmakingError).toBe(false);
    expect(isMatchmakingError(foreign, 'closed')).toBe(true);
  });

  it('the guard recognises an error that crossed into another realm', () => {
    const error = new MatchmakingError('timeout', 'too slow');
    const seenFromOtherRealm = runInNewContext('Object.assign(Object.create(null), source)', {
      source: error,
    });
    // Own enumerable symbol keys survive Object.assign; the brand is registered with Symbol.for.
    expect(isMatchmakingError(seenFromOtherRealm)).toBe(true);
  });
});
