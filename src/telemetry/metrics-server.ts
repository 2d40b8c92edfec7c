/**
 * The Prometheus scrape endpoint: `GET /metrics` on `--metrics-addr` (plain HTTP, no auth: bind
 * it to a private interface). Anything else gets 404, other methods on /metrics get 405.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { InvalidArgumentError } from '../util/index.js';

/** Prometheus text format 0.0.4, the format the OTel Prometheus serializer writes. */
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface HostPort {
  /** '' means every interface (Go's `:9464`). */
  host: string;
  port: number;
}

/** Parses `host:port`, `[v6]:port` or `:port`; port 0 picks a free one. */
export function parseHostPort(text: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new InvalidArgumentError(`bad address ${JSON.stringify(text)}: want host:port, [ipv6]:port or :port`);
  }
  return { host: match[1] ?? match[2] ?? '', port };
}

export interface MetricsEndpoint {
  /** The bound `host:port`. */
  readonly address: string;
  /** `http://<address>/metrics`. */
  readonly url: string;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  addr: string;
  /** Renders the exposition; called once per scrape. */
  scrape: () => Promise<string>;
  logger: Logger;
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsEndpoint> {
  const { host, port } = parseHostPort(options.addr);
  const server = createServer((request, response) => handle(request, response, options));
  // Scrapers reuse connections; a short keep-alive keeps close() from waiting on idle ones.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    const refuse = (error: NodeJS.ErrnoException): void =>
      reject(new InvalidArgumentError(`cannot listen on ${options.addr} for metrics: ${error.code ?? error.message}`, { cause: error }));
    server.once('error', refuse);
    server.listen(port, host === '' ? undefined : host, () => {
      server.off('error', refuse);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const shownHost = host === '' ? '0.0.0.0' : bound.address;
  const address = shownHost.includes(':') ? `[${shownHost}]:${bound.port}` : `${shownHost}:${bound.port}`;
  return { address, url: `http://${address}/metrics`, close: () => closeServer(server) };
}

function handle(request: IncomingMessage, response: ServerResponse, options: MetricsServerOptions): void {
  const path = (request.url ?? '').split('?', 1)[0];
  if (path !== '/metrics') {
    response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
    return;
  }
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  options.scrape().then(
    (text) => response.writeHead(200, { 'content-type': CONTENT_TYPE }).end(request.method === 'HEAD' ? '' : text),
    (error: unknown) => {
      options.logger.error({ err: error }, 'metrics scrape failed');
      response.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
    },
  );
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
