/**
 * PostgREST's "schema cache" for functions, reduced to what `/rpc` needs: the overloads of a function,
 * their input arguments, volatility and result shape, and PostgREST's overload resolution.
 *
 * @packageDocumentation
 */
import type pg from 'pg';

/** One input argument of a function. */
export interface FunctionArgument {
  /** Empty for an unnamed argument. */
  readonly name: string;
  /** `format_type` of the argument type (the array type for a VARIADIC argument). */
  readonly type: string;
  readonly variadic: boolean;
  /** Whether the argument has a default (and may be left out). */
  readonly optional: boolean;
}

/** How the function's result becomes a response body (spec §8.2). */
export type ResultShape = 'void' | 'scalar' | 'composite' | 'setof-scalar' | 'setof-composite';

/** One overload of a function. */
export interface FunctionSignature {
  readonly schema: string;
  readonly name: string;
  readonly args: readonly FunctionArgument[];
  /** `VOLATILE` functions run READ WRITE on POST; the others run READ ONLY. */
  readonly volatile: boolean;
  readonly result: ResultShape;
}

/** The outcome of matching a request's argument names against the overloads. */
export type FunctionMatch =
  | { readonly kind: 'named'; readonly fn: FunctionSignature }
  | { readonly kind: 'single-json'; readonly fn: FunctionSignature }
  | { readonly kind: 'none'; readonly overloads: readonly FunctionSignature[] }
  | { readonly kind: 'ambiguous'; readonly candidates: readonly FunctionSignature[] };

interface ProcRow {
  provolatile: string;
  proretset: boolean;
  pronargdefaults: number;
  argnames: string[];
  argmodes: string[];
  argtypes: string[];
  rettypname: string;
  rettyptype: string;
  returns_void: boolean;
}

const OVERLOADS_SQL = `
  select p.provolatile::text as provolatile, p.proretset, p.pronargdefaults,
         coalesce(p.proargnames, '{}'::text[]) as argnames,
         coalesce(p.proargmodes::text[], '{}'::text[]) as argmodes,
         array(select pg_catalog.format_type(t.oid, null)
               from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality as t(oid, n)
               order by t.n) as argtypes,
         rt.typname::text as rettypname, rt.typtype::text as rettyptype,
         p.prorettype = 'pg_catalog.void'::pg_catalog.regtype as returns_void
  from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  join pg_catalog.pg_type rt on rt.oid = p.prorettype
  where n.nspname = $1 and p.proname = $2 and p.prokind = 'f'
  order by p.oid`;

const INPUT_MODES = new Set(['i', 'b', 'v']);
const JSON_TYPES = new Set(['json', 'jsonb']);

/**
 * Cached function signatures per `schema.name`. Lookups that find no matching overload reload the entry
 * once, so functions created after the stack started are found (as after PostgREST's schema reload).
 */
export class FunctionCatalog {
  readonly #pool: pg.Pool;
  readonly #cache = new Map<string, Promise<readonly FunctionSignature[]>>();

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** Forget the cached overloads of one function, or of every function. */
  invalidate(schema?: string, name?: string): void {
    if (schema === undefined || name === undefined) this.#cache.clear();
    else this.#cache.delete(`${schema}.${name}`);
  }

  /**
   * Resolve the overload a request calls, PostgREST-style: an overload matches when every given argument
   * name is one of its inputs and every input without a default is given; failing that, a function with a
   * single unnamed json/jsonb argument takes the whole body.
   */
  async match(schema: string, name: string, argNames: readonly string[]): Promise<FunctionMatch> {
    const cached = await this.#overloads(schema, name, false);
    const first = resolve(cached, argNames);
    if (first.kind === 'named' || first.kind === 'single-json') return first;
    return resolve(await this.#overloads(schema, name, true), argNames);
  }

  #overloads(schema: string, name: string, reload: boolean): Promise<readonly FunctionSignature[]> {
    const key = `${schema}.${name}`;
    let entry = reload ? undefined : this.#cache.get(key);
    if (!entry) {
      entry = this.#load(schema, name);
      this.#cache.set(key, entry);
      entry.catch(() => this.#cache.delete(key));
    }
    return entry;
  }

  async #load(schema: string, name: string): Promise<readonly FunctionSignature[]> {
    const { rows } = await this.#pool.query<ProcRow>(OVERLOADS_SQL, [schema, name]);
    return rows.map((row) => toSignature(schema, name, row));
  }
}

function toSignature(schema: string, name: string, row: ProcRow): FunctionSignature {
  const inputs: { name: string; type: string; variadic: boolean }[] = [];
  let hasOutArgs = false;
  row.argtypes.forEach((type, i) => {
    const mode = row.argmodes[i] ?? 'i';
    if (mode === 'o' || mode === 't' || mode === 'b') hasOutArgs = true;
    if (INPUT_MODES.has(mode)) inputs.push({ name: row.argnames[i] ?? '', type, variadic: mode === 'v' });
  });
  const firstOptional = inputs.length - row.pronargdefaults;
  const args = inputs.map((arg, i) => ({ ...arg, optional: i >= firstOptional }));
  const composite = row.rettyptype === 'c' || (row.rettypname === 'record' && hasOutArgs);
  let result: ResultShape;
  if (row.returns_void) result = 'void';
  else if (row.proretset) result = composite ? 'setof-composite' : 'setof-scalar';
  else result = composite ? 'composite' : 'scalar';
  return { schema, name, args, volatile: row.provolatile === 'v', result };
}

function resolve(overloads: readonly FunctionSignature[], argNames: readonly string[]): FunctionMatch {
  const given = new Set(argNames);
  const named = overloads.filter(
    (fn) =>
      argNames.every((arg) => fn.args.some((a) => a.name === arg)) &&
      fn.args.every((a) => a.optional || given.has(a.name)) &&
      fn.args.every((a) => a.name !== ''),
  );
  if (named.length === 1 && named[0]) return { kind: 'named', fn: named[0] };
  if (named.length > 1) return { kind: 'ambiguous', candidates: named };
  const singleJson = overloads.filter(
    (fn) => fn.args.length === 1 && fn.args[0]?.name === '' && JSON_TYPES.has(fn.args[0].type),
  );
  if (singleJson.length === 1 && singleJson[0]) return { kind: 'single-json', fn: singleJson[0] };
  if (singleJson.length > 1) return { kind: 'ambiguous', candidates: singleJson };
  return { kind: 'none', overloads };
}
