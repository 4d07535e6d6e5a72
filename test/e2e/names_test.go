package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/test/testenv"
)

// TestHostNames: the names podman, docker and lima users type for the
// host resolve to the gateway; --host-name replaces them, --dns-record
// adds names of its own.
func TestHostNames(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "busybox")
	dns := testenv.Dnsmasq(t)
	lookup := func(name string) string {
		return fmt.Sprintf(`echo "@%s=$(busybox nslookup %s 10.0.2.3 2>/dev/null | awk '/^Address/ && $NF !~ /:53$/ {a=$NF} END {print a}')"`, strings.ReplaceAll(name, ".", "_"), name)
	}
	res := runNS(t, []string{"--dns-upstream", dns.String(), "--no-ipv6"}, script(
		lookup("host.containers.internal"), lookup("host.docker.internal"), lookup("gateway.containers.internal"),
		lookup("host.lima.internal"), lookup("host.slipway.internal")))
	checkMarkers(t, testenv.Markers(res.Output), map[string]string{
		"host_containers_internal": "10.0.2.2", "host_docker_internal": "10.0.2.2", "gateway_containers_internal": "10.0.2.2",
		"host_lima_internal": "10.0.2.2", "host_slipway_internal": "10.0.2.2"}, "default ")

	res = runNS(t, []string{"--dns-upstream", dns.String(), "--no-ipv6", "--host-name", "myhost.internal", "--dns-record", "db.internal=10.0.2.99"}, script(
		lookup("myhost.internal"), lookup("host.docker.internal"), lookup("db.internal"), lookup("host.slipway.internal")))
	checkMarkers(t, testenv.Markers(res.Output), map[string]string{
		"myhost_internal": "10.0.2.2", "host_docker_internal": "", "db_internal": "10.0.2.99", "host_slipway_internal": "10.0.2.2"}, "--host-name ")
}

// TestDNSFollowsHost: with the host's resolvers as upstreams, changing
// /etc/resolv.conf (a VPN coming up, starting offline) changes where the
// guest's queries go, without a restart.
func TestDNSFollowsHost(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "unshare", "busybox", "dnsmasq")
	first := testenv.Dnsmasq53(t)
	second := testenv.Dnsmasq53(t, "--address=/other.example/192.0.2.77")
	conf := filepath.Join(publicDir(t), "resolv.conf")
	os.WriteFile(conf, []byte("# offline: no nameserver\n"), 0o644)
	flag := filepath.Join(publicDir(t), "switch")
	// The namespace's command asks until the answer comes from the
	// resolver it is waiting for; the test rewrites resolv.conf under it.
	sh := script(
		`ask() { busybox nslookup probe.`+testenv.TestDomain+` 10.0.2.3 2>/dev/null | awk '/^Address/ && $NF !~ /:53$/ {a=$NF} END {print a}'; }`,
		`echo "@offline=$(ask)"`,
		`touch `+flag+`.1`,
		`for i in $(seq 100); do [ -n "$(ask)" ] && break; sleep 0.2; done; echo "@first=$(ask)"`,
		`touch `+flag+`.2`,
		`for i in $(seq 100); do [ -e `+flag+`.3 ] && break; sleep 0.1; done`,
		`for i in $(seq 100); do [ "$(busybox nslookup other.example 10.0.2.3 2>/dev/null | awk '/^Address/ && $NF !~ /:53$/ {a=$NF} END {print a}')" = 192.0.2.77 ] && break; sleep 0.2; done`,
		`echo "@second=$(busybox nslookup other.example 10.0.2.3 2>/dev/null | awk '/^Address/ && $NF !~ /:53$/ {a=$NF} END {print a}')"`,
	)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" /etc/resolv.conf && exec "$@"`, conf, testenv.Slipway(t), "run", "--no-ipv6", "--", "sh", "-c", sh)
	var out testenv.Output
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFile := func(p string) {
		for i := 0; i < 300; i++ {
			if _, err := os.Stat(p); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("the namespace never got to %s:\n%s", p, out.String())
	}
	waitFile(flag + ".1")
	// A rewrite in place, as a resolver manager does it.
	os.WriteFile(conf, []byte("nameserver "+first.Addr().String()+"\n"), 0o644)
	waitFile(flag + ".2")
	// The second resolver answers a name the first does not know.
	os.WriteFile(conf, []byte("nameserver "+second.Addr().String()+"\n"), 0o644)
	os.WriteFile(flag+".3", nil, 0o644)
	cmd.Wait()
	checkMarkers(t, testenv.Markers(out.String()), map[string]string{"offline": "", "first": testenv.TestDomainAddr, "second": "192.0.2.77"}, "")
	if t.Failed() {
		t.Logf("output:\n%s", out.String())
	}
}

// TestPublishBothFamilies: -p PORT:80 without a host address answers on
// 127.0.0.1 and ::1, as docker's does; 0.0.0.0:PORT:80 only on IPv4.
func TestPublishBothFamilies(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "busybox", "curl")
	if exec.Command("sh", "-c", "ip -6 addr show lo | grep -q '::1'").Run() != nil {
		t.Skip("the host has no ::1")
	}
	www := publicDir(t)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("both\n"), 0o644)
	for _, c := range []struct {
		spec   string
		v4, v6 bool
	}{{"%d:80", true, true}, {"0.0.0.0:%d:80", true, false}} {
		port := testenv.FreePort(t, "tcp")
		ready := filepath.Join(publicDir(t), "ready")
		p := testenv.StartProcess(t, "slipway", exec.Command(testenv.Slipway(t), "run", "-p", fmt.Sprintf(c.spec, port), "--",
			"sh", "-c", "touch "+ready+"; exec busybox httpd -f -p 80 -h "+www))
		for i := 0; i < 200; i++ {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		get := func(host string) bool {
			for i := 0; i < 20; i++ {
				o, _ := exec.Command("curl", "-s", "-m", "2", "http://"+host+":"+strconv.Itoa(port)+"/").Output()
				if string(o) == "both\n" {
					return true
				}
				time.Sleep(50 * time.Millisecond)
			}
			return false
		}
		if got := get("127.0.0.1"); got != c.v4 {
			t.Errorf("-p %s: IPv4 %v, want %v", c.spec, got, c.v4)
		}
		if got := get("[::1]"); got != c.v6 {
			t.Errorf("-p %s: IPv6 %v, want %v", c.spec, got, c.v6)
		}
		p.Stop()
	}
}

// TestPIDAndLogFiles: --pid-file holds slipway's pid while it serves and
// is gone after; --log-file --log-format json gets JSON log lines.
func TestPIDAndLogFiles(t *testing.T) {
	testenv.RequireRoot(t)
	dir := publicDir(t)
	pidFile, logFile := filepath.Join(dir, "pid"), filepath.Join(dir, "log")
	p := testenv.StartProcess(t, "slipway", exec.Command(testenv.Slipway(t), "serve", "--listen", "stream:unix:"+filepath.Join(dir, "vm.sock"),
		"--pid-file", pidFile, "--log-file", logFile, "--log-format", "json", "--log-level", "info"))
	pid := pidFromFile(t, pidFile)
	if p.Cmd.Process.Pid != pid {
		t.Errorf("pid file says %d, slipway is %d", pid, p.Cmd.Process.Pid)
	}
	p.Stop()
	if _, err := os.Stat(pidFile); err == nil {
		t.Error("the pid file outlived slipway")
	}
	b, _ := os.ReadFile(logFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], `{"time":`) || !strings.Contains(string(b), `"msg":"serving"`) {
		t.Errorf("log file: %q", b)
	}
	if strings.Contains(p.Output(), "serving") {
		t.Errorf("the log went to stderr too: %q", p.Output())
	}
}

// TestDHCPStatic: --dhcp-static pins a guest's address by its MAC.
func TestDHCPStatic(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "busybox")
	res := runNS(t, []string{"--dhcp-static", "02:00:00:00:00:42=10.0.2.77", "--no-ipv6"}, script(
		`ip link set eth0 down; ip link set eth0 address 02:00:00:00:00:42; ip link set eth0 up`,
		`printf '#!/bin/sh\n[ "$1" = bound ] && echo "@ip=$ip" >/tmp/lease; exit 0\n' >/tmp/dhcp.sh; chmod +x /tmp/dhcp.sh`,
		`busybox udhcpc -i eth0 -n -q -f -s /tmp/dhcp.sh -t 5 -T 1 >/dev/null 2>&1`,
		`cat /tmp/lease`,
	))
	checkMarkers(t, testenv.Markers(res.Output), map[string]string{"ip": "10.0.2.77"}, "lease ")
}
