/** Addresses: memberlist carries IPs as raw 4- or 16-byte strings; sockets want text. */

export interface Address {
  readonly host: string;
  readonly port: number;
}

export function formatAddress(address: Address): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** Parses `host:port` or `[v6]:port`; undefined when malformed. */
export function parseAddress(text: string): Address | undefined {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return undefined;
  return { host: match[1] as string, port };
}

export function ipToText(bytes: Uint8Array): string | undefined {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] as number) << 8) | (bytes[i + 1] as number)).toString(16));
    return groups.join(':');
  }
  return undefined;
}

const ipv4Pattern = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function ipToBytes(host: string): Uint8Array {
  if (ipv4Pattern.test(host)) return Uint8Array.from(host.split('.').map(Number));
  if (/^[0-9a-fA-F:]+$/.test(host) && host.includes(':')) {
    const [head = '', tail = ''] = host.split('::');
    const headGroups = head === '' ? [] : head.split(':');
    const tailGroups = tail === '' ? [] : tail.split(':');
    const missing = host.includes('::') ? 8 - headGroups.length - tailGroups.length : 0;
    const groups = [...headGroups, ...new Array<string>(missing).fill('0'), ...tailGroups];
    const bytes = new Uint8Array(16);
    groups.forEach((group, i) => {
      const value = parseInt(group, 16);
      bytes[i * 2] = value >> 8;
      bytes[i * 2 + 1] = value & 0xff;
    });
    return bytes;
  }
  throw new RangeError(`not an IP address: ${host}`);
}
