/**
 * `--config-file`: a YAML mapping whose keys are flag names (`data-dir: /var/lib/annal`, or the
 * camelCase `dataDir`). Values go through the same parsers as the flags; flags given on the
 * command line win. Unknown keys are errors, so a typo does not silently fall back to a default.
 * A list (`start-join-addrs: [a:1, b:2]`) is joined with commas for flags that take lists of addresses.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command, type Option } from 'commander';
import { parse as parseYaml } from 'yaml';
import { parseAddressList } from './options.js';
import { UsageError } from './usage-error.js';

export function applyConfigFile(command: Command, path: string): void {
  const settings = readSettings(path);
  for (const [key, raw] of Object.entries(settings)) {
    const option = command.options.find((o) => o.long === `--${key}` || o.attributeName() === key);
    if (option === undefined || option.long === '--config-file') {
      throw new UsageError(`config file ${path}: unknown setting "${key}"`);
    }
    const name = option.attributeName();
    if (command.getOptionValueSource(name) === 'cli') continue;
    command.setOptionValueWithSource(name, settingValue(option, raw, `config file ${path}: ${key}`), 'config');
  }
}

function readSettings(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    const firstLine = ((error as Error).message ?? '').split('\n')[0];
    throw new UsageError(`config file ${path} is not valid YAML: ${firstLine}`);
  }
  if (document === null || document === undefined) return {};
  if (typeof document !== 'object' || Array.isArray(document)) {
    throw new UsageError(`config file ${path} must be a mapping of flag names to values`);
  }
  return document as Record<string, unknown>;
}

function settingValue(option: Option, raw: unknown, where: string): unknown {
  if (option.isBoolean()) {
    if (raw === true || raw === 'true') return true;
    if (raw === false || raw === 'false') return false;
    throw new UsageError(`${where}: expected true or false`);
  }
  if (option.parseArg === parseAddressList && Array.isArray(raw) && raw.every((item) => typeof item === 'string')) raw = raw.join(',');
  if (raw === null || typeof raw === 'object') throw new UsageError(`${where}: expected a single value`);
  const text = String(raw);
  if (option.parseArg === undefined) return text;
  try {
    return option.parseArg(text, undefined);
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw new UsageError(`${where}: ${error.message}`);
    throw error;
  }
}
