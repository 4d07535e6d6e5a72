#!/usr/bin/env bash
# Installs the Debian packages slipway's tests, demo and benchmark use, if
# any is missing. Needs root (CI runs as root) and Debian's apt.
set -euo pipefail

packages=(
	qemu-system-x86 busybox-static cpio xz-utils # the VM test guest
	dnsmasq-base                                 # a real DNS upstream
	iproute2 curl socat dnsutils util-linux     # namespace tests (ip, curl, socat, dig, setpriv, nsenter)
	rootlesskit uidmap passwd                   # slipway as rootlesskit's slirp4netns
	podman runc                                 # slipway as podman 4.3's slirp4netns (runc: crun cannot set rlimits here)
	iperf3 sockperf wrk tcpdump                 # benchmark and debugging
	slirp4netns passt                           # peers for the benchmark
	isc-dhcp-client ndisc6                      # real DHCPv6 and RA clients for the IPv6 tests
	libslirp-dev gcc libc6-dev                  # the header and compiler of slipway's libslirp.so.0 (make libslirp)
	openssh-server                              # a real sshd for gvproxy's -forward-sock
	python3 python3-scapy hping3                # hostile-guest tests (malformed frames, floods, port churn)
	dhcpcd-base procps                          # real clients: dhcpcd (v4 and v6); pkill
	nmap                                        # nping, for the differential probes
	thc-ipv6                                    # IPv6 attacks (atk6-*)
	dnsperf knot-dnsutils                       # DNS load and conformance (dnsperf, kdig)
	systemd                                     # socket activation (systemd-socket-activate) and unit checks (systemd-analyze)
)
if [ "${1:-}" = "--list" ]; then
	printf '%s\n' "${packages[@]}"
	exit 0
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
