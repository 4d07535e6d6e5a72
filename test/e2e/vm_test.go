package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// streamNIC is the QEMU command line a user gives to connect a VM to
// `slipway serve --listen stream:unix:PATH`.
func streamNIC(path, mac string) []string {
	return []string{
		"-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path=" + path,
		"-device", "virtio-net-pci,netdev=n0,mac=" + mac,
	}
}

func TestServeQEMUGuest(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	dns := testenv.Dnsmasq(t)
	web, sum := testenv.HTTPFile(t, 50<<20)
	sock := filepath.Join(t.TempDir(), "vm.sock")
	srv := testenv.Serve(t, "--listen", "stream:unix:"+sock, "--dns-upstream", dns.String(),
		"--domain", "lab.example", "--dns-search", "lab.example", "--hostname", "vm1")
	nic := streamNIC(sock, "52:54:00:12:34:56")
	res := vmtest.Run(t, guest, vmtest.Options{
		Netdev: nic,
		Script: strings.Join([]string{
			`echo "@dns=$(nslookup a.` + testenv.TestDomain + ` 2>/dev/null | awk '/^Address/ && !/#53/ {print $NF}' | tail -1)"`,
			fmt.Sprintf(`echo "@sha=$(wget -q -O - http://10.0.2.2:%d/blob | sha256sum | cut -d' ' -f1)"`, web.Port()),
			`ping -c1 -W5 10.0.2.2 >/dev/null && echo "@ping=ok"`,
		}, "\n"),
	})
	if res.RC != 0 {
		t.Fatalf("guest script failed (rc %d):\n%s", res.RC, res.Console)
	}
	lease := res.Lease
	for k, v := range map[string]string{"ip": "10.0.2.15", "router": "10.0.2.2", "dns": "10.0.2.3", "mtu": "65520",
		"mask": "255.255.255.0", "domain": "lab.example", "search": "lab.example", "hostname": "vm1", "serverid": "10.0.2.2"} {
		if lease[k] != v {
			t.Errorf("lease %s = %q, want %q", k, lease[k], v)
		}
	}
	m := testenv.Markers(res.Console)
	if m["dns"] != testenv.TestDomainAddr || m["sha"] != sum || m["ping"] != "ok" {
		t.Errorf("in the guest: dns=%q sha=%q (want %s) ping=%q", m["dns"], m["sha"], sum, m["ping"])
	}
	if t.Failed() {
		t.Fatalf("console:\n%s", res.Console)
	}

	// The same VM boots again (a reconnect): same network, same lease.
	again := vmtest.Run(t, guest, vmtest.Options{Netdev: nic, Script: `ping -c1 -W5 10.0.2.2 >/dev/null && echo "@ping=ok"`})
	if again.Lease["ip"] != "10.0.2.15" || testenv.Markers(again.Console)["ping"] != "ok" {
		t.Fatalf("second boot: lease %v, console:\n%s", again.Lease, again.Console)
	}
	if n := strings.Count(srv.Output(), "link up"); n != 2 {
		t.Errorf("server saw %d links come up, want 2", n)
	}
}
