#!/usr/bin/env bash
# The main job in one command: a shell in a network namespace networked by
# slipway fetches a page from a server on the host's loopback (10.0.2.2 is
# the host), resolves a name and pings the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
CGO_ENABLED=0 go build -o bin/slipway ./cmd/slipway

dir=$(mktemp -d)
trap 'kill $httpd 2>/dev/null || true; rm -rf "$dir"' EXIT
echo "hello from the host's loopback, through slipway" > "$dir/index.html"
port=8765
busybox httpd -f -p 127.0.0.1:$port -h "$dir" & httpd=$!
sleep 0.3

[ "$(id -u)" -eq 0 ] || [ -w /dev/net/tun ] || { echo "demo: /dev/net/tun is not writable; run as root or chmod 0666 /dev/net/tun" >&2; exit 1; }
echo "+ bin/slipway run -- sh -c '...'"
bin/slipway run -- sh -c "
  ip -4 -o addr show eth0
  curl -s http://10.0.2.2:$port/
  busybox ping -c1 10.0.2.2 | head -2
"
