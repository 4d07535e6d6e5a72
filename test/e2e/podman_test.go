package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// busyboxImage writes a tar of a root filesystem holding only the host's
// static busybox, a page and a CGI script printing the client's address:
// an image for `podman import`, with no registry.
func busyboxImage(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "www/cgi-bin", "etc", "tmp"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("no /bin/busybox (busybox-static) to build an image from")
	}
	os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755)
	os.Symlink("busybox", filepath.Join(root, "bin/sh"))
	os.WriteFile(filepath.Join(root, "www/index.html"), []byte("hello from the container\n"), 0o644)
	os.WriteFile(filepath.Join(root, "www/cgi-bin/ip"), []byte("#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n"), 0o755)
	tar := filepath.Join(dir, "rootfs.tar")
	mustOutput(t, "tar", "-C", root, "-cf", tar, ".")
	os.Chmod(tar, 0o644)
	return tar
}

// TestPodmanSlirp4netns: podman 4.3 (Debian 12's), rootless as an
// ordinary user with subordinate uid and gid ranges (as podman's users
// are: its user namespace maps 65,537 ids), with slipway as its slirp4netns (network_cmd_path in
// containers.conf) and podman's own port handler replaced by slirp4netns's
// API (`--network slirp4netns:port_handler=slirp4netns -p PORT:80`): the
// container of a locally imported busybox image reaches the host, resolves
// a name through a dnsmasq upstream, serves a page on the published port,
// and its server sees the client's real address. A second container takes
// podman's own port handler and IPv6.
func TestPodmanSlirp4netns(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "podman", "runc", "setpriv", "curl", "tar", "dnsmasq")
	u := testenv.NewSubIDUser(t)
	openTun(t)
	dir := publicDir(t)
	image := busyboxImage(t, dir)
	bin := publicCopy(t, "slirp4netns")
	conf := filepath.Join(dir, "containers.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("[engine]\nnetwork_cmd_path = %q\n", bin)), 0o644)
	// The runtime directory short: podman's API socket for slirp4netns
	// lies under it, named by a 64-digit id, within a unix socket's 108.
	xdg, err := os.MkdirTemp("", "p")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(xdg) })
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o700)
	for _, d := range []string{home, xdg} {
		os.Chown(d, u.UID, u.GID)
	}
	dns := testenv.Dnsmasq53(t)
	hostIP := testenv.HostAddr(t)
	onHost, _ := testenv.HTTPFileOn(t, hostIP.String()+":0", 16)
	port := testenv.FreePort(t, "tcp")
	// podman as that user, in a mount namespace whose /etc/resolv.conf names
	// the test's dnsmasq (the host's resolvers, as slipway and podman read
	// them).
	podman := func(args ...string) *exec.Cmd {
		argv := append([]string{"setpriv", fmt.Sprintf("--reuid=%d", u.UID), fmt.Sprintf("--regid=%d", u.GID), "--clear-groups",
			"env", "HOME=" + home, "XDG_RUNTIME_DIR=" + xdg, "CONTAINERS_CONF=" + conf, "podman", "--storage-driver", "vfs"}, args...)
		cmd := withResolv(t, dns.Addr(), argv...)
		cmd.Dir = dir
		return cmd
	}
	// podman's user namespace maps the user's subordinate ids, not only
	// its own uid.
	if m, err := podman("unshare", "cat", "/proc/self/uid_map").Output(); err != nil || len(strings.Fields(string(m))) != 6 {
		t.Fatalf("podman's user namespace (podman unshare): %q, %v; want the user's uid and its subordinate range", m, err)
	}
	out, err := podman("import", image, "localhost/slipway-bb:1").CombinedOutput()
	if err != nil {
		t.Fatalf("podman import: %v\n%s", err, out)
	}
	inside := strings.Join([]string{
		fmt.Sprintf(`/bin/busybox wget -q -O /www/host http://%s:%d/`, hostIP, onHost.Port()),
		fmt.Sprintf(`/bin/busybox nslookup probe.%s | /bin/busybox awk '/^Address/ {a=$NF} END {print a}' > /www/dns`, testenv.TestDomain),
		`exec /bin/busybox httpd -f -p 80 -h /www`,
	}, "; ")
	out, err = podman("run", "-d", "--name", "web", "--runtime", "runc", "--network", "slirp4netns:port_handler=slirp4netns",
		"-p", fmt.Sprintf("%d:80", port), "localhost/slipway-bb:1", "/bin/sh", "-c", inside).CombinedOutput()
	t.Cleanup(func() { podman("rm", "-f", "-t", "0", "web").Run() })
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	get := func(path string) string {
		b, _ := exec.Command("curl", "-s", "-m", "5", "--interface", hostIP.String(), fmt.Sprintf("http://%s:%d%s", hostIP, port, path)).Output()
		return strings.TrimSpace(string(b))
	}
	var page string
	for i := 0; i < 100 && page != "hello from the container"; i++ {
		page = get("/")
		time.Sleep(100 * time.Millisecond)
	}
	// busybox httpd listens on IPv6 and prints an IPv4 client mapped.
	client := strings.Trim(get("/cgi-bin/ip"), "[]")
	if a, err := netip.ParseAddr(client); err == nil {
		client = a.Unmap().String()
	}
	got := map[string]string{"page": page, "host": get("/host"), "dns": get("/dns"), "client": client}
	checkMarkers(t, got, map[string]string{"page": "hello from the container", "host": "hello from the host",
		"dns": testenv.TestDomainAddr, "client": hostIP.String()}, "podman's container: ")
	// podman passes --enable-sandbox --enable-seccomp: slipway's engine
	// is confined (as a uid of podman's user namespace, not root).
	engine := engineByExe(t, bin)
	checkConfined(t, engine, anyUser, false)
	st := testenv.ProcStatus(t, engine)
	if launcher, _ := os.ReadFile("/proc/" + st["PPid"] + "/cmdline"); !strings.Contains(string(launcher), "--enable-sandbox\x00") ||
		!strings.Contains(string(launcher), "--enable-seccomp\x00") {
		t.Errorf("podman's slirp4netns command line %q lacks --enable-sandbox --enable-seccomp", launcher)
	}
	if t.Failed() {
		logs, _ := podman("logs", "web").CombinedOutput()
		t.Logf("container logs:\n%s", logs)
	}

	// podman's defaults otherwise: its own port handler (rootlessport) in
	// front, and IPv6 asked for (enable_ipv6=true): the container gets
	// slirp4netns's IPv6 address and its page is published.
	port6 := testenv.FreePort(t, "tcp")
	out, err = podman("run", "-d", "--name", "web6", "--runtime", "runc", "--network", "slirp4netns:enable_ipv6=true",
		"-p", fmt.Sprintf("%d:80", port6), "localhost/slipway-bb:1", "/bin/sh", "-c",
		`/bin/busybox ip -6 -o addr show scope global > /www/v6; exec /bin/busybox httpd -f -p 80 -h /www`).CombinedOutput()
	t.Cleanup(func() { podman("rm", "-f", "-t", "0", "web6").Run() })
	if err != nil {
		t.Fatalf("podman run (rootlessport, IPv6): %v\n%s", err, out)
	}
	get6 := func(path string) string {
		b, _ := exec.Command("curl", "-s", "-m", "5", fmt.Sprintf("http://127.0.0.1:%d%s", port6, path)).Output()
		return strings.TrimSpace(string(b))
	}
	page = ""
	for i := 0; i < 100 && page != "hello from the container"; i++ {
		page = get6("/")
		time.Sleep(100 * time.Millisecond)
	}
	if v6 := get6("/v6"); page != "hello from the container" || !strings.Contains(v6, "fd00::") {
		t.Errorf("with rootlessport and enable_ipv6: page %q, the container's IPv6 %q", page, v6)
	}
}
