package e2e

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// bridgeLAN puts the calling goroutine's thread in a fresh network
// namespace and makes there the LAN a host administrator would offer
// VMs: a Linux bridge br0 at 192.168.77.1/24 with the persistent TAP
// swbr0 in it. Processes the goroutine starts and sockets it opens are in
// that namespace, nothing is left in the test's own. When the test ends
// the thread goes back to the namespace it came from before it is
// unlocked: a locked goroutine that just ends may be on the process's
// main thread, which Go cannot end, and every later test would then find
// the process (/proc/self/ns/net) in the LAN's namespace.
func bridgeLAN(t *testing.T) {
	t.Helper()
	testenv.Slipway(t) // built out here, with the host's network
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open this thread's network namespace: %v", err)
	}
	t.Cleanup(func() {
		// Cleanups run on the test's goroutine, still on this thread.
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: Go ends it with the goroutine
			// (or parks it, if it is the main thread) rather than
			// let another goroutine run in the LAN's namespace.
			t.Errorf("back to the test's network namespace: %v", err)
			return
		}
		unix.Close(orig)
		runtime.UnlockOSThread()
	})
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare a network namespace: %v", err)
	}
	for _, c := range [][]string{
		{"ip", "tuntap", "add", "mode", "tap", "name", "swbr0", "user", "65534"},
		{"ip", "link", "add", "br0", "type", "bridge"},
		{"ip", "link", "set", "swbr0", "master", "br0"},
		{"ip", "addr", "add", "192.168.77.1/24", "dev", "br0"},
		{"ip", "link", "set", "swbr0", "up"},
		{"ip", "link", "set", "br0", "up"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
}

// bridgeTry serves one guest with extra serve flags, checks it gets its
// slipway lease, then gives it the static 192.168.77.2/24 and dials the
// LAN's listener at lan. It returns what the listener sent and the dial
// or read error, and whether the LAN side reached the guest's own
// listener at 192.168.77.2 (the other way across the bridge).
func bridgeTry(t *testing.T, lan netip.AddrPort, extra ...string) (got string, reached bool, err error) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "vm.sock")
	s := testenv.Serve(t, append([]string{"--listen", "stream:unix:" + sock}, extra...)...)
	defer s.Stop()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := guestpeer.New(t, guestpeer.NewStream(c), "52:54:00:77:00:02")
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := g.DHCP(ctx)
	if err != nil {
		t.Fatalf("DHCP from slipway: %v\n%s", err, s.Output())
	}
	if l.IP.IsUnspecified() || strings.HasPrefix(l.IP.String(), "192.168.77.") {
		t.Errorf("lease %+v: want slipway's own network", l)
	}
	if err := g.Up(guestpeer.Lease{IP: netip.MustParseAddr("192.168.77.2"), Prefix: 24, Router: lan.Addr(), MTU: l.MTU}); err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	gl, err := g.Listen(7702)
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	go func() {
		if c, err := gl.Accept(); err == nil {
			c.Write([]byte("guest"))
			c.Close()
		}
	}()
	if c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(dctx, "tcp4", "192.168.77.2:7702"); err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 8)
		n, _ := c.Read(b)
		reached = string(b[:n]) == "guest"
		c.Close()
	}
	conn, err := g.Dial(dctx, lan)
	if err != nil {
		return "", reached, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	n, err := conn.Read(b)
	return string(b[:n]), reached, err
}

// TestServeBridgeTAP: --bridge tap:swbr0 makes a host TAP device a port
// of the switch, so a VM with an address on the host's LAN reaches the
// host there at L2 (the host sees the VM's own address, and reaches the
// VM's own listener),
// while the VM still gets its slipway lease. Without --bridge the same VM
// reaches nothing on that LAN.
func TestServeBridgeTAP(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip")
	bridgeLAN(t)
	ln, err := net.Listen("tcp4", "192.168.77.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// The peer as the LAN saw it: the VM itself, not slipway's NAT.
			c.Write([]byte("peer " + c.RemoteAddr().(*net.TCPAddr).IP.String()))
			c.Close()
		}
	}()
	lan := ln.Addr().(*net.TCPAddr).AddrPort()

	if got, reached, err := bridgeTry(t, lan); err == nil || reached {
		t.Errorf("without --bridge the guest and the LAN met: got %q, LAN reached the guest %v", got, reached)
	}
	got, reached, err := bridgeTry(t, lan, "--bridge", "tap:swbr0")
	if err != nil || got != "peer 192.168.77.2" {
		t.Errorf("with --bridge: got %q, %v; want peer 192.168.77.2", got, err)
	}
	if !reached {
		t.Error("with --bridge: the LAN could not reach the guest's listener at 192.168.77.2")
	}
}

// TestServeBridgeBadSpec: a missing device or a bad --bridge value is
// one line naming the flag, exit status 2, and makes no device.
func TestServeBridgeBadSpec(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip")
	bridgeLAN(t)
	if out, err := exec.Command("ip", "tuntap", "add", "mode", "tun", "name", "swtun0").CombinedOutput(); err != nil {
		t.Fatalf("ip tuntap add: %v\n%s", err, out)
	}
	sock := filepath.Join(t.TempDir(), "vm.sock")
	for _, v := range []string{"tap:swbr-none", "tap:swtun0", "tap:lo", "swbr0", "tap:", "macvtap:mv0", "tap:../x"} {
		r := testenv.Run(t, 30*time.Second, "serve", "--listen", "stream:unix:"+sock, "--bridge", v)
		if r.Code != 2 || strings.Count(strings.TrimSpace(r.Output), "\n") != 0 || !strings.Contains(r.Output, `invalid value "`+v+`" for --bridge`) {
			t.Errorf("--bridge %s: exit %d, output %q; want 2 and one line naming --bridge", v, r.Code, r.Output)
		}
	}
	if out, err := exec.Command("ip", "link", "show", "swbr-none").CombinedOutput(); err == nil {
		t.Errorf("--bridge tap:swbr-none made the device:\n%s", out)
	}
}
