#!/usr/bin/env bash
# Makes annal's certificates with the real CFSSL tools (Debian package golang-cfssl) from the
# same JSON files that `annal certs` reads, writing the same file names:
#   ca.pem ca-key.pem server.pem server-key.pem peer.pem peer-key.pem
#   root-client.pem root-client-key.pem nobody-client.pem nobody-client-key.pem
# Usage: scripts/gencert-cfssl.sh [--config-dir config] [--out DIR] [--hosts h1,h2]
# root and nobody come from client-csr.json with its CN replaced (the packaged cfssl 1.2 has no
# -cn flag), so the CSR is rewritten and piped to `cfssl gencert ... -`.
set -euo pipefail

config_dir=config
out_dir=.
hosts=
while [ $# -gt 0 ]; do
  case "$1" in
    --config-dir) config_dir=$2; shift 2 ;;
    --out) out_dir=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    *) echo "gencert-cfssl: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
for tool in cfssl cfssljson node; do
  command -v "$tool" >/dev/null || { echo "gencert-cfssl: '$tool' not found (apt-get install golang-cfssl)" >&2; exit 1; }
done
config_dir=$(cd "$config_dir" && pwd)
mkdir -p "$out_dir"
cd "$out_dir"
umask 077

with_cn() { # print CSR JSON $1 with its CN set to $2
  node -e 'const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); c.CN = process.argv[2]; process.stdout.write(JSON.stringify(c));' "$1" "$2"
}
sign() { # sign <profile> <csr-json-file or -> <bare-name> [hostname override]
  local extra=()
  if [ -n "${4:-}" ]; then extra=(-hostname="$4"); fi
  cfssl gencert -loglevel=3 -ca=ca.pem -ca-key=ca-key.pem -config="$config_dir/ca-config.json" \
    -profile="$1" "${extra[@]}" "$2" | cfssljson -bare "$3"
}

cfssl gencert -loglevel=3 -initca "$config_dir/ca-csr.json" | cfssljson -bare ca
sign server "$config_dir/server-csr.json" server "$hosts"
sign peer "$config_dir/peer-csr.json" peer "$hosts"
with_cn "$config_dir/client-csr.json" root | sign client - root-client
with_cn "$config_dir/client-csr.json" nobody | sign client - nobody-client
rm -f ./*.csr
chmod 644 ./*.pem && chmod 600 ./*-key.pem
echo "gencert-cfssl: wrote CA, server, peer, root-client and nobody-client certificates to $(pwd)"
