/**
 * Prints the calibration figures of this run beside the typical values of docs/benchmarks.md.
 *
 * @packageDocumentation
 */
import { CALIBRATION_KEYS, calibrationValue, TYPICAL_CALIBRATION } from './lib/calibration';
import { defineBenchmark } from './lib/runner';
import { formatRatio } from './lib/table';

/** The calibration table: measured value, unit, and the typical 2-core value with measured/typical. */
export const benchmark = defineBenchmark({
  name: 'calibration',
  description: 'calibration figures of this run beside the typical values of docs/benchmarks.md',
  run(ctx) {
    const { calibration } = ctx;
    for (const key of CALIBRATION_KEYS) {
      const typical = TYPICAL_CALIBRATION[key];
      const measured = calibrationValue(calibration, key);
      if (!measured) {
        ctx.log.warn(`${key} not measured`);
        continue;
      }
      ctx.report(key, measured.value, measured.unit, {
        note: `typical ${typical.text}; measured/typical ${formatRatio(measured.value / typical.value)}`,
      });
    }
    const { tpcb, sel, zadd, rtt, fan, postgres } = calibration;
    if (tpcb?.latencyAverageMs !== undefined) {
      ctx.report('C_tpcb latency average', tpcb.latencyAverageMs, 'ms', { note: tpcb.command });
    }
    if (sel?.latencyAverageMs !== undefined) {
      ctx.report('C_sel latency average', sel.latencyAverageMs, 'ms', { note: sel.command });
    }
    if (zadd?.p99Ms !== undefined) ctx.report('C_zadd p99', zadd.p99Ms, 'ms', { note: zadd.command });
    if (rtt) {
      ctx.report('C_rtt p99.9', rtt.p999Us, 'us', {
        ratioTo: 'C_rtt_p50',
        note: `${rtt.roundTrips} round trips`,
      });
      ctx.report('C_rtt max', rtt.maxUs, 'us', { ratioTo: 'C_rtt_p50' });
    }
    if (fan) {
      const note = `${fan.clients} clients, ${fan.broadcasts} broadcasts, ${fan.window} in flight`;
      ctx.report('C_fan broadcast p50', fan.broadcastP50Ms, 'ms', { ratioTo: 'C_rtt_p50', note });
      ctx.report('C_fan broadcast p99', fan.broadcastP99Ms, 'ms', { ratioTo: 'C_rtt_p99' });
    }
    if (postgres) {
      ctx.log.info(
        `postgres ${postgres.version}, fsync=${postgres.fsync}, server synchronous_commit=` +
          `${postgres.synchronousCommit} (pgbench runs with synchronous_commit=on)`,
      );
    }
    for (const [figure, error] of Object.entries(calibration.errors))
      ctx.log.warn(`${figure} failed: ${error}`);
    if (Object.keys(calibration.errors).length > 0) throw new Error('some calibration figures failed');
  },
});
