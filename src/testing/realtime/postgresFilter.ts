/**
 * `postgres_changes` subscription parameters as the Realtime server parses, validates and evaluates them:
 * PostgREST-style filters (`column=op.value`, `,`-joined and ANDed, `not.` negation, double-quoted values,
 * `in.(a,b)` lists), the `event`/`schema`/`table` defaults, `select`, and per-row matching with SQL's
 * three-valued logic (a NULL column value never matches, except with `is` and `isdistinct`).
 *
 * Values are compared by the column's Postgres type: numbers numerically, booleans, timestamps by instant,
 * UUIDs case-insensitively, everything else as text in code-point order (the real server compares with the
 * database collation, which can order non-ASCII text differently).
 *
 * @packageDocumentation
 */
import type { ChangeColumn } from '../internal/contracts';

/** Every operator the server (2.129.x) accepts. */
export const FILTER_OPERATORS = [
  'eq',
  'neq',
  'lt',
  'lte',
  'gt',
  'gte',
  'in',
  'like',
  'ilike',
  'is',
  'match',
  'imatch',
  'isdistinct',
] as const;

/** A filter operator. */
export type FilterOperator = (typeof FILTER_OPERATORS)[number];

/** One parsed `column=op.value` condition. */
export interface ColumnFilter {
  readonly column: string;
  readonly op: FilterOperator;
  /** Unquoted value; for `in`, the Postgres array literal `{a,b}`. */
  readonly value: string;
  readonly negate: boolean;
}

/** The event a binding listens to, as the server normalises it. */
export type ActionFilter = '*' | 'INSERT' | 'UPDATE' | 'DELETE';

/** Parsed parameters of one `postgres_changes` binding. */
export interface SubscriptionParams {
  readonly event: ActionFilter;
  /** `*` for every schema. */
  readonly schema: string;
  /** `*` for every table of the schema. */
  readonly table: string;
  readonly filters: readonly ColumnFilter[];
  /** Selected columns, or null for all. */
  readonly select: readonly string[] | null;
}

/** Result of {@link parseSubscriptionParams}. */
export type ParseResult =
  | { readonly ok: true; readonly params: SubscriptionParams }
  | { readonly ok: false; readonly error: string };

/**
 * Parse one binding from the join payload (the client's filter object, e.g.
 * `{event: 'INSERT', schema: 'public', table: 'todos', filter: 'user_id=eq.abc'}`).
 */
export function parseSubscriptionParams(params: Record<string, unknown>): ParseResult {
  const event = actionFilter(params.event);
  const select = parseSelect(params.select);
  if (typeof select === 'string') return { ok: false, error: select };
  const has = (key: string) => Object.hasOwn(params, key);
  const { schema, table, filter } = params;

  if (typeof schema === 'string' && typeof table === 'string' && typeof filter === 'string') {
    const filters = parseFilters(filter);
    if (typeof filters === 'string')
      return { ok: false, error: `Error parsing \`filter\` params: ${filters}` };
    return okParams(event, schema, table, filters, select);
  }
  if (typeof schema === 'string' && typeof table === 'string' && !has('filter')) {
    return okParams(event, schema, table, [], select);
  }
  if (typeof schema === 'string' && !has('table') && !has('filter')) {
    return okParams(event, schema, '*', [], select);
  }
  if (typeof table === 'string' && !has('schema') && !has('filter')) {
    return okParams(event, 'public', table, [], select);
  }
  return {
    ok: false,
    error: `No subscription params provided. Please provide at least a \`schema\` or \`table\` to subscribe to: ${inspectElixir(params)}`,
  };
}

/** The `[event: *, schema: public, ...]` text the server puts into subscription error messages. */
export function describeParams(params: SubscriptionParams): string {
  const filters = params.filters.map(
    (f) =>
      `{${inspectElixir(f.column)}, ${inspectElixir(f.op)}, ${inspectElixir(f.value)}, ${inspectElixir(f.negate)}}`,
  );
  const select = params.select === null ? 'nil' : inspectElixir(params.select);
  return `event: ${params.event}, schema: ${params.schema}, table: ${params.table}, filters: [${filters.join(', ')}], select: ${select}`;
}

/**
 * Check the filters and `select` of a binding against the table's columns, as the server's
 * `subscription_check_filters` trigger does. Returns the Postgres error text, or undefined when valid.
 */
export function validateAgainstColumns(
  params: SubscriptionParams,
  columns: readonly ChangeColumn[],
): string | undefined {
  const byName = new Map(columns.map((column) => [column.name, column.type]));
  for (const filter of params.filters) {
    const type = byName.get(filter.column);
    if (type === undefined) return raise(`invalid column for filter ${filter.column}`);
    const typeName = regtypeName(type);
    if (filter.op === 'in') {
      const values = parseArrayLiteral(filter.value);
      if (values === undefined)
        return `ERROR 22P02 (invalid_text_representation) malformed array literal: "${filter.value}"`;
      if (values.length > 100) return raise('too many values for `in` filter. Maximum 100');
      for (const value of values) {
        if (value !== null && castError(type, value)) return castError(type, value);
      }
    } else if (filter.op === 'is') {
      if (!['null', 'true', 'false', 'unknown'].includes(filter.value)) {
        return raise('invalid value for is filter: must be null, true, false, or unknown');
      }
      if (filter.value !== 'null' && type !== 'bool') {
        return raise(`is ${filter.value} filter requires a boolean column, got ${typeName}`);
      }
    } else if (filter.op === 'like' || filter.op === 'ilike') {
      if (!LIKE_TYPES.has(type)) {
        return raise(`operator ${filter.op} requires a text-compatible column type, got ${typeName}`);
      }
    } else if (filter.op === 'match' || filter.op === 'imatch') {
      if (!REGEX_TYPES.has(type)) {
        return raise(`operator ${filter.op} requires a text-compatible column type, got ${typeName}`);
      }
      if (toRegExp(filter.value, filter.op === 'imatch') === undefined) {
        return raise(`invalid regular expression for ${filter.op} filter: invalid regular expression`);
      }
    } else if (filter.op !== 'isdistinct') {
      const error = castError(type, filter.value);
      if (error) return error;
    }
  }
  for (const column of params.select ?? []) {
    if (!byName.has(column)) return raise(`invalid column for select ${column}`);
  }
  return undefined;
}

/**
 * Whether a row image passes every filter (`realtime.is_visible_through_filters`). Each filter column must
 * be present in the image, or the row does not match.
 */
export function matchesFilters(
  filters: readonly ColumnFilter[],
  image: Readonly<Record<string, unknown>> | undefined,
  columns: readonly ChangeColumn[],
): boolean {
  if (filters.length === 0) return true;
  if (image === undefined) return false;
  const types = new Map(columns.map((column) => [column.name, column.type]));
  return filters.every((filter) => {
    if (!Object.hasOwn(image, filter.column)) return false;
    const type = types.get(filter.column) ?? 'text';
    return evaluate(filter, type, jsonToText(image[filter.column])) === true;
  });
}

/**
 * A stable integer id for a binding's params, like the server's `:erlang.phash2(params)`: in `0..2^27-1`
 * and a function of the params alone.
 */
export function bindingId(params: unknown): number {
  const text = canonicalJson(params);
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    hash ^= text.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % 2 ** 27;
}

// ---------------------------------------------------------------------------------------------------------
// Parsing

function actionFilter(event: unknown): ActionFilter {
  if (typeof event !== 'string') return '*';
  const upper = event.toUpperCase();
  return upper === 'INSERT' || upper === 'UPDATE' || upper === 'DELETE' ? upper : '*';
}

function parseSelect(select: unknown): readonly string[] | null | string {
  if (Array.isArray(select)) {
    const valid = select.filter((column): column is string => typeof column === 'string');
    return valid.length === 0 ? null : valid;
  }
  if (typeof select === 'string') {
    return 'Error parsing `select` params: expected a list of column name strings, e.g. select: ["col1", "col2"]';
  }
  return null;
}

function okParams(
  event: ActionFilter,
  schema: string,
  table: string,
  filters: readonly ColumnFilter[],
  select: readonly string[] | null,
): ParseResult {
  if (select !== null && (schema === '*' || table === '*')) {
    return {
      ok: false,
      error:
        'Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table name.',
    };
  }
  return { ok: true, params: { event, schema, table, filters, select } };
}

function parseFilters(filter: string): ColumnFilter[] | string {
  const trimmed = filter.trim();
  if (trimmed === '') return [];
  const parsed: ColumnFilter[] = [];
  for (const segment of splitTopLevel(trimmed)) {
    const result = parseSegment(segment);
    if (typeof result === 'string') return result;
    parsed.push(result);
  }
  return parsed;
}

/** Split on commas outside parentheses and double quotes (a quote opens only after `.`, `(` or `,`). */
function splitTopLevel(filter: string): string[] {
  const segments: string[] = [];
  let current = '';
  let depth = 0;
  let quoted = false;
  let previous = '';
  for (let index = 0; index < filter.length; index++) {
    const char = filter[index] as string;
    if (quoted) {
      if (char === '\\' && index + 1 < filter.length) {
        current += char + (filter[index + 1] as string);
        previous = filter[index + 1] as string;
        index += 1;
      } else {
        current += char;
        if (char === '"') quoted = false;
        previous = char;
      }
      continue;
    }
    if (char === '"' && (previous === '.' || previous === '(' || previous === ',')) {
      quoted = true;
      current += char;
    } else if (char === '(') {
      depth += 1;
      current += char;
    } else if (char === ')') {
      depth = Math.max(0, depth - 1);
      current += char;
    } else if (char === ',' && depth === 0) {
      segments.push(current);
      current = '';
      previous = '';
      continue;
    } else {
      current += char;
    }
    previous = char;
  }
  segments.push(current);
  return segments;
}

function parseSegment(segment: string): ColumnFilter | string {
  const trimmed = segment.trim();
  if (trimmed === '') return 'filter must not contain empty segments (check for extra commas)';
  const equals = trimmed.indexOf('=');
  if (equals < 0) return inspectElixir([trimmed]);
  const column = trimmed.slice(0, equals);
  let rest = trimmed.slice(equals + 1);
  let negate = false;
  if (rest.startsWith('not.')) {
    negate = true;
    rest = rest.slice(4);
  }
  const dot = rest.indexOf('.');
  if (dot < 0) return inspectElixir([rest]);
  const op = rest.slice(0, dot);
  const value = rest.slice(dot + 1);
  if (!(FILTER_OPERATORS as readonly string[]).includes(op)) return inspectElixir([op, value]);
  if (op === 'in') {
    if (value.length < 2 || !value.startsWith('(') || !value.endsWith(')')) {
      return '`in` filter value must be wrapped by parentheses';
    }
    return { column, op, value: `{${value.slice(1, -1)}}`, negate };
  }
  return { column, op: op as FilterOperator, value: unquote(value), negate };
}

/** `"a\"b"` becomes `a"b`; anything that is not one whole quoted string is kept as is. */
function unquote(value: string): string {
  if (!value.startsWith('"')) return value;
  let result = '';
  for (let index = 1; index < value.length; index++) {
    const char = value[index] as string;
    if (char === '\\' && index + 1 < value.length) {
      result += value[index + 1] as string;
      index += 1;
    } else if (char === '"') {
      return index === value.length - 1 ? result : value;
    } else {
      result += char;
    }
  }
  return value;
}

/** Parse a one-dimensional Postgres array literal (`{a,"b c",NULL}`); undefined when malformed. */
function parseArrayLiteral(literal: string): Array<string | null> | undefined {
  const body = literal.trim();
  if (!body.startsWith('{') || !body.endsWith('}')) return undefined;
  const inner = body.slice(1, -1);
  if (inner.trim() === '') return [];
  const values: Array<string | null> = [];
  let index = 0;
  while (index <= inner.length) {
    while (inner[index] === ' ') index += 1;
    if (inner[index] === '"') {
      let value = '';
      index += 1;
      while (index < inner.length && inner[index] !== '"') {
        if (inner[index] === '\\') index += 1;
        value += inner[index] ?? '';
        index += 1;
      }
      if (inner[index] !== '"') return undefined;
      index += 1;
      while (inner[index] === ' ') index += 1;
      values.push(value);
    } else {
      let value = '';
      while (index < inner.length && inner[index] !== ',') {
        if (inner[index] === '\\') index += 1;
        value += inner[index] ?? '';
        index += 1;
      }
      const trimmed = value.trim();
      values.push(trimmed.toUpperCase() === 'NULL' ? null : trimmed);
    }
    if (index >= inner.length) break;
    if (inner[index] !== ',') return undefined;
    index += 1;
  }
  return values;
}

// ---------------------------------------------------------------------------------------------------------
// Evaluation

type Truth = boolean | null;

const INTEGER_TYPES = new Set(['int2', 'int4', 'int8', 'oid']);
const NUMERIC_TYPES = new Set(['int2', 'int4', 'int8', 'oid', 'float4', 'float8', 'numeric']);
const TIME_TYPES = new Set(['timestamptz', 'timestamp', 'date']);
const LIKE_TYPES = new Set(['text', 'bpchar', 'name', 'bytea', 'citext']);
const REGEX_TYPES = new Set(['text', 'bpchar', 'name', 'citext']);

function evaluate(filter: ColumnFilter, type: string, value: string | null): Truth {
  const negateIf = (truth: Truth): Truth => (truth === null ? null : filter.negate ? !truth : truth);
  switch (filter.op) {
    case 'is': {
      const keyword = filter.value;
      let truth: Truth;
      if (keyword === 'null') truth = value === null;
      else if (keyword === 'unknown') truth = value === null;
      else {
        const parsed = value === null ? null : parseBool(value);
        truth = parsed === (keyword === 'true');
      }
      return filter.negate ? !truth : truth;
    }
    case 'isdistinct': {
      const distinct = value === null ? true : compare(type, value, filter.value) !== 0;
      return filter.negate ? !distinct : distinct;
    }
    case 'in': {
      if (value === null) return null;
      const values = parseArrayLiteral(filter.value) ?? [];
      let sawNull = false;
      for (const candidate of values) {
        if (candidate === null) {
          sawNull = true;
          continue;
        }
        const order = compare(type, value, candidate);
        if (order === undefined) return null;
        if (order === 0) return negateIf(true);
      }
      return negateIf(sawNull ? null : false);
    }
    case 'like':
    case 'ilike':
      if (value === null) return null;
      return negateIf(likeToRegExp(filter.value, filter.op === 'ilike').test(value));
    case 'match':
    case 'imatch': {
      if (value === null) return null;
      const pattern = toRegExp(filter.value, filter.op === 'imatch');
      return pattern === undefined ? null : negateIf(pattern.test(value));
    }
    default: {
      if (value === null) return null;
      const order = compare(type, value, filter.value);
      if (order === undefined) return null;
      const truth =
        filter.op === 'eq'
          ? order === 0
          : filter.op === 'neq'
            ? order !== 0
            : filter.op === 'lt'
              ? order < 0
              : filter.op === 'lte'
                ? order <= 0
                : filter.op === 'gt'
                  ? order > 0
                  : order >= 0;
      return negateIf(truth);
    }
  }
}

/** Compare two text values as the column type orders them; undefined when either does not cast. */
function compare(type: string, left: string, right: string): number | undefined {
  if (INTEGER_TYPES.has(type)) {
    const a = parseInteger(left);
    const b = parseInteger(right);
    if (a === undefined || b === undefined) return undefined;
    return a === b ? 0 : a < b ? -1 : 1;
  }
  if (NUMERIC_TYPES.has(type)) {
    const a = parseNumber(left);
    const b = parseNumber(right);
    if (a === undefined || b === undefined) return undefined;
    return a === b ? 0 : a < b ? -1 : 1;
  }
  if (type === 'bool') {
    const a = parseBool(left);
    const b = parseBool(right);
    if (a === undefined || b === undefined) return undefined;
    return Number(a) - Number(b);
  }
  if (TIME_TYPES.has(type)) {
    const a = Date.parse(left.replace(' ', 'T'));
    const b = Date.parse(right.replace(' ', 'T'));
    if (Number.isNaN(a) || Number.isNaN(b)) return undefined;
    return Math.sign(a - b);
  }
  if (type === 'uuid') {
    const a = normaliseUuid(left);
    const b = normaliseUuid(right);
    if (a === undefined || b === undefined) return undefined;
    return a === b ? 0 : a < b ? -1 : 1;
  }
  if (type === 'json' || type === 'jsonb') {
    try {
      const a = canonicalJson(JSON.parse(left));
      const b = canonicalJson(JSON.parse(right));
      return a === b ? 0 : a < b ? -1 : 1;
    } catch {
      return undefined;
    }
  }
  return left === right ? 0 : left < right ? -1 : 1;
}

function parseInteger(text: string): bigint | undefined {
  const trimmed = text.trim();
  return /^[+-]?\d+$/.test(trimmed) ? BigInt(trimmed) : undefined;
}

function parseNumber(text: string): number | undefined {
  const trimmed = text.trim();
  if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(trimmed)) return Number(trimmed);
  if (/^[+-]?(infinity|inf)$/i.test(trimmed))
    return trimmed.startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  if (/^nan$/i.test(trimmed)) return Number.NaN;
  return undefined;
}

function parseBool(text: string): boolean | undefined {
  const lower = text.trim().toLowerCase();
  if (['t', 'true', 'y', 'yes', 'on', '1'].includes(lower)) return true;
  if (['f', 'false', 'n', 'no', 'off', '0'].includes(lower)) return false;
  return undefined;
}

function normaliseUuid(text: string): string | undefined {
  const hex = text
    .trim()
    .toLowerCase()
    .replace(/^\{|\}$/g, '')
    .replaceAll('-', '');
  return /^[0-9a-f]{32}$/.test(hex) ? hex : undefined;
}

function likeToRegExp(pattern: string, caseInsensitive: boolean): RegExp {
  let source = '';
  for (let index = 0; index < pattern.length; index++) {
    const char = pattern[index] as string;
    if (char === '\\' && index + 1 < pattern.length) {
      source += escapeRegExp(pattern[index + 1] as string);
      index += 1;
    } else if (char === '%') source += '.*';
    else if (char === '_') source += '.';
    else source += escapeRegExp(char);
  }
  return new RegExp(`^${source}$`, caseInsensitive ? 'is' : 's');
}

function toRegExp(pattern: string, caseInsensitive: boolean): RegExp | undefined {
  try {
    return new RegExp(pattern, caseInsensitive ? 'i' : '');
  } catch {
    return undefined;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** `value #>> '{}'` of a jsonb value: strings raw, null as SQL NULL, everything else as JSON text. */
function jsonToText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  return JSON.stringify(value);
}

const REGTYPE_NAMES: Readonly<Record<string, string>> = {
  int2: 'smallint',
  int4: 'integer',
  int8: 'bigint',
  float4: 'real',
  float8: 'double precision',
  bool: 'boolean',
  varchar: 'character varying',
  bpchar: 'character',
  timestamptz: 'timestamp with time zone',
  timestamp: 'timestamp without time zone',
  timetz: 'time with time zone',
  time: 'time without time zone',
};

function regtypeName(type: string): string {
  if (type.startsWith('_')) return `${regtypeName(type.slice(1))}[]`;
  return REGTYPE_NAMES[type] ?? type;
}

function raise(message: string): string {
  return `ERROR P0001 (raise_exception) ${message}`;
}

/** The Postgres error for `value::type`, or undefined when the cast works (checked for common types). */
function castError(type: string, value: string): string | undefined {
  const invalid = (code: string, name: string) =>
    `ERROR ${code} (${code === '22007' ? 'invalid_datetime_format' : 'invalid_text_representation'}) invalid input syntax for type ${name}: "${value}"`;
  if (INTEGER_TYPES.has(type) && parseInteger(value) === undefined)
    return invalid('22P02', regtypeName(type));
  if (NUMERIC_TYPES.has(type) && parseNumber(value) === undefined) return invalid('22P02', regtypeName(type));
  if (type === 'bool' && parseBool(value) === undefined) return invalid('22P02', 'boolean');
  if (type === 'uuid' && normaliseUuid(value) === undefined) return invalid('22P02', 'uuid');
  if (TIME_TYPES.has(type) && Number.isNaN(Date.parse(value.replace(' ', 'T'))))
    return invalid('22007', regtypeName(type));
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Formatting helpers

/** JSON with object keys sorted, so equal values give equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, entry]) => entry !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, entry]) => `${JSON.stringify(key)}:${canonicalJson(entry)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** A value as Elixir's `inspect/1` prints the decoded JSON (`%{"a" => 1}`, `["x", "y"]`, `nil`). */
export function inspectElixir(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'string') {
    return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\t/g, '\\t')}"`;
  }
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(inspectElixir).join(', ')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
    return `%{${entries.map(([key, entry]) => `${inspectElixir(key)} => ${inspectElixir(entry)}`).join(', ')}}`;
  }
  return String(value);
}
