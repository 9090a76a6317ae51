/**
 * Plain-text tables for benchmark output: aligned columns, numbers with thousands separators, ratios to the
 * calibration figures of the same run.
 *
 * @packageDocumentation
 */

/** One reported figure, as printed and as written to `bench/results/latest.json`. */
export interface ReportRow {
  /** What was measured, e.g. `matches/s at 200 joins/s`. */
  readonly metric: string;
  readonly value: number;
  /** Unit of `value`: `ms`, `us`, `tps`, `matches/s`, `deliveries/match`… */
  readonly unit: string;
  /** Calibration figure the ratio is taken to, e.g. `C_tpcb`. */
  readonly ratioTo?: string;
  /** `value` divided by that calibration figure (after unit conversion). */
  readonly ratio?: number;
  /** Free text shown in a last column (how many runs, the typical value…). */
  readonly note?: string;
}

/** Column alignment. */
export type Align = 'left' | 'right';

/**
 * Format a number for a table: thousands separators from 1,000 up, 1 decimal from 10, 2 from 1, else 3
 * significant digits; `-` for NaN.
 */
export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return '-';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';
  const abs = Math.abs(value);
  if (abs >= 1_000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  if (abs === 0) return '0';
  return value.toPrecision(3);
}

/** Format a ratio as `0.523x`, 3 significant digits (more when it is 1,000 or more). */
export function formatRatio(ratio: number): string {
  if (!Number.isFinite(ratio)) return '-';
  const abs = Math.abs(ratio);
  const text =
    abs >= 1_000 ? Math.round(ratio).toLocaleString('en-US') : Number(ratio.toPrecision(3)).toString();
  return `${text}x`;
}

/**
 * Lay out `rows` under `headers` in aligned columns separated by two spaces, with a dashed line under the
 * headers. Trailing spaces are trimmed.
 */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  align: readonly Align[] = [],
): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]): string =>
    widths
      .map((width, column) => {
        const cell = cells[column] ?? '';
        return align[column] === 'right' ? cell.padStart(width) : cell.padEnd(width);
      })
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

/**
 * The table of one benchmark: metric, value, unit, ratio to calibration, and a note column when any row has a
 * note.
 */
export function formatReportTable(rows: readonly ReportRow[]): string {
  const withNotes = rows.some((row) => row.note);
  const headers = ['metric', 'value', 'unit', 'ratio to calibration', ...(withNotes ? ['note'] : [])];
  const align: Align[] = ['left', 'right', 'left', 'left', 'left'];
  const cells = rows.map((row) => [
    row.metric,
    formatNumber(row.value),
    row.unit,
    row.ratio === undefined || row.ratioTo === undefined ? '' : `${formatRatio(row.ratio)} ${row.ratioTo}`,
    ...(withNotes ? [row.note ?? ''] : []),
  ]);
  return formatTable(headers, cells, align);
}
