#!/bin/bash
# Builds the slipway end-to-end test guest: a Debian kernel plus a small
# busybox initramfs that brings up virtio-net, takes a DHCP lease, runs
# /test.sh and powers off. See README.md beside this file.
#
# Output contract (read by test/vmtest): progress goes to stderr; the last
# lines on stdout are
#   KERNEL=/abs/path/kernel   (ELF vmlinux for PVH boot, or the bzImage)
#   INITRD=/abs/path/initrd.gz
#   BZIMAGE=/abs/path/bzImage (the kernel as Debian ships it, for iPXE)
#   KVER=<kernel release>
#
# The result is cached outside the repository, keyed on this script's
# content and the versions of every package that goes into it, so a second
# run is a no-op and a changed script (or a new Debian kernel) rebuilds.
set -Eeuo pipefail

log() { echo "build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
# set -e alone exits silently; say where, so a failed build is debuggable
# from the test's output.
trap 'log "error: line $LINENO: $BASH_COMMAND failed"' ERR

script_path=$(readlink -f "${BASH_SOURCE[0]}")
cache_root=${SLIPWAY_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slipway-guest}

# Modules that virtio-net needs, in load order (each needs the ones before
# it). Some kernels build a few of them in; those are simply skipped.
modules=(
	kernel/drivers/virtio/virtio_ring
	kernel/drivers/virtio/virtio
	kernel/drivers/virtio/virtio_pci_legacy_dev
	kernel/drivers/virtio/virtio_pci_modern_dev
	kernel/drivers/virtio/virtio_pci
	kernel/net/core/failover
	kernel/drivers/net/net_failover
	kernel/drivers/net/virtio_net
)

# Dynamically linked tools for benchmarks. Optional: a host without them
# still gets a working guest, just without these binaries.
bench_tools=(iperf3 sockperf)

# apt refuses to drop to its sandbox user when that user cannot write the
# download directory; as root we simply download as root.
apt_opts=(-q)
if [ "$(id -u)" = 0 ]; then
	apt_opts+=(-o APT::Sandbox::User=root)
fi

need() {
	command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it ($2)"
}
need apt-cache apt
need apt-get apt
need dpkg-deb dpkg
need cpio "apt-get install cpio"
need gzip "apt-get install gzip"
need flock "apt-get install util-linux"
need sha256sum "apt-get install coreutils"

# Kernel package: the one linux-image-amd64 currently depends on (its
# Depends pins the exact version), unless the caller pins a package. One
# apt-cache call: without a binary package cache (as in Docker-style
# images) each call costs about a second.
resolve_kernel() {
	local pkg=${SLIPWAY_GUEST_KERNEL_PKG:-linux-image-amd64}
	apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk -v pinned="${SLIPWAY_GUEST_KERNEL_PKG:-}" '
		pinned != "" && /^Version:/ { print pinned, $2; exit }
		pinned == "" && /^Depends:/ {
			for (i = 2; i <= NF; i++) if ($i ~ /^linux-image-[0-9]/) {
				v = $(i + 2); sub(/\).*/, "", v); print $i, v; exit
			}
		}'
}
kernel=$(resolve_kernel)
if [ -z "$kernel" ] && [ "$(id -u)" = 0 ]; then
	# A fresh machine has no package lists yet.
	log "apt-cache knows no kernel package; running apt-get update"
	apt-get -q update >&2 || die "apt-get update failed"
	kernel=$(resolve_kernel)
fi
[ -n "$kernel" ] || die "cannot resolve the kernel package with apt-cache (run apt-get update)"
kernel_pkg=${kernel% *}
kernel_ver=${kernel#* }

installed_version() {
	dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null |
		awk '$3 == "installed" { print $4 }'
}

# Everything that changes the guest goes into the cache key.
key=$(
	{
		cat "$script_path"
		echo "kernel $kernel_pkg $kernel_ver"
		echo "busybox-static $(installed_version busybox-static)"
		for t in "${bench_tools[@]}"; do
			echo "$t $(installed_version "$t")"
		done
	} | sha256sum | cut -c1-16
)
out=$cache_root/$key

emit() {
	echo "KERNEL=$out/kernel"
	echo "INITRD=$out/initrd.gz"
	echo "BZIMAGE=$out/bzImage"
	echo "KVER=$(cat "$out/kver")"
}

if [ -f "$out/ok" ]; then
	emit
	exit 0
fi

mkdir -p "$cache_root"
# Several test binaries may build at once (go test runs packages in
# parallel); one builds, the others wait and reuse its result.
exec 9>"$cache_root/.lock"
flock 9
if [ -f "$out/ok" ]; then
	emit
	exit 0
fi

log "building guest $key into $out (kernel $kernel_pkg $kernel_ver)"
work=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$work/deb" "$root"

download() {
	(cd "$work/deb" && apt-get "${apt_opts[@]}" download "$1" >&2) ||
		die "apt-get download $1 failed"
	ls "$work/deb/$1"_*.deb
}

# --- kernel and modules -----------------------------------------------------
kdeb=$(download "$kernel_pkg")
mkdir -p "$work/k"
# Extract only what the guest uses instead of the whole module tree.
dpkg-deb --fsys-tarfile "$kdeb" |
	tar -x -C "$work/k" --wildcards \
		'./boot/vmlinuz-*' \
		'./boot/config-*' \
		'*/modules/*/modules.builtin' \
		'*/modules/*/kernel/drivers/virtio/*' \
		'*/modules/*/kernel/net/core/failover.ko*' \
		'*/modules/*/kernel/drivers/net/net_failover.ko*' \
		'*/modules/*/kernel/drivers/net/virtio_net.ko*'
rm -f "$kdeb"
vmlinuz=$(ls "$work"/k/boot/vmlinuz-* | head -n1)
[ -f "$vmlinuz" ] || die "no vmlinuz in $kernel_pkg"
kver=${vmlinuz##*/vmlinuz-}
moddir=$(ls -d "$work"/k/lib/modules/"$kver" "$work"/k/usr/lib/modules/"$kver" 2>/dev/null | head -n1 || true)
[ -d "$moddir" ] || die "no modules for $kver in $kernel_pkg"

mkdir -p "$root/lib/modules" "$root/etc/slipway"
: >"$root/etc/slipway/modules"
for m in "${modules[@]}"; do
	name=${m##*/}
	src=$(ls "$moddir/$m".ko* 2>/dev/null | head -n1 || true)
	if [ -z "$src" ]; then
		if grep -q "^$m.ko" "$moddir/modules.builtin" 2>/dev/null; then
			log "module $name is built into $kver"
		else
			log "warning: module $name is neither a module nor built in; skipping"
		fi
		continue
	fi
	# busybox insmod cannot read compressed modules; newer Debian kernels
	# ship .ko.xz or .ko.zst.
	dst=$root/lib/modules/$name.ko
	case $src in
	*.ko) cp "$src" "$dst" ;;
	*.ko.xz) xz -dc "$src" >"$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$dst" ;;
	*.ko.zst) zstd -qdc "$src" >"$dst" ;;
	*) die "unknown module format: $src" ;;
	esac
	echo "$name.ko" >>"$root/etc/slipway/modules"
done

# --- busybox ----------------------------------------------------------------
if [ -n "$(installed_version busybox-static)" ]; then
	busybox=/bin/busybox
else
	log "busybox-static is not installed; using the package's binary"
	bdeb=$(download busybox-static)
	dpkg-deb -x "$bdeb" "$work/bb"
	busybox=$work/bb/bin/busybox
fi
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
cp "$busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list-full); do
	[ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# --- benchmark tools with their libraries -----------------------------------
copy_with_libs() {
	local bin=$1
	cp -L "$bin" "$root/usr/bin/"
	# ldd prints "name => /path (addr)" for libraries and "/path (addr)" for
	# the loader; copy each to the same path in the guest.
	ldd "$bin" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' |
		while read -r lib; do
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		done
}
for t in "${bench_tools[@]}"; do
	if p=$(command -v "$t"); then
		copy_with_libs "$p"
	else
		log "warning: $t is not installed on the host; the guest will lack it"
	fi
done

# --- configuration files ----------------------------------------------------
mkdir -p "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$root/run" \
	"$root/root" "$root/var/run" "$root/etc"
chmod 1777 "$root/tmp"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost
EOF
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
: >"$root/etc/resolv.conf"

cat >"$root/init" <<'EOF'
#!/bin/sh
# PID 1 of the slipway test guest. Kernel command line knobs:
#   slipway.dhcp=0   do not run DHCP on eth0
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root

# The initramfs has no /dev/console node (building one needs root), so the
# kernel started us without stdio; devtmpfs provides it.
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm

dhcp=1
for arg in $(cat /proc/cmdline); do
	case $arg in
	slipway.dhcp=0) dhcp=0 ;;
	esac
done

while read -r m; do
	[ -n "$m" ] || continue
	if ! err=$(insmod "/lib/modules/$m" 2>&1); then
		echo "slipway-guest: insmod $m failed: $err"
	fi
done </etc/slipway/modules

ip link set lo up

# virtio_net probes synchronously on insmod, but give a slow device a
# moment before deciding there is no NIC.
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
if [ -e /sys/class/net/eth0 ]; then
	ip link set eth0 up
	if [ $dhcp = 1 ]; then
		udhcpc -i eth0 -n -q -t 10 -T 1 -O mtu -O search -O domain \
			-s /udhcpc.script >/tmp/udhcpc.log 2>&1
		rc=$?
		if [ $rc != 0 ]; then
			cat /tmp/udhcpc.log
			echo "SLIPWAY-DHCP-FAILED rc=$rc"
		fi
	fi
else
	echo "slipway-guest: no eth0"
fi

echo "SLIPWAY-GUEST-READY"
rc=0
if [ -f /test.sh ]; then
	(cd / && exec /bin/sh /test.sh </dev/null)
	rc=$?
fi
echo "SLIPWAY-GUEST-DONE rc=$rc"
poweroff -f
EOF
chmod 755 "$root/init"

cat >"$root/udhcpc.script" <<'EOF'
#!/bin/sh
# busybox udhcpc hook: applies the lease to the interface, the routing
# table and /etc/resolv.conf, then reports it on the console as one
# "SLIPWAY-LEASE key=value ..." line (lists joined with commas).
join() { echo "$*" | tr ' ' ','; }

case $1 in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound | renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
	if [ -n "$mtu" ]; then
		ip link set dev "$interface" mtu "$mtu" ||
			echo "slipway-guest: cannot set mtu $mtu"
	fi
	if [ -n "$router" ]; then
		while ip route del default dev "$interface" 2>/dev/null; do :; done
		for r in $router; do
			ip route add default via "$r" dev "$interface" && break
		done
	fi
	{
		[ -n "$domain" ] && echo "domain $domain"
		[ -n "$search" ] && echo "search $search"
		for d in $dns; do echo "nameserver $d"; done
	} >/etc/resolv.conf
	[ -n "$hostname" ] && hostname "$hostname"
	# To the console directly: /init keeps udhcpc's own chatter in a log.
	echo "SLIPWAY-LEASE ip=$ip mask=$subnet prefix=$mask router=$(join $router)" \
		"dns=$(join $dns) mtu=$mtu domain=$domain search=$(join $search)" \
		"hostname=$hostname lease=$lease serverid=$serverid" >/dev/console
	;;
esac
exit 0
EOF
chmod 755 "$root/udhcpc.script"

# --- kernel image -----------------------------------------------------------
# QEMU boots an uncompressed ELF vmlinux straight through its PVH entry
# point. That skips the bzImage's real-mode setup and its in-guest
# decompression, which under TCG cost about 3.5 s of a 7.5 s boot. The
# payload is the first compressed stream (by magic) that unpacks to an ELF.
extract_vmlinux() {
	local img=$1 dst=$2 pair magic tool off
	for pair in 'fd377a585a00:xz' '28b52ffd:zstd' '1f8b0800:gzip'; do
		magic=$(echo "${pair%%:*}" | sed 's/../\\x&/g')
		tool=${pair#*:}
		command -v "$tool" >/dev/null 2>&1 || continue
		for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1 | head -n5); do
			# Trailing bytes after the stream make the tool complain;
			# the ELF magic check below is what counts.
			tail -c +$((off + 1)) "$img" | "$tool" -dc >"$dst" 2>/dev/null || true
			if [ "$(head -c4 "$dst" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
				return 0
			fi
		done
	done
	rm -f "$dst"
	return 1
}

# --- pack -------------------------------------------------------------------
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) |
	gzip -6 >"$work/initrd.gz"
mkdir -p "$work/out"
if grep -q '^CONFIG_PVH=y' "$work/k/boot/config-$kver" 2>/dev/null &&
	extract_vmlinux "$vmlinuz" "$work/out/kernel"; then
	log "kernel: uncompressed vmlinux (PVH boot)"
else
	log "kernel: bzImage (no PVH, or its payload could not be unpacked)"
	cp "$vmlinuz" "$work/out/kernel"
fi
# The bzImage as Debian ships it, for boot loaders that need one (the PXE
# test's iPXE cannot boot a bare vmlinux).
cp "$vmlinuz" "$work/out/bzImage"
mv "$work/initrd.gz" "$work/out/initrd.gz"
echo "$kver" >"$work/out/kver"
touch "$work/out/ok"
rm -rf "$out"
mv "$work/out" "$out"
log "built $out ($(du -sh "$out" | cut -f1))"
emit
