package transports

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/test/testenv"
	"github.com/slipway-net/slipway/test/vmtest"
)

// qmp is a QEMU Machine Protocol client: one command at a time, events
// skipped.
type qmp struct {
	c *net.UnixConn
	r *bufio.Reader
}

func dialQMP(t *testing.T, path string) *qmp {
	t.Helper()
	var c net.Conn
	var err error
	// QEMU creates the socket as it starts (server=on,wait=off).
	for i := 0; i < 300; i++ {
		if c, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("QMP: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	q := &qmp{c: c.(*net.UnixConn), r: bufio.NewReader(c)}
	if _, err := q.r.ReadString('\n'); err != nil { // the greeting
		t.Fatalf("QMP greeting: %v", err)
	}
	q.do(t, -1, "qmp_capabilities", nil)
	return q
}

// do runs one command, with fd (when not negative) attached to it as
// SCM_RIGHTS, as getfd takes it.
func (q *qmp) do(t *testing.T, fd int, cmd string, args any) {
	t.Helper()
	msg := map[string]any{"execute": cmd}
	if args != nil {
		msg["arguments"] = args
	}
	req, _ := json.Marshal(msg)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	q.c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, _, err := q.c.WriteMsgUnix(append(req, '\n'), oob, nil); err != nil {
		t.Fatalf("QMP %s: %v", cmd, err)
	}
	for {
		line, err := q.r.ReadString('\n')
		if err != nil {
			t.Fatalf("QMP %s: %v", cmd, err)
		}
		var ans struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
		}
		json.Unmarshal([]byte(line), &ans)
		switch {
		case ans.Error != nil:
			t.Fatalf("QMP %s: %s", cmd, ans.Error.Desc)
		case ans.Return != nil:
			return
		}
	}
}

// A NIC hot-plugged into a running QEMU guest, the way a VMM does it: the
// guest boots with no NIC; QMP getfd hands QEMU one end of a socketpair,
// netdev_add makes a socket netdev on it (QEMU 7.2's stream netdev with
// addr.type=fd takes the fd but never carries a frame) and device_add
// plugs a virtio-net-pci card (ACPI PCI hot-plug of the pc machine);
// the other end goes to a running slipway through POST /v1/links. The
// guest's new eth0 gets a lease and downloads a file intact.
func TestQEMUHotplugLink(t *testing.T) {
	testenv.RequireTools(t, "qemu-system-x86_64")
	guest := vmtest.Build(t)
	web, sum := testenv.HTTPFile(t, 4<<20)
	dir := t.TempDir()
	api := filepath.Join(dir, "api.sock")
	// No VM endpoint: the link comes through the API.
	testenv.Serve(t, "--api-socket", api)
	qmpPath := filepath.Join(dir, "qmp.sock")
	const mac = "52:54:00:00:13:01"
	vm := vmtest.Start(t, guest, vmtest.Options{
		ExtraQEMUArgs: []string{"-qmp", "unix:" + qmpPath + ",server=on,wait=off"},
		Script: `echo "@waiting=1"
for i in $(seq 1200); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
echo "@nic=$(cat /sys/class/net/eth0/address)"
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 1 -O mtu -s /udhcpc.script >/tmp/udhcpc.log 2>&1 || cat /tmp/udhcpc.log
` + downloadScript(int(web.Port())) + `
# The host sets the link down, then up again: pings of the gateway stop,
# then come back.
for i in $(seq 240); do ping -c1 -W1 10.0.2.2 >/dev/null 2>&1 || { echo "@down=seen"; break; }; sleep 0.5; done
for i in $(seq 240); do ping -c1 -W1 10.0.2.2 >/dev/null 2>&1 && { echo "@up=seen"; break; }; done`,
	})
	if _, err := vm.WaitFor("@waiting=", 120*time.Second); err != nil {
		t.Fatal(err)
	}
	q := dialQMP(t, qmpPath)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	qemuEnd, slipwayEnd := fds[0], fds[1]
	q.do(t, qemuEnd, "getfd", map[string]any{"fdname": "hp0"})
	unix.Close(qemuEnd)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := control.NewClient(api).AddLink(ctx, slipwayEnd, control.KindStream, "qemu-hp0")
	unix.Close(slipwayEnd)
	if err != nil {
		t.Fatal(err)
	}
	q.do(t, -1, "netdev_add", map[string]any{"type": "socket", "id": "hp0", "fd": "hp0"})
	q.do(t, -1, "device_add", map[string]any{"driver": "virtio-net-pci", "netdev": "hp0", "id": "nic-hp0", "mac": mac})
	// While the guest is still up: slipway shows the link by the name it
	// was given, with traffic, and the new NIC's lease.
	if _, err := vm.WaitFor("@sha=", 120*time.Second); err != nil {
		t.Fatal(err)
	}
	var links []control.Link
	var leases []struct {
		MAC  string `json:"mac"`
		Addr string `json:"addr"`
	}
	c := control.NewClient(api)
	if err := c.Do(ctx, "GET", "/v1/links", nil, &links); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "GET", "/v1/leases", nil, &leases); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, li := range links {
		found = found || li.Port == l.Port && li.Name == "qemu-hp0" && li.RxFrames > 0
	}
	if !found {
		t.Errorf("links %+v: want port %d named qemu-hp0 with traffic", links, l.Port)
	}
	if s := fmt.Sprint(leases); !strings.Contains(s, mac) || !strings.Contains(s, "10.0.2.15") {
		t.Errorf("leases %s: want %s at 10.0.2.15", s, mac)
	}
	if _, err := c.SetLinkDown(ctx, l.Port, true); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor("@down=", 120*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetLinkDown(ctx, l.Port, false); err != nil {
		t.Fatal(err)
	}
	res, err := vm.Wait()
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Console)
	}
	m := testenv.Markers(res.Console)
	if m["nic"] != mac {
		t.Fatalf("guest's hot-plugged NIC: %q, want %s\n%s", m["nic"], mac, res.Console)
	}
	if res.Lease["ip"] != "10.0.2.15" {
		t.Errorf("lease %v", res.Lease)
	}
	checkDownload(t, res, sum)
	if m["up"] != "seen" {
		t.Errorf("the guest's pings did not come back after the link was set up again")
	}
}
