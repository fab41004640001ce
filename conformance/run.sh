#!/usr/bin/env bash
# Runs the official MCP conformance suite (server mode) against a real
# `vane serve --http` on a fresh workspace, with the committed baseline of
# fixture-only scenarios (baseline.yml, one reason each). Exit non-zero on
# any unexpected failure or stale baseline entry.
#
#   conformance/run.sh VANE_BINARY
#
# The suite wants Node 22 for one `fs.globSync`; on Node 20 that import is
# pointed at the `glob` package (installed beside it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
vane="$(realpath "${1:?usage: conformance/run.sh VANE_BINARY}")"
dir="${VANE_CONFORMANCE_CACHE:-$HOME/.cache/vane-conformance}"
version=0.1.16
if [ ! -f "$dir/.installed-$version" ]; then
  rm -rf "$dir"; mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    "@modelcontextprotocol/conformance@$version" glob@11 </dev/null
  touch "$dir/.installed-$version"
fi
entry="$dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
  sed -i 's/globSync as o,//' "$entry"
  grep -q 'from"glob"' "$entry" || sed -i '0,/import{/s//import{globSync as o}from"glob";import{/' "$entry"
fi

ws="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$ws"' EXIT
git -C "$ws" init -q
"$vane" --workspace "$ws" init >/dev/null
"$vane" --workspace "$ws" serve --http 127.0.0.1:0 2>"$ws/serve.log" &
pid=$!
url=""
for _ in $(seq 1 200); do
  url="$(grep -o 'http://127\.0\.0\.1:[0-9]*/mcp' "$ws/serve.log" | head -1 || true)"
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$ws/serve.log"; echo "vane serve --http did not start" >&2; exit 1; }
cd "$ws"
node "$entry" server --url "$url" --expected-failures "$here/baseline.yml"
