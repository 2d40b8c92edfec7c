/**
 * `annal agent`: a node, configured by flags and/or a YAML file (`annal dev`, in dev-command.ts,
 * runs a local cluster of them). It shuts down gracefully on SIGINT/SIGTERM and exits 0; a second
 * signal exits at once (130). Security: mutual TLS with the Casbin ACL from the --server-tls-*
 * and --acl-* files, or --insecure; without either the agent refuses to start and prints the
 * `annal certs` command. SIGHUP re-reads the TLS and ACL files (they are watched as well).
 */
import { format } from 'node:util';
import { logVerbosity, setLogger, setLogVerbosity } from '@grpc/grpc-js';
import { hostname } from 'node:os';
import { Option, type Command } from 'commander';
import { pino } from 'pino';
import { Agent, type AgentConfig, type GossipProfile } from '../agent/index.js';
import { resolveNodeSecurity } from '../auth/index.js';
import type { FsyncPolicy } from '../storage/index.js';
import { Telemetry } from '../telemetry/index.js';
import { applyConfigFile } from './config-file.js';
import {
  parseAddress,
  parseAddressList,
  parseBytes,
  parseAgeMs,
  parseDurationMs,
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
  bootstrap?: boolean;
  removeFailedAfter?: number;
  retentionBytes?: number;
  retentionAge?: number;
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
  quarantineDamaged?: boolean;
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
    .option('--rpc-port <port>', 'port for gRPC clients and peers (0 picks a free one)', parsePort, 8400)
    .option('--bootstrap', 'start a new cluster with this node as its only voter, if the data dir holds none (default when no --start-join-addrs are given; ignored on a data dir that already belongs to a cluster)')
    .option('--remove-failed-after <duration>', 'remove a voter that gossip reports failed for this long, e.g. 10m (never below 3 voters; default: a failed voter stays)', parseDurationMs)
    .option('--retention-bytes <bytes>', 'keep at least this much of the log and drop older whole segments, e.g. 10GiB (the same on every replica; default: keep everything)', parseBytes)
    .option('--retention-age <duration>', 'drop whole segments whose newest record is older than this, e.g. 7d (default: keep everything)', parseAgeMs)
    .addOption(new Option('--fsync <policy>', 'when appends are acknowledged: always | never | interval:<ms>').argParser(parseFsync).default({ kind: 'always' }, 'always'))
    .addOption(new Option('--max-store-bytes <bytes>', 'segment store file limit').argParser(parseBytes).default(64 * MIB, '64MiB'))
    .addOption(new Option('--max-index-bytes <bytes>', 'segment index file limit').argParser(parseBytes).default(12 * MIB, '12MiB'))
    .option('--initial-offset <offset>', 'offset of the first record of a new log', parseUint, 0)
    .option('--quarantine-damaged', 'start even when damaged records cannot be delimited: keep the damaged range and serve its offsets as DATA_LOSS (see docs/storage.md)')
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

function agentConfig(flags: AgentFlags & { dataDir: string }, logger: AgentConfig['logger']): AgentConfig {
  return {
    dataDir: flags.dataDir,
    ...(flags.bootstrap === true ? { bootstrap: true } : {}),
    ...(flags.removeFailedAfter !== undefined ? { removeFailedAfterMs: flags.removeFailedAfter } : {}),
    ...(flags.retentionBytes !== undefined || flags.retentionAge !== undefined
      ? {
          retention: {
            ...(flags.retentionBytes !== undefined ? { bytes: flags.retentionBytes } : {}),
            ...(flags.retentionAge !== undefined ? { ageMs: flags.retentionAge } : {}),
          },
        }
      : {}),
    nodeName: flags.nodeName,
    bindAddr: flags.bindAddr,
    rpcPort: flags.rpcPort,
    log: {
      fsync: flags.fsync,
      maxStoreBytes: flags.maxStoreBytes,
      maxIndexBytes: flags.maxIndexBytes,
      initialOffset: flags.initialOffset,
      ...(flags.quarantineDamaged === true ? { quarantineDamaged: true } : {}),
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
    // Started by `annal dev`: stdin is a pipe from it, which closes when it dies, even by kill -9,
    // so a node never outlives the dev cluster that started it.
    if (process.env[STOP_ON_STDIN_EOF] === '1') {
      process.stdin.on('end', () => onSignal('SIGTERM'));
      process.stdin.resume();
    }
  });
}

/** Environment variable `annal dev` sets for its nodes (see shutdownSignal). */
export const STOP_ON_STDIN_EOF = 'ANNAL_STOP_ON_STDIN_EOF';

/** SIGHUP re-reads the certificate and ACL files (they are also watched). Returns the remover. */
function reloadOnSighup(agent: Agent, logger: pino.Logger): () => void {
  const onHangup = (): void => {
    logger.info({}, 'SIGHUP: re-reading TLS and ACL files');
    void agent.reloadSecurity();
  };
  process.on('SIGHUP', onHangup);
  return () => process.off('SIGHUP', onHangup);
}
