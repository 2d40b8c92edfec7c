/**
 * `annal certs`: a CA and server, peer, `root` client and `nobody` client certificates from the
 * CFSSL CSR JSON files, with no Go toolchain (auth/certs-command.ts does the work). Run again on
 * the same --out, it reuses the CA and renews the other certificates, which running nodes pick up.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError as FlagValueError, type Command } from 'commander';
import { formatCertsReport, PACKAGED_CONFIG_DIR, runCertsCommand } from '../auth/index.js';
import { AnnalError, InvalidArgumentError } from '../util/index.js';
import { parseNonEmpty } from './options.js';

interface CertsFlags {
  configDir?: string;
  out: string;
  hosts?: string[];
  newCa?: boolean;
}

export function addCertsCommand(program: Command): void {
  program
    .command('certs')
    .description('write a CA and server, peer, root and nobody client certificates from CFSSL CSR JSON (no Go toolchain needed)')
    .option('--config-dir <dir>', 'folder with ca-csr.json, ca-config.json, server-csr.json, client-csr.json, peer-csr.json (default: ./config if present, else the packaged one)', parseNonEmpty)
    .option('--out <dir>', 'where to write the PEM files', parseNonEmpty, 'certs')
    .option('--hosts <list>', 'comma-separated host names and IPs for the server and peer certificates (replaces the CSR hosts)', parseHosts)
    .option('--new-ca', 'make a new CA even if --out already has one')
    .action(async (flags: CertsFlags) => {
      const configDir = flags.configDir ?? (existsSync(join('config', 'ca-csr.json')) ? 'config' : PACKAGED_CONFIG_DIR);
      try {
        const result = await runCertsCommand({
          configDir,
          outDir: flags.out,
          ...(flags.hosts === undefined ? {} : { hosts: flags.hosts }),
          ...(flags.newCa === true ? { newCa: true } : {}),
        });
        process.stdout.write(formatCertsReport(result, configDir));
      } catch (error) {
        if (error instanceof AnnalError) throw error;
        throw new InvalidArgumentError(`cannot write certificates to ${flags.out}: ${(error as Error).message}`, { cause: error });
      }
    });
}

function parseHosts(text: string): string[] {
  const hosts = text.split(',').map((host) => host.trim()).filter((host) => host.length > 0);
  if (hosts.length === 0) throw new FlagValueError('--hosts needs at least one host name or IP address');
  return hosts;
}
