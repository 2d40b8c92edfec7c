/**
 * The run's report as one self-contained HTML page: the verdict, the counts, the violations, each
 * fault with its recovery time, and two plots over time with the fault windows shaded (as in
 * Jepsen's timeline and latency plots): the latency of every operation (log scale, coloured by
 * outcome) and the throughput of acknowledged produces per second.
 */
import type { CheckResult } from './checker.js';
import { operations, type HistoryEvent, type Operation } from './history.js';

export interface ReportInput {
  readonly title: string;
  readonly verdict: string;
  readonly replay: string;
  readonly events: readonly HistoryEvent[];
  readonly check: CheckResult;
}

const WIDTH = 1100;
const PLOT_HEIGHT = 260;
const MARGIN = { left: 60, right: 20, top: 10, bottom: 30 };
const POINTS_MAX = 20_000;
const FAULT_COLOURS = ['#f4cccc', '#d9ead3', '#cfe2f3', '#fff2cc', '#ead1dc', '#d0e0e3', '#fce5cd', '#d9d2e9'];
const OUTCOME_COLOURS: Record<string, string> = { 'produce ok': '#2e7d32', 'lin-read ok': '#1565c0', 'read ok': '#7cb342', unknown: '#ef6c00', fail: '#c62828' };

export function renderReport(input: ReportInput): string {
  const ops = operations(input.events).filter((op) => op.f !== 'tail');
  const endMs = Math.max(1, input.events.length > 0 ? input.events[input.events.length - 1]!.timeMs : 1);
  const faultNames = [...new Set(input.check.faults.map((f) => f.fault))];
  const colourOf = (fault: string): string => FAULT_COLOURS[faultNames.indexOf(fault) % FAULT_COLOURS.length]!;
  const x = (ms: number): number => MARGIN.left + (ms / endMs) * (WIDTH - MARGIN.left - MARGIN.right);
  const shading = (height: number): string =>
    input.check.faults
      .map((f) => `<rect x="${x(f.startMs).toFixed(1)}" y="${MARGIN.top}" width="${Math.max(1, x(f.stopMs) - x(f.startMs)).toFixed(1)}" height="${height - MARGIN.top - MARGIN.bottom}" fill="${colourOf(f.fault)}"><title>${escape(`${f.fault} ${f.targets.join(',')}: ${(f.startMs / 1000).toFixed(1)}-${(f.stopMs / 1000).toFixed(1)} s`)}</title></rect>` +
          // Named where the window is wide enough for its name (the legend names the colours).
          (x(f.stopMs) - x(f.startMs) >= f.fault.length * 5 ? `<text x="${(x(f.startMs) + 2).toFixed(1)}" y="${MARGIN.top + 10}" fill="#555" font-size="9">${escape(f.fault)}</text>` : ''))
      .join('');
  const timeAxis = (height: number): string => {
    const stepS = niceStep(endMs / 1000 / 10);
    const ticks: string[] = [];
    for (let s = 0; s * 1000 <= endMs; s += stepS) {
      ticks.push(`<line x1="${x(s * 1000)}" x2="${x(s * 1000)}" y1="${height - MARGIN.bottom}" y2="${height - MARGIN.bottom + 4}" stroke="#333"/><text x="${x(s * 1000)}" y="${height - MARGIN.bottom + 16}" text-anchor="middle">${s}s</text>`);
    }
    return `<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${height - MARGIN.bottom}" y2="${height - MARGIN.bottom}" stroke="#333"/>${ticks.join('')}`;
  };
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${escape(input.title)}</title>
<style>body{font:14px system-ui,sans-serif;margin:20px;color:#222}svg{font:11px system-ui,sans-serif;background:#fff}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee}
.pass{color:#2e7d32}.fail{color:#c62828}code{background:#f4f4f4;padding:1px 4px}.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}</style></head><body>
<h1>${escape(input.title)}</h1>
<p class="${input.check.valid ? 'pass' : 'fail'}"><b>${escape(input.verdict)}</b></p>
<p>Replay: <code>${escape(input.replay)}</code></p>
<h2>Latency</h2>
<div class="legend">${Object.entries(OUTCOME_COLOURS).map(([k, c]) => `<span><i style="background:${c}"></i>${k}</span>`).join('')}
${faultNames.map((f) => `<span><i style="background:${colourOf(f)}"></i>${escape(f)}</span>`).join('')}</div>
${latencyPlot(ops, endMs, x, shading, timeAxis)}
<h2>Throughput (acknowledged produces per second)</h2>
${throughputPlot(ops, endMs, x, shading, timeAxis)}
<h2>Operations</h2>
${countsTable(input.check)}
<h2>Faults</h2>
${faultsTable(input.check)}
<h2>Violations</h2>
${input.check.violations.length === 0 ? '<p>none</p>' : `<ul>${input.check.violations.map((v) => `<li><b>${v.kind}</b>: ${escape(v.message)}</li>`).join('')}</ul>`}
</body></html>
`;
}

type Scale = (ms: number) => number;

function latencyPlot(ops: readonly Operation[], endMs: number, x: Scale, shading: (h: number) => string, timeAxis: (h: number) => string): string {
  const height = PLOT_HEIGHT;
  const completed = ops.map((op) => ({ op, latencyMs: (Number.isFinite(op.completeMs) ? op.completeMs : endMs) - op.invokeMs }));
  const maxMs = Math.max(10, ...completed.map((c) => c.latencyMs));
  const minLog = Math.log10(0.5);
  const maxLog = Math.log10(maxMs * 1.2);
  const y = (ms: number): number => height - MARGIN.bottom - ((Math.log10(Math.max(0.5, ms)) - minLog) / (maxLog - minLog)) * (height - MARGIN.top - MARGIN.bottom);
  const every = Math.max(1, Math.ceil(completed.length / POINTS_MAX));
  const points = completed
    .filter((_, i) => i % every === 0)
    .map(({ op, latencyMs }) => {
      const key = op.status === 'ok' ? `${op.f} ok` : op.status;
      return `<circle cx="${x(op.invokeMs).toFixed(1)}" cy="${y(latencyMs).toFixed(1)}" r="1.6" fill="${OUTCOME_COLOURS[key] ?? '#999'}"/>`;
    })
    .join('');
  const ticks = [1, 10, 100, 1000, 10_000, 100_000]
    .filter((ms) => ms <= maxMs * 1.2)
    .map((ms) => `<line x1="${MARGIN.left - 4}" x2="${WIDTH - MARGIN.right}" y1="${y(ms)}" y2="${y(ms)}" stroke="#ddd"/><text x="${MARGIN.left - 6}" y="${y(ms) + 4}" text-anchor="end">${ms >= 1000 ? `${ms / 1000}s` : `${ms}ms`}</text>`)
    .join('');
  return `<svg width="${WIDTH}" height="${height}" xmlns="http://www.w3.org/2000/svg">${shading(height)}${ticks}${points}${timeAxis(height)}</svg>${every > 1 ? `<p>(every ${every}th operation shown)</p>` : ''}`;
}

function throughputPlot(ops: readonly Operation[], endMs: number, x: Scale, shading: (h: number) => string, timeAxis: (h: number) => string): string {
  const height = 200;
  const seconds = Math.ceil(endMs / 1000);
  const ok = new Array<number>(seconds + 1).fill(0);
  const failed = new Array<number>(seconds + 1).fill(0);
  for (const op of ops) {
    if (op.f !== 'produce') continue;
    if (op.status === 'ok') ok[Math.floor(op.completeMs / 1000)]! += 1;
    else failed[Math.floor(op.invokeMs / 1000)]! += 1;
  }
  const max = Math.max(1, ...ok, ...failed);
  const y = (n: number): number => height - MARGIN.bottom - (n / max) * (height - MARGIN.top - MARGIN.bottom);
  const line = (series: number[], colour: string): string =>
    `<polyline fill="none" stroke="${colour}" stroke-width="1.5" points="${series.map((n, s) => `${x(s * 1000 + 500).toFixed(1)},${y(n).toFixed(1)}`).join(' ')}"/>`;
  const ticks = [0, 0.5, 1]
    .map((f) => Math.round(max * f))
    .map((n) => `<line x1="${MARGIN.left - 4}" x2="${WIDTH - MARGIN.right}" y1="${y(n)}" y2="${y(n)}" stroke="#ddd"/><text x="${MARGIN.left - 6}" y="${y(n) + 4}" text-anchor="end">${n}/s</text>`)
    .join('');
  return `<svg width="${WIDTH}" height="${height}" xmlns="http://www.w3.org/2000/svg">${shading(height)}${ticks}${line(ok, OUTCOME_COLOURS['produce ok']!)}${line(failed, OUTCOME_COLOURS.fail!)}${timeAxis(height)}</svg>
<p class="legend"><span><i style="background:${OUTCOME_COLOURS['produce ok']}"></i>acknowledged</span><span><i style="background:${OUTCOME_COLOURS.fail}"></i>failed or unknown (by invoke time)</span></p>`;
}

function countsTable(check: CheckResult): string {
  const rows = Object.entries(check.counts).map(([f, c]) => `<tr><th>${f}</th><td>${c.ok}</td><td>${c.fail}</td><td>${c.unknown}</td></tr>`);
  return `<table><tr><th></th><th>ok</th><th>fail</th><th>unknown</th></tr>${rows.join('')}</table>
<p>Final log: ${check.logLength} records. Linearizability (log model): ${check.linearizability}. Availability outside faults that cost the majority: ${(check.availability * 100).toFixed(1)}%.</p>`;
}

function faultsTable(check: CheckResult): string {
  const rows = check.faults.map(
    (f) => `<tr><th>${escape(f.fault)}</th><td>${escape(f.targets.join(','))}</td><td>${(f.startMs / 1000).toFixed(1)}s</td><td>${((f.stopMs - f.startMs) / 1000).toFixed(1)}s</td><td>${f.majority ? 'yes' : 'no'}</td><td>${f.recoveryMs === undefined ? '-' : `${f.recoveryMs.toFixed(0)} ms`}</td></tr>`,
  );
  return `<table><tr><th>fault</th><th>targets</th><th>start</th><th>length</th><th>majority</th><th>recovery (heal to next ack)</th></tr>${rows.join('')}</table>`;
}

function niceStep(raw: number): number {
  for (const step of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600]) if (step >= raw) return step;
  return 1200;
}

function escape(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}
