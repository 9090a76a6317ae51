/**
 * Units of reported figures and ratios between them. A ratio to a calibration figure is only defined between
 * figures of the same kind: durations with durations, rates with rates.
 *
 * @packageDocumentation
 */

/** What a unit measures: a duration, a rate (per second), or anything else (counts, bytes, ratios). */
export type UnitKind = 'time' | 'rate' | 'other';

const SECONDS_PER: Readonly<Record<string, number>> = { ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1 };
const RATE_UNITS = new Set(['tps', 'rps', 'qps', 'hz']);

/** Classify a unit string: `ms` is time, `tps`, `rps` and anything ending in `/s` are rates. */
export function unitKind(unit: string): UnitKind {
  const u = unit.trim().toLowerCase();
  if (u in SECONDS_PER) return 'time';
  if (RATE_UNITS.has(u) || u.endsWith('/s') || u.endsWith('/sec') || u.endsWith(' per second')) return 'rate';
  return 'other';
}

/** `value` in the base unit of its kind: seconds for time, per second for rates, unchanged otherwise. */
export function toBaseUnit(value: number, unit: string): number {
  const factor = SECONDS_PER[unit.trim().toLowerCase()];
  return factor === undefined ? value : value * factor;
}

/**
 * `value unit` divided by `reference referenceUnit`, after converting both to the base unit of their kind.
 *
 * @throws Error when the two units are not of the same kind (a latency cannot be a ratio to a throughput)
 */
export function ratioBetween(value: number, unit: string, reference: number, referenceUnit: string): number {
  const kind = unitKind(unit);
  const referenceKind = unitKind(referenceUnit);
  if (kind !== referenceKind || kind === 'other') {
    if (!(kind === 'other' && referenceKind === 'other' && unit.trim() === referenceUnit.trim())) {
      throw new Error(`cannot express ${unit} as a ratio to a figure in ${referenceUnit}`);
    }
  }
  return toBaseUnit(value, unit) / toBaseUnit(reference, referenceUnit);
}
