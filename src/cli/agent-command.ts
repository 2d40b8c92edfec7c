/**
 * `annal agent` (a node, configured by flags and/or a YAML file) and `annal dev` (a node on an
 * embedded default for trying annal out: ./annal-data, port 8400 or the next free one).
 * Both shut down gracefully on SIGINT/SIGTERM and exit 0; a second signal exits at once (130).
 * Security: mutual TLS with the Casbin ACL from the --server-tls-* and --acl-* files, or
 * --insecure; without either the agent refuses to start and prints the `annal certs` command.
 * `annal dev` makes its certificates on first run in <data-dir>/certs. SIGHUP re-reads the TLS
 * and ACL files (they are watched as well).
 */
import { createServer } from 'node:net';
import { format } from 'node:util';
import { logVerbosity, setLogger, setLogVerbosity } from '@grpc/grpc-js';
import { hostname } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { pino } from 'pino';
import { Agent, type AgentConfig, type GossipProfile } from '../agent/index.js';
import {
  clientTlsFlags,
  ensureDevCertificates,
  PACKAGED_CONFIG_DIR,
  resolveNodeSecurity,
  type DevCertificates,
  type NodeSecurity,
} from '../auth/index.js';
import { AnnalError, InvalidArgumentError } from '../util/index.js';
import type { FsyncPolicy } from '../storage/index.js';
import { Telemetry } from '../telemetry/index.js';
import { applyConfigFile } from './config-file.js';
import {
  parseAddress,
  parseAddressList,
  parseBytes,
  parseEncryptKey,
  parseFsync,
  parseHttpUrl,
  parseLogLevel,
  parseNonEmpty,
  parsePort,
  parseRatio,
  parseUint,
} from './options.js';
import { UsageError } from './usage-error.js';

const MIB = 1024 * 1024;

interface AgentFlags {
  configFile?: string;
  dataDir?: string;
  nodeName: string;
  bindAddr: string;
  advertiseAddr?: string;
  startJoinAddrs: string[];
  gossipEncryptKey?: string;
  gossipProfile: GossipProfile;
  rpcPort: number;
  fsync: FsyncPolicy;
  maxStoreBytes: number;
  maxIndexBytes: number;
  initialOffset: number;
  maxRecordBytes: number;
  logLevel: string;
  insecure?: boolean;
  serverTlsCertFile?: string;
  serverTlsKeyFile?: string;
  serverTlsCaFile?: string;
  peerTlsCertFile?: string;
  peerTlsKeyFile?: string;
  peerTlsCaFile?: string;
  aclModelFile?: string;
  aclPolicyFile?: string;
  metricsAddr?: string;
  otlpEndpoint?: string;
  traceSampleRatio?: number;
}

export function addAgentCommands(program: Command): void {
  program
    .command('agent')
    .description('run an annal node')
    .option('--config-file <path>', 'YAML file that may set any of these flags (flags given here win)')
    .option('--data-dir <dir>', "directory for this node's data (required)", parseNonEmpty)
    .option('--node-name <name>', 'unique node id', parseNonEmpty, hostname())
    .option('--bind-addr <host:port>', 'gossip address, UDP and TCP (port 0 picks one); RPC listens on its host', parseAddress, '127.0.0.1:8401')
    .option('--advertise-addr <ip:port>', 'gossip address other members reach this node at (default: the bind address; a private IPv4 for 0.0.0.0)', parseAddress)
    .addOption(
      new Option('--start-join-addrs <host:port,...>', "members' gossip addresses to join at start (repeatable or comma-separated; none on the first node)")
        .argParser(parseAddressList)
        .default([], 'none'),
    )
    .option('--gossip-encrypt-key <base64>', "encrypt gossip with this key (serf's -encrypt: base64 of 16, 24 or 32 bytes; `serf keygen` makes one)", parseEncryptKey)
    .addOption(
      new Option('--gossip-profile <profile>', "gossip timings, as serf's -profile: lan (serf's defaults) or local (loopback: faster failure detection)")
        .choices(['lan', 'local'])
        .default('lan'),
    )
    .option('--rpc-port <port>', 'port for gRPC clients (0 picks a free one)', parsePort, 8400)
    .addOption(new Option('--fsync <policy>', 'when appends are acknowledged: always | never | interval:<ms>').argParser(parseFsync).default({ kind: 'always' }, 'always'))
    .addOption(new Option('--max-store-bytes <bytes>', 'segment store file limit').argParser(parseBytes).default(64 * MIB, '64MiB'))
    .addOption(new Option('--max-index-bytes <bytes>', 'segment index file limit').argParser(parseBytes).default(12 * MIB, '12MiB'))
    .option('--initial-offset <offset>', 'offset of the first record of a new log', parseUint, 0)
    .addOption(new Option('--max-record-bytes <bytes>', 'largest record accepted').argParser(parseBytes).default(MIB, '1MiB'))
    .option('--log-level <level>', 'fatal | error | warn | info | debug | trace | silent', parseLogLevel, 'info')
    .option('--server-tls-cert-file <path>', "this node's TLS certificate (PEM), watched for replacement", parseNonEmpty)
    .option('--server-tls-key-file <path>', 'its private key (PEM)', parseNonEmpty)
    .option('--server-tls-ca-file <path>', 'CA certificate(s) (PEM) that client certificates must chain to', parseNonEmpty)
    .option('--peer-tls-cert-file <path>', 'client certificate (PEM) for calls to other nodes', parseNonEmpty)
    .option('--peer-tls-key-file <path>', 'its private key (PEM)', parseNonEmpty)
    .option('--peer-tls-ca-file <path>', "CA certificate(s) (PEM) to verify other nodes' server certificates", parseNonEmpty)
    .option('--acl-model-file <path>', 'Casbin model (config/model.conf)', parseNonEmpty)
    .option('--acl-policy-file <path>', 'Casbin policy (config/policy.csv), watched for changes', parseNonEmpty)
    .option('--metrics-addr <host:port>', 'serve Prometheus metrics at http://<host:port>/metrics (off unless set; port 0 picks one)', parseAddress)
    .option('--otlp-endpoint <url>', 'export traces over OTLP/HTTP to <url>/v1/traces (default: $OTEL_EXPORTER_OTLP_ENDPOINT; off if neither)', parseHttpUrl)
    .option('--trace-sample-ratio <ratio>', 'fraction of new traces recorded, 0 to 1 (callers that sent a sampled traceparent are always traced)', parseRatio, 1)
    .option('--insecure', 'serve plaintext gRPC without TLS or access control (local development only)')
    .action(async (_flags: AgentFlags, command: Command) => {
      const configFile = command.getOptionValue('configFile') as string | undefined;
      if (configFile !== undefined) applyConfigFile(command, configFile);
      await runAgent(command.opts<AgentFlags>());
    });

  program
    .command('dev')
    .description('run one node on an embedded default with mutual TLS (certificates made on first run) and print how to use it (what `npm start` runs)')
    .option('--data-dir <dir>', 'data directory', parseNonEmpty, 'annal-data')
    .option('--rpc-port <port>', 'first port to try; the next free one is used if it is taken', parsePort, 8400)
    .option('--log-level <level>', 'fatal | error | warn | info | debug | trace | silent', parseLogLevel, 'warn')
    .option('--insecure', 'plaintext, no TLS and no access control')
    .option('--metrics-port <port>', 'first port to try for http://127.0.0.1:<port>/metrics; the next free one is used if taken', parsePort, 9464)
    .action(async (flags: DevFlags) => runDev(flags));
}

async function runAgent(flags: AgentFlags): Promise<void> {
  if (flags.dataDir === undefined) throw new UsageError('--data-dir is required (or data-dir in --config-file)');
  const security = resolveNodeSecurity(flags);
  if (!security.ok) throw new UsageError(security.message);
  const logger = makeLogger(flags.logLevel, flags.nodeName);
  if (security.value.type === 'insecure') {
    logger.warn(
      { bindAddr: flags.bindAddr, rpcPort: flags.rpcPort },
      'INSECURE: plaintext gRPC with no TLS and no access control; anyone who can reach the RPC port can read and write the log',
    );
  }
  const signal = shutdownSignal(logger);
  const telemetry = await startTelemetry(logger, flags.nodeName, flags);
  try {
    const agent = await Agent.start({
      ...agentConfig({ ...flags, dataDir: flags.dataDir }, logger),
      gossip: {
        startJoinAddrs: flags.startJoinAddrs,
        profile: flags.gossipProfile,
        ...(flags.gossipEncryptKey !== undefined ? { encryptKey: flags.gossipEncryptKey } : {}),
        ...(flags.advertiseAddr !== undefined ? { advertiseAddr: flags.advertiseAddr } : {}),
      },
      security: security.value,
      telemetry,
    });
    const stopReloads = reloadOnSighup(agent, logger);
    await signal;
    stopReloads();
    await agent.shutdown();
  } finally {
    await telemetry.shutdown();
  }
}

/** Metrics endpoint and trace export per the flags; logs where they went. */
async function startTelemetry(
  logger: pino.Logger,
  nodeName: string,
  flags: { metricsAddr?: string; otlpEndpoint?: string; traceSampleRatio?: number },
): Promise<Telemetry> {
  const telemetry = await Telemetry.start({
    logger,
    nodeName,
    ...(flags.metricsAddr !== undefined ? { metricsAddr: flags.metricsAddr } : {}),
    ...(flags.otlpEndpoint !== undefined ? { otlpEndpoint: flags.otlpEndpoint } : {}),
    ...(flags.traceSampleRatio !== undefined ? { traceSampleRatio: flags.traceSampleRatio } : {}),
  });
  if (telemetry.metricsEndpoint) logger.info({ url: telemetry.metricsEndpoint.url }, 'serving Prometheus metrics');
  if (telemetry.tracingEnabled) logger.info({ url: telemetry.traceExportUrl, sampleRatio: flags.traceSampleRatio ?? 1 }, 'exporting traces');
  return telemetry;
}

interface DevFlags {
  dataDir: string;
  rpcPort: number;
  logLevel: string;
  insecure?: boolean;
  metricsPort: number;
}

async function runDev(flags: DevFlags): Promise<void> {
  const port = await firstFreePort('127.0.0.1', flags.rpcPort, 20);
  const metricsPort = await firstFreePort('127.0.0.1', flags.metricsPort, 20);
  const logger = makeLogger(flags.logLevel, 'dev');
  const signal = shutdownSignal(logger);
  const telemetry = await startTelemetry(logger, 'dev', { metricsAddr: `127.0.0.1:${metricsPort}` });
  try {
    await runDevAgent(flags, { port, logger, signal, telemetry });
  } finally {
    await telemetry.shutdown();
  }
}

async function runDevAgent(
  flags: DevFlags,
  run: { port: number; logger: pino.Logger; signal: Promise<NodeJS.Signals>; telemetry: Telemetry },
): Promise<void> {
  const { port, logger, telemetry } = run;
  const dataDir = resolve(flags.dataDir);
  const dev = flags.insecure === true ? undefined : await devSecurity(join(dataDir, 'certs'));
  const agent = await Agent.start({
    ...agentConfig(
      {
        dataDir,
        nodeName: 'dev',
        bindAddr: '127.0.0.1:0',
        startJoinAddrs: [],
        gossipProfile: 'lan',
        rpcPort: port,
        fsync: { kind: 'always' },
        maxStoreBytes: 64 * MIB,
        maxIndexBytes: 12 * MIB,
        initialOffset: 0,
        maxRecordBytes: MIB,
        logLevel: flags.logLevel,
      },
      logger,
    ),
    gossip: { startJoinAddrs: [] },
    security: dev?.security ?? { type: 'insecure' },
    telemetry,
  });
  process.stdout.write(devBanner(agent.rpcAddress, dataDir, agent.log.nextOffset(), dev, telemetry.metricsEndpoint?.url));
  const stopReloads = reloadOnSighup(agent, logger);
  await run.signal;
  stopReloads();
  await agent.shutdown();
}

function agentConfig(flags: AgentFlags & { dataDir: string }, logger: AgentConfig['logger']): AgentConfig {
  return {
    dataDir: flags.dataDir,
    nodeName: flags.nodeName,
    bindAddr: flags.bindAddr,
    rpcPort: flags.rpcPort,
    log: {
      fsync: flags.fsync,
      maxStoreBytes: flags.maxStoreBytes,
      maxIndexBytes: flags.maxIndexBytes,
      initialOffset: flags.initialOffset,
    },
    maxRecordBytes: flags.maxRecordBytes,
    logger,
  };
}

function makeLogger(level: string, nodeName: string): pino.Logger {
  const logger = pino({ level, base: { node: nodeName } }, pino.destination({ fd: 2, sync: true }));
  // grpc-js's own log lines (see main.ts) go into the node's log at debug level.
  if (logger.isLevelEnabled('debug')) {
    setLogVerbosity(logVerbosity.DEBUG);
    setLogger({ error: (...args: unknown[]) => logger.debug({ component: 'grpc-js' }, format(...args)) });
  }
  return logger;
}

/**
 * Installs the SIGINT/SIGTERM handlers before start-up begins (a signal during start-up then
 * shuts the node down right after it started) and resolves with the first signal. A second
 * signal exits at once.
 */
function shutdownSignal(logger: pino.Logger): Promise<NodeJS.Signals> {
  return new Promise<NodeJS.Signals>((resolveSignal) => {
    let received: NodeJS.Signals | undefined;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (received !== undefined) {
        logger.error({ signal }, 'second signal: exiting without finishing shutdown');
        process.exit(130);
      }
      received = signal;
      logger.info({ signal }, 'signal received');
      resolveSignal(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

interface DevSecurity {
  security: NodeSecurity;
  certs: DevCertificates;
}

/** mTLS for `annal dev`: certificates in `certsDir` (made on first run) and the packaged ACL. */
async function devSecurity(certsDir: string): Promise<DevSecurity> {
  let certs: DevCertificates;
  try {
    certs = await ensureDevCertificates(certsDir);
  } catch (error) {
    if (error instanceof AnnalError) throw error;
    throw new InvalidArgumentError(`cannot make certificates in ${certsDir}: ${(error as Error).message}`, { cause: error });
  }
  const { files } = certs;
  return {
    certs,
    security: {
      type: 'mtls',
      server: { certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert },
      peer: { certFile: files.peerCert, keyFile: files.peerKey, caFile: files.caCert },
      acl: { modelFile: join(PACKAGED_CONFIG_DIR, 'model.conf'), policyFile: join(PACKAGED_CONFIG_DIR, 'policy.csv') },
    },
  };
}

/** SIGHUP re-reads the certificate and ACL files (they are also watched). Returns the remover. */
function reloadOnSighup(agent: Agent, logger: pino.Logger): () => void {
  const onHangup = (): void => {
    logger.info({}, 'SIGHUP: re-reading TLS and ACL files');
    void agent.reloadSecurity();
  };
  process.on('SIGHUP', onHangup);
  return () => process.off('SIGHUP', onHangup);
}

function devBanner(
  address: string,
  dataDir: string,
  nextOffset: number,
  dev: DevSecurity | undefined,
  metricsUrl: string | undefined,
): string {
  const script = resolve(process.argv[1] ?? 'dist/src/cli/main.js');
  const fromHere = relative(process.cwd(), script);
  const cli = `node ${fromHere.startsWith('..') ? script : fromHere}`;
  const flags = dev === undefined ? `--insecure --addr ${address}` : `--addr ${address} ${clientTlsFlags(dev.certs.files)}`;
  const securityLine =
    dev === undefined
      ? '  plaintext: no TLS and no access control, for local use only'
      : `  mutual TLS: certificates in ${dirname(dev.certs.files.caCert)}${dev.certs.created ? ' (made now)' : ''}; the flags below authenticate as root (nobody-client.pem is denied)`;
  return [
    `annal dev: one node serving log.v1.Log on ${address}`,
    `  data: ${dataDir} (${nextOffset} records so far; kept between runs)`,
    securityLine,
    ...(metricsUrl ? [`  metrics: ${metricsUrl}`] : []),
    '',
    `  produce:  ${cli} produce ${flags} hello world`,
    `            printf 'a\\nb\\n' | ${cli} produce ${flags}`,
    `  consume:  ${cli} consume ${flags} --offset 0`,
    `  follow:   ${cli} consume ${flags} --offset 0 --follow`,
    `  servers:  ${cli} servers ${flags}`,
    `  members:  ${cli} members ${flags}`,
    '',
    'Ctrl-C stops the node.',
    '',
  ].join('\n');
}

/** The first port from `first` on (at most `attempts`) that `host` can listen on now. */
async function firstFreePort(host: string, first: number, attempts: number): Promise<number> {
  for (let port = first; port < first + attempts && port <= 65535; port++) {
    const free = await new Promise<boolean>((resolveFree) => {
      const probe = createServer();
      probe.once('error', () => resolveFree(false));
      probe.listen(port, host, () => probe.close(() => resolveFree(true)));
    });
    if (free) return port;
  }
  throw new UsageError(`no free port in ${first}..${first + attempts - 1} on ${host}; pass --rpc-port`);
}
