//go:build linux

package dhcp6

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/services/internal/netnstest"
	"github.com/slipway-net/slipway/services/internal/servicetest"
)

// serveOnLink runs a server on a real socket in the server namespace of a
// fresh veth link: port 547, joined to All_DHCP_Relay_Agents_and_Servers
// (ff02::1:2) on the link, as the stack's gateway will be.
func serveOnLink(t *testing.T) (*netnstest.Link, *Server) {
	t.Helper()
	l := netnstest.New(t, 1500)
	var conn *net.UDPConn
	err := l.Do(l.Server, func() error {
		ifi, err := net.InterfaceByName(netnstest.IfName)
		if err != nil {
			return err
		}
		conn, err = net.ListenMulticastUDP("udp6", ifi, &net.UDPAddr{IP: net.ParseIP("ff02::1:2"), Port: 547})
		return err
	})
	if err != nil {
		t.Fatalf("server socket: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	s := servicetest.Build(t, testConfig(&servicetest.Clock{}), func(c *Config) { c.Now = time.Now }, servicetest.NoLog(New))
	servicetest.Start(t, func(ctx context.Context) error { return s.Serve(ctx, conn) })
	return l, s
}

// dhclient runs ISC dhclient -6 in the foreground in the client namespace,
// with its own configuration, lease file and a hook script that records
// what it was told. It is skipped without dhclient (Debian package
// isc-dhcp-client).
type dhclient struct {
	t     *testing.T
	l     *netnstest.Link
	dir   string
	files []string // -cf, -lf, -pf, -sf arguments
}

func newDhclient(t *testing.T, l *netnstest.Link) *dhclient {
	t.Helper()
	if _, err := exec.LookPath("dhclient"); err != nil {
		t.Skip("dhclient is not installed (Debian package isc-dhcp-client)")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "dhclient.conf")
	script := filepath.Join(dir, "hook")
	write(t, conf, "request dhcp6.name-servers, dhcp6.domain-search;\n")
	// The hook appends each event's variables, one event per paragraph.
	write(t, script, "#!/bin/sh\nenv | grep -E '^(reason|new_|old_)' | sort >> "+filepath.Join(dir, "events")+"\necho >> "+filepath.Join(dir, "events")+"\n")
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	return &dhclient{t: t, l: l, dir: dir, files: []string{
		"-cf", conf, "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "-sf", script,
	}}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs dhclient in the foreground with extra flags until the test
// ends.
func (d *dhclient) start(flags ...string) {
	d.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := append(append([]string{"-6", "-d", "-v"}, flags...), d.files...)
	cmd := d.l.Command(ctx, d.l.Client, "dhclient", append(args, netnstest.IfName)...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if d.t.Failed() {
			d.t.Logf("dhclient output:\n%s", out)
		}
	})
}

// event waits for the hook to be called with reason and returns its
// variables. The limit only keeps a broken test from hanging.
func (d *dhclient) event(reason string) map[string]string {
	d.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(d.dir, "events"))
		for _, para := range strings.Split(string(b), "\n\n") {
			vars := map[string]string{}
			for _, line := range strings.Split(para, "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					vars[k] = v
				}
			}
			if vars["reason"] == reason {
				return vars
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("dhclient reported no %s; events so far:\n%s", reason, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDhclientStateful has ISC dhclient -6 lease an address (SOLICIT,
// ADVERTISE, REQUEST, REPLY over a real link) and then release it.
func TestDhclientStateful(t *testing.T) {
	l, s := serveOnLink(t)
	d := newDhclient(t, l)
	d.start()
	ev := d.event("BOUND6")
	if ev["new_ip6_address"] != first.String() || ev["new_ip6_prefixlen"] != "128" {
		t.Errorf("dhclient bound %s/%s, want %v/128", ev["new_ip6_address"], ev["new_ip6_prefixlen"], first)
	}
	if ev["new_dhcp6_name_servers"] != dns3.String() {
		t.Errorf("dhclient DNS servers %q, want %v", ev["new_dhcp6_name_servers"], dns3)
	}
	if !strings.Contains(ev["new_dhcp6_domain_search"], "example.org") {
		t.Errorf("dhclient search list %q, want example.org", ev["new_dhcp6_domain_search"])
	}
	if ev["new_max_life"] != "7200" || ev["new_preferred_life"] != "3600" {
		t.Errorf("dhclient lifetimes: valid %s preferred %s", ev["new_max_life"], ev["new_preferred_life"])
	}
	leases := s.Leases()
	if len(leases) != 1 || leases[0].Addr != first {
		t.Fatalf("server leases %+v", leases)
	}

	// dhclient -r stops the running one (by its pid file) and releases.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"-6", "-r", "-v"}, d.files...)
	if out, err := l.Command(ctx, l.Client, "dhclient", append(args, netnstest.IfName)...).CombinedOutput(); err != nil {
		t.Fatalf("dhclient -r: %v\n%s", err, out)
	}
	if n := len(s.Leases()); n != 0 {
		t.Fatalf("%d leases after dhclient released: %+v (stats %+v)", n, s.Leases(), s.Stats())
	}
}

// TestDhclientStateless has dhclient -6 -S ask for DNS configuration only
// (INFORMATION-REQUEST).
func TestDhclientStateless(t *testing.T) {
	l, s := serveOnLink(t)
	d := newDhclient(t, l)
	d.start("-S")
	// dhclient reports a stateless exchange's result as RENEW6.
	ev := d.event("RENEW6")
	if ev["new_dhcp6_name_servers"] != dns3.String() || !strings.Contains(ev["new_dhcp6_domain_search"], "example.org") {
		t.Errorf("dhclient -S got DNS %q search %q", ev["new_dhcp6_name_servers"], ev["new_dhcp6_domain_search"])
	}
	if _, ok := ev["new_ip6_address"]; ok || len(s.Leases()) != 0 {
		t.Errorf("a stateless exchange handed out an address: %v, %+v", ev["new_ip6_address"], s.Leases())
	}
}
