import { describe, expect, it } from 'vitest';
import type { ChangeColumn } from '../../src/testing/internal/contracts';
import {
  bindingId,
  describeParams,
  matchesFilters,
  parseSubscriptionParams,
  type SubscriptionParams,
  validateAgainstColumns,
} from '../../src/testing/realtime/postgresFilter';

const COLUMNS: ChangeColumn[] = [
  { name: 'id', type: 'int8' },
  { name: 'title', type: 'text' },
  { name: 'done', type: 'bool' },
  { name: 'score', type: 'float8' },
  { name: 'owner', type: 'uuid' },
  { name: 'at', type: 'timestamptz' },
  { name: 'label', type: 'varchar' },
];

function parsed(params: Record<string, unknown>): SubscriptionParams {
  const result = parseSubscriptionParams(params);
  if (!result.ok) throw new Error(result.error);
  return result.params;
}

function matches(filter: string, row: Record<string, unknown>): boolean {
  return matchesFilters(parsed({ schema: 'public', table: 't', filter }).filters, row, COLUMNS);
}

describe('parseSubscriptionParams', () => {
  it('applies the server defaults for event, schema and table', () => {
    expect(parsed({ schema: 'public' })).toEqual({
      event: '*',
      schema: 'public',
      table: '*',
      filters: [],
      select: null,
    });
    expect(parsed({ table: 'todos', event: 'insert' })).toMatchObject({ event: 'INSERT', schema: 'public' });
    expect(parsed({ schema: 'public', table: 'todos', event: 'TRUNCATE' }).event).toBe('*');
    expect(parsed({ schema: 'public', table: 'todos', filter: '   ' }).filters).toEqual([]);
  });

  it('parses operators, negation, quoting and in-lists', () => {
    const { filters } = parsed({
      schema: 'public',
      table: 't',
      filter: 'a=eq.1,b=not.like.x%,c=in.(1,"two, three",4),d=eq."quoted, \\"value\\"",e=is.null',
    });
    expect(filters).toEqual([
      { column: 'a', op: 'eq', value: '1', negate: false },
      { column: 'b', op: 'like', value: 'x%', negate: true },
      { column: 'c', op: 'in', value: '{1,"two, three",4}', negate: false },
      { column: 'd', op: 'eq', value: 'quoted, "value"', negate: false },
      { column: 'e', op: 'is', value: 'null', negate: false },
    ]);
  });

  it('reports the server errors word for word', () => {
    const error = (params: Record<string, unknown>) => {
      const result = parseSubscriptionParams(params);
      return result.ok ? undefined : result.error;
    };
    expect(error({ schema: 'public', table: 'm', filter: 'subject=foo.hey' })).toBe(
      'Error parsing `filter` params: ["foo", "hey"]',
    );
    expect(error({ schema: 'public', table: 'm', filter: 'undefined' })).toBe(
      'Error parsing `filter` params: ["undefined"]',
    );
    expect(error({ schema: 'public', table: 'm', filter: 'a=in.1,2' })).toBe(
      'Error parsing `filter` params: `in` filter value must be wrapped by parentheses',
    );
    expect(error({ schema: 'public', table: 'm', filter: 'a=eq.1,,b=eq.2' })).toBe(
      'Error parsing `filter` params: filter must not contain empty segments (check for extra commas)',
    );
    expect(error({})).toBe(
      'No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{}',
    );
    expect(error({ event: '*', schema: 'public', filter: 'a=eq.1' })).toBe(
      'No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{"event" => "*", "filter" => "a=eq.1", "schema" => "public"}',
    );
    expect(error({ schema: '*', select: ['a'] })).toBe(
      'Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table name.',
    );
    expect(error({ schema: 'public', table: 't', select: 'a' })).toMatch(/^Error parsing `select` params/);
  });

  it('describes params the way the server logs them', () => {
    expect(describeParams(parsed({ event: '*', schema: 'public', table: 'x' }))).toBe(
      'event: *, schema: public, table: x, filters: [], select: nil',
    );
    expect(describeParams(parsed({ schema: 'public', table: 'x', filter: 'id=eq.1', select: ['a'] }))).toBe(
      'event: *, schema: public, table: x, filters: [{"id", "eq", "1", false}], select: ["a"]',
    );
  });

  it('gives stable integer ids in the phash2 range that depend only on the params', () => {
    const a = bindingId({ event: 'INSERT', schema: 'public', table: 't' });
    expect(Number.isInteger(a)).toBe(true);
    expect(a).toBeGreaterThanOrEqual(0);
    expect(a).toBeLessThan(2 ** 27);
    expect(bindingId({ table: 't', schema: 'public', event: 'INSERT' })).toBe(a);
    expect(bindingId({ event: 'UPDATE', schema: 'public', table: 't' })).not.toBe(a);
  });
});

describe('matchesFilters', () => {
  const row = {
    id: 10,
    title: 'Hello, World',
    done: true,
    score: 2.5,
    owner: 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
    at: '2026-01-02T03:04:05+00:00',
    label: null,
  };

  it('compares by column type', () => {
    expect(matches('id=eq.10', row)).toBe(true);
    expect(matches('id=gt.9', row)).toBe(true);
    expect(matches('id=lt.9', row)).toBe(false);
    expect(matches('id=gte.10,id=lte.10', row)).toBe(true);
    expect(matches('id=neq.10', row)).toBe(false);
    expect(matches('score=gt.2.25', row)).toBe(true);
    expect(matches('done=eq.t', row)).toBe(true);
    expect(matches('done=eq.false', row)).toBe(false);
    expect(matches('owner=eq.a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', row)).toBe(true);
    expect(matches('at=gt.2026-01-01T00:00:00Z', row)).toBe(true);
    expect(matches('title=eq."Hello, World"', row)).toBe(true);
    expect(matches('title=gt.Hello', row)).toBe(true);
  });

  it('handles in, like, ilike, match, is, isdistinct and not.', () => {
    expect(matches('id=in.(1,10,100)', row)).toBe(true);
    expect(matches('id=not.in.(1,10)', row)).toBe(false);
    expect(matches('title=like.Hello%', row)).toBe(true);
    expect(matches('title=like.hello%', row)).toBe(false);
    expect(matches('title=ilike.hello%', row)).toBe(true);
    expect(matches('title=match.^H.*d$', row)).toBe(true);
    expect(matches('title=imatch.^h', row)).toBe(true);
    expect(matches('label=is.null', row)).toBe(true);
    expect(matches('label=not.is.null', row)).toBe(false);
    expect(matches('done=is.true', row)).toBe(true);
    expect(matches('label=isdistinct.x', row)).toBe(true);
    expect(matches('id=not.isdistinct.10', row)).toBe(true);
  });

  it('never matches a NULL value with a comparison, negated or not', () => {
    expect(matches('label=eq.x', row)).toBe(false);
    expect(matches('label=not.eq.x', row)).toBe(false);
    expect(matches('label=in.(x)', row)).toBe(false);
  });

  it('fails when a filter column is missing from the row image (DELETE with only the key)', () => {
    expect(matches('title=eq.Hello', { id: 10 })).toBe(false);
    expect(matches('id=eq.10', { id: 10 })).toBe(true);
    expect(matchesFilters([], undefined, COLUMNS)).toBe(true);
  });
});

describe('validateAgainstColumns', () => {
  const validate = (filter: string, select?: string[]) =>
    validateAgainstColumns(
      parsed({ schema: 'public', table: 't', filter, ...(select ? { select } : {}) }),
      COLUMNS,
    );

  it('accepts valid filters', () => {
    expect(
      validate('id=eq.1,title=like.a%,done=is.true,owner=in.(a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11)'),
    ).toBe(undefined);
  });

  it('rejects what the subscription trigger rejects', () => {
    expect(validate('nope=eq.1')).toBe('ERROR P0001 (raise_exception) invalid column for filter nope');
    expect(validate('id=eq.abc')).toBe(
      'ERROR 22P02 (invalid_text_representation) invalid input syntax for type bigint: "abc"',
    );
    expect(validate('id=like.1%')).toBe(
      'ERROR P0001 (raise_exception) operator like requires a text-compatible column type, got bigint',
    );
    expect(validate('label=like.a%')).toBe(
      'ERROR P0001 (raise_exception) operator like requires a text-compatible column type, got character varying',
    );
    expect(validate('id=is.true')).toBe(
      'ERROR P0001 (raise_exception) is true filter requires a boolean column, got bigint',
    );
    expect(validate(`id=in.(${Array.from({ length: 101 }, (_, i) => i).join(',')})`)).toBe(
      'ERROR P0001 (raise_exception) too many values for `in` filter. Maximum 100',
    );
    expect(validate('', ['missing'])).toBe('ERROR P0001 (raise_exception) invalid column for select missing');
  });
});
