import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The Prometheus metrics of one service node, in a registry of its own (several nodes can live in one
 * process, as in tests). Served at `/metrics`.
 */
export class ServiceMetrics {
  /** The registry holding every metric below. */
  readonly registry: Registry;
  /** Open WebSocket connections. */
  readonly connections: Gauge;
  /** Searches this node's connections are following (one per connection with a search). */
  readonly searchers: Gauge;
  /** Matches made by this node's script calls. */
  readonly matches: Counter;
  /** Time from enqueue to match, per ticket, for the matches this node made. */
  readonly waitSeconds: Histogram;
  /** Searches ended without a match, by reason, for the endings this node's script calls made. */
  readonly ended: Counter<'reason'>;
  /** Error frames sent and internal failures, by code. */
  readonly errors: Counter<'code'>;
  /** Frames received, by type (invalid frames count as `invalid`). */
  readonly frames: Counter<'type'>;
  /** Matches written to Postgres by this node. */
  readonly persisted: Counter;
  /** Failed attempts to write matches to Postgres. */
  readonly persistFailures: Counter;
  /** 1 while the queue (Redis) is reachable. */
  readonly redisUp: Gauge;

  /**
   * @param prefix - prefix of every metric name
   * @param sources - values read when the metrics are collected: `searchers` counts the searches followed
   */
  constructor(prefix = 'matchmaker_', sources: { readonly searchers?: () => number } = {}) {
    const countSearchers = sources.searchers;
    const registry = new Registry();
    this.registry = registry;
    const registers = [registry];
    this.connections = new Gauge({
      name: `${prefix}connections`,
      help: 'Open WebSocket connections.',
      registers,
    });
    this.searchers = new Gauge({
      name: `${prefix}searchers`,
      help: 'Searches followed by connections of this node.',
      registers,
      ...(countSearchers
        ? {
            collect(this: Gauge) {
              this.set(countSearchers());
            },
          }
        : {}),
    });
    this.matches = new Counter({
      name: `${prefix}matches_total`,
      help: 'Matches made by this node.',
      registers,
    });
    this.waitSeconds = new Histogram({
      name: `${prefix}match_wait_seconds`,
      help: 'Time from enqueue to match, per matched ticket.',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.ended = new Counter({
      name: `${prefix}searches_ended_total`,
      help: 'Searches ended without a match, by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.errors = new Counter({
      name: `${prefix}errors_total`,
      help: 'Error frames sent and internal failures, by code.',
      labelNames: ['code'],
      registers,
    });
    this.frames = new Counter({
      name: `${prefix}frames_total`,
      help: 'Frames received, by type.',
      labelNames: ['type'],
      registers,
    });
    this.persisted = new Counter({
      name: `${prefix}persisted_matches_total`,
      help: 'Matches written to Postgres by this node.',
      registers,
    });
    this.persistFailures = new Counter({
      name: `${prefix}persist_failures_total`,
      help: 'Failed attempts to write a batch of matches to Postgres.',
      registers,
    });
    this.redisUp = new Gauge({ name: `${prefix}redis_up`, help: '1 while Redis is reachable.', registers });
  }

  /** The metrics in Prometheus text format. */
  async render(): Promise<string> {
    return await this.registry.metrics();
  }
}
