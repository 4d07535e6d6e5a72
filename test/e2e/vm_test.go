package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/network"
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

var dhcp6cBin = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "slipway-dhcp6c-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "dhcp6c")
	cmd := exec.Command("go", "build", "-o", bin, "./dhcp6c")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build dhcp6c: %v\n%s", err, out)
	}
	return os.ReadFile(bin)
})

// TestServeQEMUGuestIPv6: a QEMU guest configures itself by SLAAC from
// slipway's router advertisements, leases a second address by DHCPv6,
// reaches the host's ::1 through the IPv6 gateway and resolves a AAAA name.
func TestServeQEMUGuestIPv6(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	dhcp6c, err := dhcp6cBin()
	if err != nil {
		t.Fatal(err)
	}
	dns := testenv.Dnsmasq(t)
	web, sum := testenv.HTTPFileOn(t, "[::1]:0", 5<<20)
	sock := filepath.Join(t.TempDir(), "vm.sock")
	api := filepath.Join(t.TempDir(), "api.sock")
	testenv.Serve(t, "--listen", "stream:unix:"+sock, "--dns-upstream", dns.String(), "--api-socket", api)
	res := vmtest.Run(t, guest, vmtest.Options{
		Netdev: streamNIC(sock, "52:54:00:12:34:58"),
		Files:  map[string][]byte{"/bin/dhcp6c": dhcp6c},
		Script: strings.Join([]string{
			`for i in $(seq 1 100); do ip -6 addr show dev eth0 | grep 'scope global' | grep -qv tentative && break; sleep 0.2; done`,
			`echo "@slaac=$(ip -6 addr show dev eth0 | awk '/scope global/ {print $2}' | head -1)"`,
			`echo "@route6=$(ip -6 route | awk '/^default/ {print $3}')"`,
			`/bin/dhcp6c -i eth0 > /tmp/d6 && cat /tmp/d6`,
			`ip -6 addr add "$(sed -n 's/^@dhcp6=//p' /tmp/d6)/128" dev eth0`,
			`ping -6 -c1 -W5 fd00::2 >/dev/null && echo "@ping6=ok"`,
			fmt.Sprintf(`echo "@sha6=$(wget -q -O - 'http://[fd00::2]:%d/blob' | sha256sum | cut -d' ' -f1)"`, web.Port()),
			`echo "@aaaa=$(nslookup -type=aaaa x.v6.` + testenv.TestDomain + ` fd00::3 2>/dev/null | awk '/^Address/ && /2001/ {print $NF}')"`,
		}, "\n"),
	})
	m := testenv.Markers(res.Console)
	want := map[string]string{"slaac": "fd00::5054:ff:fe12:3458/64", "route6": "fe80::5055:aff:fe00:202", "dhcp6": "fd00::100",
		"dhcp6dns": "fd00::3", "ping6": "ok", "sha6": sum, "aaaa": "2001:db8::55"}
	checkMarkers(t, m, want, "")
	// The control API lists both leases, the DHCPv6 one by DUID.
	var leases []network.LeaseInfo
	if err := control.NewClient(api).Do(context.Background(), "GET", "/v1/leases", nil, &leases); err != nil {
		t.Fatal(err)
	}
	var v4, v6 bool
	for _, l := range leases {
		v4 = v4 || l.Addr.String() == "10.0.2.15" && l.MAC == "52:54:00:12:34:58"
		v6 = v6 || l.Addr.String() == "fd00::100" && l.DUID == "00030001525400123458"
	}
	if !v4 || !v6 {
		t.Errorf("/v1/leases = %+v, want 10.0.2.15 by MAC and fd00::100 by DUID", leases)
	}
	if t.Failed() {
		t.Logf("console:\n%s", res.Console)
	}
}
