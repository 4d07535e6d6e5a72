package transports

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// connectGuest joins a Go guest to a serve's stream listener and takes a
// lease.
func connectGuest(t *testing.T, sock, mac string) (*guestpeer.Guest, guestpeer.Lease) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := guestpeer.New(t, guestpeer.NewStream(c), mac)
	return g, online(t, g)
}

// slipway serve --state-file, stopped and started again: the two VMs get
// the addresses they had, in whatever order they come back, and the port
// published at run time is published again. A corrupt file, or one of a
// newer version, stops the start with a message naming it.
func TestStateFileRestart(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "vm.sock")
	api := filepath.Join(dir, "api.sock")
	state := filepath.Join(dir, "state.json")
	hostPort := testenv.FreePort(t, "tcp")
	// The sandbox is on (the default): the confined engine keeps the
	// file through its launcher.
	args := []string{"--listen", "stream:unix:" + sock, "--api-socket", api, "--state-file", state}
	const macA, macB = "52:54:00:00:20:01", "52:54:00:00:20:02"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	first := testenv.Serve(t, args...)
	a, leaseA := connectGuest(t, sock, macA)
	b, leaseB := connectGuest(t, sock, macB)
	if leaseA.IP == leaseB.IP {
		t.Fatalf("both guests got %v", leaseA.IP)
	}
	rule, _ := config.ParsePublish("127.0.0.1:" + strconv.Itoa(hostPort) + ":" + leaseB.IP.String() + ":8080")
	var fw control.Forward
	if err := control.NewClient(api).Do(ctx, "POST", "/v1/forwards", control.ForwardRequest{PublishRule: rule}, &fw); err != nil {
		t.Fatal(err)
	}
	checkForward(t, b, hostPort)
	var rec control.DNSRecord
	if err := control.NewClient(api).Do(ctx, "POST", "/v1/dns/records", control.DNSRecord{Name: "b.internal", IPs: []netip.Addr{leaseB.IP}}, &rec); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	first.Stop()
	if out := first.Output(); !strings.Contains(out, "shutting down") {
		t.Fatalf("first slipway did not stop cleanly:\n%s", out)
	}

	// Back in the other order: without the file, B would now get A's
	// old address.
	second := testenv.Serve(t, args...)
	if !strings.Contains(second.Output(), "state restored") {
		t.Errorf("second slipway did not say it restored the state:\n%s", second.Output())
	}
	b2, lease2B := connectGuest(t, sock, macB)
	_, lease2A := connectGuest(t, sock, macA)
	if lease2A.IP != leaseA.IP || lease2B.IP != leaseB.IP {
		t.Errorf("after the restart A got %v (had %v), B got %v (had %v)", lease2A.IP, leaseA.IP, lease2B.IP, leaseB.IP)
	}
	var fws []control.Forward
	if err := control.NewClient(api).Do(ctx, "GET", "/v1/forwards", nil, &fws); err != nil {
		t.Fatal(err)
	}
	if len(fws) != 1 || fws[0].PublishRule.String() != fw.PublishRule.String() {
		t.Fatalf("forwards after the restart: %+v, want %s", fws, fw.PublishRule)
	}
	checkForward(t, b2, hostPort)
	var recs []control.DNSRecord
	if err := control.NewClient(api).Do(ctx, "GET", "/v1/dns/records", nil, &recs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		found = found || r.Name == "b.internal" && len(r.IPs) == 1 && r.IPs[0] == leaseB.IP
	}
	if !found {
		t.Errorf("DNS records after the restart: %+v, want b.internal at %v", recs, leaseB.IP)
	}
	second.Stop()

	// A corrupt file, a newer format: refused, named, left as it was.
	for _, bad := range []struct{ name, content, want string }{
		{"truncated", `{"version":1,"dhcp4_leases":[{"mac":"52:54`, "corrupt state"},
		{"garbage", "\x00\x01not json", "corrupt state"},
		{"newer", `{"version":99,"something_new":[]}`, "written by a newer slipway"},
		{"bad lease", `{"version":1,"dhcp4_leases":[{"mac":"zz","addr":"10.0.2.15"}],"dhcp6_leases":[],"forwards":[]}`, "bad MAC"},
	} {
		if err := os.WriteFile(state, []byte(bad.content), 0o600); err != nil {
			t.Fatal(err)
		}
		res := testenv.Run(t, 30*time.Second, append([]string{"serve"}, args...)...)
		if res.Code == 0 || !strings.Contains(res.Output, state) || !strings.Contains(res.Output, bad.want) {
			t.Errorf("%s state file: exit %d:\n%s\nwant a non-zero exit naming %s and saying %q", bad.name, res.Code, res.Output, state, bad.want)
		}
		if got, _ := os.ReadFile(state); string(got) != bad.content {
			t.Errorf("%s state file was changed to %q", bad.name, got)
		}
	}
	// A place the file cannot be written (even by root): refused at
	// start, confined or not.
	unwritable := "/proc/slipway-state.json"
	for _, mode := range []string{"on", "off"} {
		res := testenv.Run(t, 30*time.Second, "serve", "--listen", "stream:unix:"+sock, "--state-file", unwritable, "--sandbox", mode)
		if res.Code == 0 || !strings.Contains(res.Output, unwritable) {
			t.Errorf("unwritable state file, --sandbox %s: exit %d:\n%s", mode, res.Code, res.Output)
		}
	}
}
