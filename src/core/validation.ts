import { MatchmakingError, MatchmakingErrorCode } from './errors';
import type { SearchCriteria } from './types';

/** Most keys a criteria object may have. */
export const MAX_CRITERIA_KEYS = 16;
/** Longest string value a criterion may have. */
export const MAX_CRITERIA_VALUE_LENGTH = 200;
const KEY_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,62}$/;

function invalid(message: string, field: string): MatchmakingError {
  return new MatchmakingError(MatchmakingErrorCode.InvalidArgument, message, { details: { field } });
}

/**
 * Checks search criteria and returns a frozen copy with keys in sorted order, so equal criteria always
 * serialise the same way.
 *
 * @internal
 */
export function validateCriteria(criteria: unknown): SearchCriteria {
  if (criteria === undefined || criteria === null) return Object.freeze({});
  if (typeof criteria !== 'object' || Array.isArray(criteria)) {
    throw invalid(
      `criteria must be a plain object of exact-match keys, e.g. { language: 'en' }; got ${Array.isArray(criteria) ? 'an array' : typeof criteria}.`,
      'criteria',
    );
  }
  const entries = Object.entries(criteria as Record<string, unknown>);
  if (entries.length > MAX_CRITERIA_KEYS) {
    throw invalid(`criteria may have at most ${MAX_CRITERIA_KEYS} keys; got ${entries.length}.`, 'criteria');
  }
  const out: Record<string, string | number | boolean> = {};
  for (const [key, value] of entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!KEY_PATTERN.test(key)) {
      throw invalid(
        `criteria key ${JSON.stringify(key)} is not allowed: use a letter followed by letters, digits or underscores (at most 63 characters).`,
        `criteria.${key}`,
      );
    }
    if (typeof value === 'string') {
      if (value.length > MAX_CRITERIA_VALUE_LENGTH) {
        throw invalid(
          `criteria.${key} is ${value.length} characters long; the limit is ${MAX_CRITERIA_VALUE_LENGTH}.`,
          `criteria.${key}`,
        );
      }
    } else if (typeof value === 'number') {
      if (!Number.isFinite(value))
        throw invalid(`criteria.${key} must be a finite number.`, `criteria.${key}`);
    } else if (typeof value !== 'boolean') {
      throw invalid(
        `criteria.${key} must be a string, number or boolean; got ${value === null ? 'null' : typeof value}. Omit the key to match anyone.`,
        `criteria.${key}`,
      );
    }
    out[key] = value;
  }
  return Object.freeze(out);
}

/**
 * The canonical pool key of a criteria object: sorted keys, JSON-encoded. Two searches may be paired only
 * when their (possibly widened) criteria have the same pool key.
 *
 * @internal
 */
export function criteriaPoolKey(criteria: SearchCriteria): string {
  const sorted = Object.keys(criteria)
    .sort()
    .map((key) => [key, criteria[key]]);
  return JSON.stringify(sorted);
}
