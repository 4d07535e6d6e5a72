#!/usr/bin/env bash
# Builds slipway's Debian package with dpkg-deb alone (make package runs
# it): the binary, man pages, shell completions, the drop-in names as
# links in /usr/libexec/slipway/, and the systemd units of packaging/.
#
#   scripts/package-deb.sh --binary bin/slipway --man bin/man \
#       --completions bin/completions --version V --arch GOARCH --out DIR
#
# V is slipway's version (v1.2.3, a Go pseudo-version, or dev) and becomes
# a Debian one; GOARCH becomes Debian's architecture name. Prints the
# .deb's path.
set -euo pipefail

usage() { echo "usage: $0 --binary FILE --man DIR --completions DIR --version V --arch GOARCH --out DIR" >&2; exit 2; }
binary= man= compl= version= goarch= out=
while [ $# -gt 0 ]; do
	[ $# -ge 2 ] || usage
	case "$1" in
	--binary) binary=$2 ;;
	--man) man=$2 ;;
	--completions) compl=$2 ;;
	--version) version=$2 ;;
	--arch) goarch=$2 ;;
	--out) out=$2 ;;
	*) echo "$0: unknown option $1" >&2; usage ;;
	esac
	shift 2
done
for v in binary man compl version goarch out; do
	[ -n "${!v}" ] || { echo "$0: --${v/compl/completions} is required" >&2; usage; }
done
[ -x "$binary" ] || { echo "$0: --binary $binary: not an executable file" >&2; exit 1; }
ls "$man"/slipway.1 >/dev/null || { echo "$0: --man $man: no slipway.1 (make man)" >&2; exit 1; }
for f in bash/slipway zsh/_slipway fish/slipway.fish; do
	[ -f "$compl/$f" ] || { echo "$0: --completions $compl: no $f (make completions)" >&2; exit 1; }
done
here=$(cd "$(dirname "$0")/.." && pwd)

# Debian's version rules: digits first, no '-' without a revision. v1.2.3
# is 1.2.3; a pre-release or Go pseudo-version (v0.0.0-2026...-abcdef)
# sorts before its release with '~'; a build without version control
# information is 0~dev.
deb_version=${version#v}
deb_version=${deb_version//-/\~}
case "$deb_version" in
[0-9]*) ;;
*) deb_version="0~${deb_version}" ;;
esac
if ! [[ "$deb_version" =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
	echo "$0: --version $version: cannot make a Debian version of it" >&2
	exit 1
fi
case "$goarch" in
amd64 | arm64 | riscv64 | s390x | mips64le) arch=$goarch ;;
386) arch=i386 ;;
arm) arch=armhf ;;
ppc64le) arch=ppc64el ;;
*) echo "$0: --arch $goarch: no Debian architecture for it" >&2; exit 1 ;;
esac

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# The package's ./ is the installed system's /: mktemp's 0700 would be
# dpkg's to apply there.
chmod 0755 "$root"
install -D -m 0755 "$binary" "$root/usr/bin/slipway"
# slipway acts as each of these when run under its name (README, "In
# place of ..."): callers that look for the program by name find it by
# putting this directory first on PATH, or in helper_binaries_dir.
install -d "$root/usr/libexec/slipway"
for name in slirp4netns pasta gvproxy bhyve-slirp-helper; do
	ln -s ../../bin/slipway "$root/usr/libexec/slipway/$name"
done
install -d "$root/usr/share/man/man1"
for page in "$man"/*.1; do
	gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
done
install -D -m 0644 "$compl/bash/slipway" "$root/usr/share/bash-completion/completions/slipway"
install -D -m 0644 "$compl/zsh/_slipway" "$root/usr/share/zsh/vendor-completions/_slipway"
install -D -m 0644 "$compl/fish/slipway.fish" "$root/usr/share/fish/vendor_completions.d/slipway.fish"
install -D -m 0644 "$here/packaging/systemd/slipway@.service" "$root/usr/lib/systemd/system/slipway@.service"
install -D -m 0644 "$here/packaging/systemd/slipway@.socket" "$root/usr/lib/systemd/system/slipway@.socket"
install -D -m 0644 "$here/LICENSE" "$root/usr/share/doc/slipway/copyright"
gzip -9n <"$here/README.md" >"$root/usr/share/doc/slipway/README.md.gz"
install -d "$root/DEBIAN"
cat >"$root/DEBIAN/control" <<CONTROL
Package: slipway
Version: $deb_version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-slipway maintainers <maintainers@slipway.invalid>}
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Section: net
Priority: optional
Description: userspace networking for virtual machines and network namespaces
 slipway gives a VM or a network namespace a network without root: DHCP,
 DNS, IPv4 and IPv6, TCP, UDP and ping to the host's network through host
 sockets, published ports and a control API. It speaks the frame
 protocols of QEMU, vfkit, krunkit, bhyve and User Mode Linux, and stands
 in for slirp4netns, pasta, gvproxy and bhyve-slirp-helper (links under
 /usr/libexec/slipway/). The systemd units slipway@.service and
 slipway@.socket run one network per instance name.
CONTROL
# Reproducible: every file dated SOURCE_DATE_EPOCH (make sets it to the
# commit's time) rather than the build's.
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
fi
mkdir -p "$out"
deb="$out/slipway_${deb_version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
