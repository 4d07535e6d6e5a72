package transports

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/internal/nvlist"
	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
)

// vfkit (VFKT first), krunkit (connected, no magic) and QEMU -netdev dgram
// (sendto the server path) on one datagram socket: three VMs, three
// leases, each downloads; VM-to-VM TCP between two of them goes through
// the switch and never reaches the third.
func TestDgramPeers(t *testing.T) {
	web, sum := testenv.HTTPFile(t, blobSize)
	sock := filepath.Join(t.TempDir(), "vm.dgram")
	testenv.Serve(t, "--listen", "dgram:unix:"+sock)
	vfkit := guestpeer.New(t, guestpeer.DialDatagram(t, sock, true, true), "52:54:00:00:00:01")
	krunkit := guestpeer.New(t, guestpeer.DialDatagram(t, sock, true, false), "52:54:00:00:00:02")
	qemu := guestpeer.New(t, guestpeer.DialDatagram(t, sock, false, false), "52:54:00:00:00:03")
	leases := map[netip.Addr]bool{}
	for _, g := range []*guestpeer.Guest{vfkit, krunkit, qemu} {
		l := online(t, g)
		if leases[l.IP] {
			t.Fatalf("two guests got %v", l.IP)
		}
		leases[l.IP] = true
		if l.MTU != 65520 {
			t.Errorf("guest %s: MTU %d, want 65520", g.MAC, l.MTU)
		}
	}
	for _, g := range []*guestpeer.Guest{vfkit, krunkit, qemu} {
		download(t, g, web, sum)
	}

	// krunkit serves, QEMU's guest sends it 4 MB.
	ln, err := krunkit.Listen(9000)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	krunkitIP := leaseOf(t, krunkit)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := qemu.Dial(ctx, netip.AddrPortFrom(krunkitIP, 9000))
	if err != nil {
		t.Fatalf("guest to guest: %v", err)
	}
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case b := <-got:
		if !bytes.Equal(b, payload) {
			t.Fatalf("guest to guest: received %d bytes, want the 4 MB sent", len(b))
		}
	case <-time.After(60 * time.Second):
		t.Fatal("guest to guest transfer did not finish")
	}
	// Unlike socket_vmnet, the switch sent none of that to vfkit.
	for _, g := range []*guestpeer.Guest{krunkit, qemu} {
		if n := vfkit.SeenUnicastTo(g.MAC); n != 0 {
			t.Errorf("the third VM received %d frames addressed to %s", n, g.MAC)
		}
	}
}

// leaseOf is the address the guest's stack runs on.
func leaseOf(t *testing.T, g *guestpeer.Guest) netip.Addr {
	t.Helper()
	ip, ok := g.Addr()
	if !ok {
		t.Fatalf("guest %s has no address", g.MAC)
	}
	return ip
}

// Many VMs on one listening socket: QEMU stream clients (or
// socket_vmnet clients) on a stream socket, User Mode Linux instances on a
// SOCK_SEQPACKET one (vec0:transport=bess,dst=PATH). Each connection is a
// VM with its own lease.
func TestListenManyVMs(t *testing.T) {
	web, sum := testenv.HTTPFile(t, 2<<20)
	dir := t.TempDir()
	streamSock, bessSock := filepath.Join(dir, "vm.sock"), filepath.Join(dir, "bess.sock")
	testenv.Serve(t, "--listen", "stream:unix:"+streamSock, "--listen", "seqpacket:unix:"+bessSock)
	leases := map[netip.Addr]string{}
	for i := 0; i < 4; i++ {
		var w guestpeer.Wire
		if i%2 == 0 {
			c, err := net.Dial("unix", streamSock)
			if err != nil {
				t.Fatal(err)
			}
			w = guestpeer.NewStream(c)
		} else {
			c, err := net.Dial("unixpacket", bessSock)
			if err != nil {
				t.Fatal(err)
			}
			w = &guestpeer.Packet{Conn: c}
		}
		g := guestpeer.New(t, w, fmt.Sprintf("52:54:00:00:01:%02x", i+1))
		l := online(t, g)
		if other, ok := leases[l.IP]; ok {
			t.Fatalf("guests %s and %s both got %v", other, g.MAC, l.IP)
		}
		leases[l.IP] = g.MAC.String()
		download(t, g, web, sum)
	}
}

// Sockets handed over by the parent, one of each kind, each a VM; serve
// exits once all three have gone.
func TestInheritedFDs(t *testing.T) {
	web, sum := testenv.HTTPFile(t, blobSize)
	var files []*os.File
	var guests []*guestpeer.Guest
	for i, kind := range []int{unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET} {
		child, ours := guestpeer.Socketpair(t, kind)
		files = append(files, child)
		var w guestpeer.Wire = &guestpeer.Packet{Conn: ours}
		if kind == unix.SOCK_STREAM {
			w = guestpeer.NewStream(ours)
		}
		guests = append(guests, guestpeer.New(t, w, "52:54:00:00:02:0"+string(rune('1'+i))))
	}
	srv := start(t, files, "serve", "--fd", "3:stream", "--fd", "4:dgram", "--fd", "5:seqpacket")
	for _, f := range files {
		f.Close() // the child has them now
	}
	for _, g := range guests {
		online(t, g)
		download(t, g, web, sum)
	}
	for _, g := range guests {
		g.Close()
	}
	// A datagram socketpair shows its end only when slipway next sends
	// to it; the stack's ARP and the like do that soon enough.
	if code := srv.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("serve exited %d after its VMs left, want 0:\n%s", code, srv.Output())
	}
	if !strings.Contains(srv.Output(), "every VM has disconnected") {
		t.Errorf("serve did not say why it exited:\n%s", srv.Output())
	}
}

// slipway --connect dials a VMM that listens (QEMU -netdev stream,
// server=on) and dials again when the VMM restarts; the lease survives.
func TestConnectRedials(t *testing.T) {
	web, sum := testenv.HTTPFile(t, 1<<20)
	sock := filepath.Join(t.TempDir(), "qemu.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	testenv.Serve(t, "--connect", "stream:unix:"+sock)
	var first netip.Addr
	for round := 0; round < 2; round++ {
		ln.(*net.UnixListener).SetDeadline(time.Now().Add(30 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("round %d: slipway did not connect: %v", round, err)
		}
		g := guestpeer.New(t, guestpeer.NewStream(c), "52:54:00:00:03:01")
		l := online(t, g)
		download(t, g, web, sum)
		if round == 0 {
			first = l.IP
		} else if l.IP != first {
			t.Errorf("after the VMM restarted the guest got %v, before %v", l.IP, first)
		}
		g.Close() // QEMU exits
	}
}

// bhyve starts the helper with a seqpacket socketpair and sends the
// configuration first; the helper exits 1 when bhyve hangs up.
func TestBhyveHelper(t *testing.T) {
	web, sum := testenv.HTTPFile(t, blobSize)
	for _, open := range []bool{true, false} {
		child, ours := guestpeer.Socketpair(t, unix.SOCK_SEQPACKET)
		api := filepath.Join(t.TempDir(), "api.sock")
		srv := start(t, []*os.File{child}, "bhyve-helper", "-S", "3", "--api-socket", api)
		child.Close()
		pairs := []nvlist.Pair{
			{Name: "backend", Type: nvlist.String, Value: "slirp"},
			{Name: "vmname", Type: nvlist.String, Value: "vm0"},
		}
		if open {
			pairs = append(pairs, nvlist.Pair{Name: "open", Type: nvlist.String, Value: "true"})
		}
		fwdPort := testenv.FreePort(t, "tcp")
		pairs = append(pairs, nvlist.Pair{Name: "hostfwd", Type: nvlist.String, Value: fmt.Sprintf("tcp:127.0.0.1:%d-:8080", fwdPort)})
		cfg, err := nvlist.Pack(&nvlist.List{Pairs: pairs})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ours.Write(cfg); err != nil {
			t.Fatal(err)
		}
		g := guestpeer.New(t, &guestpeer.Packet{Conn: ours}, "58:9c:fc:00:00:01")
		l := online(t, g)
		if l.MTU != 1500 {
			t.Errorf("open=%v: lease MTU %d, want 1500 (bhyve reads 2048-byte messages)", open, l.MTU)
		}
		// The forwarded port reaches the guest, restricted or not, and
		// the control API shows it.
		checkForward(t, g, fwdPort)
		var fws []control.Forward
		if err := control.NewClient(api).Do(context.Background(), "GET", "/v1/forwards", nil, &fws); err != nil || len(fws) != 1 || fws[0].HostPort != uint16(fwdPort) {
			t.Errorf("open=%v: the helper's control API lists %v (%v), want bhyve's hostfwd", open, fws, err)
		}
		if open {
			download(t, g, web, sum)
		} else {
			// Restricted, as bhyve's default: the host is out of reach.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_, err := g.Get(ctx, "http://10.0.2.2:"+strconv.Itoa(int(web.Port()))+"/blob")
			cancel()
			if err == nil {
				t.Error("restricted guest reached the host")
			}
		}
		g.Close()
		if code := srv.wait(t, 30*time.Second); code != 1 {
			t.Errorf("open=%v: helper exited %d after bhyve hung up, want 1", open, code)
		}
		if !strings.Contains(srv.Output(), "parent process closed connection") {
			t.Errorf("open=%v: helper did not say bhyve hung up:\n%s", open, srv.Output())
		}
	}
}

// checkForward serves a greeting on the guest's port 8080 and fetches it
// through the host port forwarded to it.
func checkForward(t *testing.T, g *guestpeer.Guest, hostPort int) {
	t.Helper()
	ln, err := g.Listen(8080)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello from the guest"))
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", hostPort), 10*time.Second)
	if err != nil {
		t.Fatalf("forwarded port: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello from the guest" {
		t.Fatalf("forwarded port gave %q, %v", got, err)
	}
}

// A malformed configuration is one clear error and exit status 1.
func TestBhyveHelperBadConfig(t *testing.T) {
	good, err := nvlist.Pack(&nvlist.List{Pairs: []nvlist.Pair{{Name: "vmname", Type: nvlist.String, Value: "vm0"}}})
	if err != nil {
		t.Fatal(err)
	}
	truncated := good[:len(good)-3]
	badRule, _ := nvlist.Pack(&nvlist.List{Pairs: []nvlist.Pair{{Name: "hostfwd", Type: nvlist.String, Value: "tcp:22-:22"}}})
	for name, msg := range map[string][]byte{
		"garbage":   []byte("GET / HTTP/1.0\r\nHost: bhyve\r\n\r\n"),
		"truncated": truncated,
		"bad rule":  badRule,
	} {
		child, ours := guestpeer.Socketpair(t, unix.SOCK_SEQPACKET)
		api := filepath.Join(t.TempDir(), "api.sock")
		srv := start(t, []*os.File{child}, "bhyve-helper", "-S", "3", "--api-socket", api)
		child.Close()
		ours.Write(msg)
		if name == "truncated" {
			ours.Close() // bhyve died half-way
		}
		code := srv.wait(t, 40*time.Second)
		out := srv.Output()
		if code != 1 || !strings.Contains(out, "bad bhyve slirp configuration") || strings.Contains(out, "panic") {
			t.Errorf("%s: exit %d, output:\n%s\nwant exit 1 and a configuration error", name, code, out)
		}
	}
}
