/**
 * Process saturation signals (meter `annal.runtime`): event-loop delay, sampled by
 * perf_hooks.monitorEventLoopDelay and reset at each scrape so the values cover the scrape
 * interval, and V8 heap and RSS sizes.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { MeterSource } from './metrics.js';

const NS_PER_SECOND = 1e9;

/** Registers the runtime gauges; `stop()` ends the event-loop sampling. */
export class RuntimeMetrics {
  private readonly loopDelay: IntervalHistogram;

  /** `resolutionMs`: how often the event-loop delay is sampled (Node's default is 10 ms). */
  constructor(source: MeterSource, options: { resolutionMs?: number } = {}) {
    this.loopDelay = monitorEventLoopDelay({ resolution: options.resolutionMs ?? 10 });
    this.loopDelay.enable();
    const meter = source.meter('runtime');
    const lagP99 = meter.createObservableGauge('annal_runtime_event_loop_lag_p99_seconds', {
      description: '99th percentile of event-loop delay since the previous scrape.',
      unit: 's',
    });
    const lagMax = meter.createObservableGauge('annal_runtime_event_loop_lag_max_seconds', {
      description: 'Largest event-loop delay since the previous scrape.',
      unit: 's',
    });
    const heapUsed = meter.createObservableGauge('annal_runtime_heap_used_bytes', {
      description: 'V8 heap in use.',
      unit: 'By',
    });
    const heapTotal = meter.createObservableGauge('annal_runtime_heap_total_bytes', {
      description: 'V8 heap reserved.',
      unit: 'By',
    });
    const rss = meter.createObservableGauge('annal_runtime_resident_memory_bytes', {
      description: 'Resident set size of the process.',
      unit: 'By',
    });
    meter.addBatchObservableCallback(
      (result) => {
        // Before the first sample the histogram reports NaN-ish extremes; report 0 then.
        const sampled = this.loopDelay.count > 0;
        result.observe(lagP99, sampled ? this.loopDelay.percentile(99) / NS_PER_SECOND : 0);
        result.observe(lagMax, sampled ? this.loopDelay.max / NS_PER_SECOND : 0);
        this.loopDelay.reset();
        const memory = process.memoryUsage();
        result.observe(heapUsed, memory.heapUsed);
        result.observe(heapTotal, memory.heapTotal);
        result.observe(rss, memory.rss);
      },
      [lagP99, lagMax, heapUsed, heapTotal, rss],
    );
  }

  stop(): void {
    this.loopDelay.disable();
  }
}
