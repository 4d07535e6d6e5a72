package transports

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/network"
	"github.com/slipway-net/slipway/test/guestpeer"
	"github.com/slipway-net/slipway/test/testenv"
	vf "github.com/slipway-net/slipway/test/vhostfront"
)

// superFrameFloor is the least average frame size that shows a bulk
// transfer went in super-frames: without offloads no frame exceeds 1514
// bytes, so an average of 4 KiB cannot happen without them. The average
// itself moves with the machine's load (29-44 KB to a QEMU guest on a
// quiet machine, 16.2 KB in one CI run on a slow day), so it is no
// performance bar (issue 11's goal of 32 KiB is not asserted here).
const superFrameFloor = 4 << 10

// vhostNetwork is an in-process network at MTU 1500 serving vhost-user on
// a socket; the recorder keeps the links it accepted.
func vhostNetwork(t *testing.T) (*network.Network, string, *recorder) {
	t.Helper()
	n, err := network.New(config.Config{MTU: 1500}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	path := filepath.Join(t.TempDir(), "vm.vhost")
	l, err := endpoint.Listen(endpoint.Spec{Kind: endpoint.VhostUser, Network: "unix", Address: path})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{Listener: l}
	go n.Serve(r)
	return n, path, r
}

// frontend connects a front-end to the network and sets it up.
func frontend(t *testing.T, path string, o vf.Options) *vf.Frontend {
	t.Helper()
	f, err := vf.Dial(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// linkName is the name of the i-th link the recorder saw.
func linkName(r *recorder, i int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.links[i].String()
}

func dialUnix(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// portCounters are the counters of the port named name.
func portCounters(t *testing.T, n *network.Network, name string) map[string]uint64 {
	t.Helper()
	for _, l := range n.Links() {
		if l.Name == name {
			m := map[string]uint64{}
			for _, c := range l.Counters {
				m[c.Name] += c.Value
			}
			return m
		}
	}
	return nil
}

// upload sends size random bytes from the guest to the host and checks
// they arrived whole.
func upload(t *testing.T, g *guestpeer.Guest, size int) {
	t.Helper()
	sink := uploadSink(t, int64(size))
	data := make([]byte, size)
	rand.Read(data)
	sum := sha256.Sum256(data)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := g.Dial(ctx, netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), sink.Port()))
	if err != nil {
		t.Fatalf("guest %s: dial: %v", g.MAC, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("guest %s: upload: %v", g.MAC, err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != hex.EncodeToString(sum[:]) {
		t.Fatalf("guest %s: the host got sha256 %q (%v), the guest sent %x", g.MAC, got, err, sum)
	}
}

// Go guests on vhost-user: one whose driver takes every offload (a Linux
// guest: partial checksums and 64 KiB super-frames each way at MTU
// 1500), one that acknowledges nothing (iPXE: complete checksums, frames
// of the MTU). Each takes a lease and moves 8 MB each way intact.
func TestVhostUserGuests(t *testing.T) {
	web, sum := testenv.HTTPFile(t, blobSize)
	t.Run("offloads", func(t *testing.T) {
		// Long enough for the first round trips' small frames not to
		// count much.
		const bulk = 32 << 20
		web, sum := testenv.HTTPFile(t, bulk)
		n, path, r := vhostNetwork(t)
		fe := frontend(t, path, vf.Options{Features: vf.Linux, QueueSize: 1024})
		g := guestpeer.NewOffloading(t, fe, "52:54:00:00:21:01")
		online(t, g)
		name := linkName(r, 0)
		c0 := portCounters(t, n, name)
		download(t, g, web, sum)
		c1 := portCounters(t, n, name)
		upload(t, g, bulk)
		c2 := portCounters(t, n, name)
		down := float64(c1["tx_bytes"]-c0["tx_bytes"]) / float64(c1["tx_frames"]-c0["tx_frames"])
		up := float64(c2["rx_bytes"]-c1["rx_bytes"]) / float64(c2["rx_frames"]-c1["rx_frames"])
		t.Logf("to the guest %.0f bytes a frame, from it %.0f (dropped for a full ring: %d)", down, up, c2["tx_full"])
		if down < superFrameFloor || up < superFrameFloor {
			t.Errorf("frames average %.0f bytes to the guest and %.0f from it at MTU 1500, want super-frames", down, up)
		}
	})
	t.Run("nothing acknowledged", func(t *testing.T) {
		n, path, r := vhostNetwork(t)
		fe := frontend(t, path, vf.Options{})
		if fe.Acked != 0 || fe.HdrLen() != 10 {
			t.Fatalf("acked %#x, header %d bytes: want a legacy device with nothing", fe.Acked, fe.HdrLen())
		}
		g := guestpeer.New(t, fe, "52:54:00:00:21:02")
		online(t, g)
		download(t, g, web, sum)
		upload(t, g, blobSize)
		c := portCounters(t, n, linkName(r, 0))
		if max := float64(c["tx_bytes"]) / float64(c["tx_frames"]); max > 1514 {
			t.Errorf("frames to the guest average %.0f bytes: more than its MTU", max)
		}
	})
}

// Hostile front-ends and guests on a network one good guest uses: each
// bad chain is counted on its own port, each bad message closes only its
// own connection, and the good guest's transfers go on intact.
func TestVhostUserHostileNeighbours(t *testing.T) {
	web, sum := testenv.HTTPFile(t, blobSize)
	n, path, r := vhostNetwork(t)
	good := guestpeer.NewOffloading(t, frontend(t, path, vf.Options{Features: vf.Linux}), "52:54:00:00:22:01")
	online(t, good)

	// Guests whose rings break the rules stay connected; their ports
	// count what they did.
	const last = 255
	for i, bad := range []func(f *vf.Frontend, q *vf.Queue){
		func(f *vf.Frontend, q *vf.Queue) { q.SetDesc(last, 1<<42, 1000, 0, 0); q.Publish(last) },
		func(f *vf.Frontend, q *vf.Queue) {
			q.SetDesc(last, f.GPA(40<<20), 100, 1, last-1)
			q.SetDesc(last-1, f.GPA(40<<20), 100, 1, last)
			q.Publish(last)
		},
		func(f *vf.Frontend, q *vf.Queue) {
			vf.PutDesc(f.Mem[40<<20:], f.GPA(40<<20), 16, 4, 0)
			q.SetDesc(last, f.GPA(40<<20), 16, 4, 0)
			q.Publish(last)
		},
		func(f *vf.Frontend, q *vf.Queue) { q.SetAvailIdx(q.AvailIdx() + 2*q.N); q.Kick() },
	} {
		f := frontend(t, path, vf.Options{Features: vf.Linux})
		f.RawTX(func(q *vf.Queue) { bad(f, q) })
		eventually(t, fmt.Sprintf("bad guest %d counted", i), func() bool {
			c := r.counters(1 + i)
			return c != nil && c.RxBadRing.Load() == 1
		})
	}
	// Front-ends that break the protocol lose their connection.
	for i, bad := range []func(f *vf.Frontend) error{
		func(f *vf.Frontend) error { return f.Request(77, 0, nil) },
		func(f *vf.Frontend) error { return f.SendRaw(vf.SetFeatures, 1, 3, []byte{1, 2, 3}) },
		func(f *vf.Frontend) error {
			fd, _ := unix.Eventfd(0, unix.EFD_CLOEXEC)
			defer unix.Close(fd)
			return f.Request(vf.SetVringNum, 0, vf.State(0, 256), fd)
		},
	} {
		f, err := vf.New(dialUnix(t, path), vf.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if err := bad(f); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadReply(); err == nil || !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
			t.Errorf("bad front-end %d: %v, want the connection closed", i, err)
		}
	}
	download(t, good, web, sum)
	upload(t, good, blobSize)
	if c := portCounters(t, n, linkName(r, 0)); c["rx_bad_ring"]+c["tx_bad_ring"]+c["rx_bad_header"] != 0 {
		t.Errorf("the good guest's port counts drops: %v", c)
	}
}

// slipway serve --fd N:vhost-user: the back-end end of a socketpair a
// parent hands over (the front-end here is the Go one); serve exits once
// the VM has gone.
func TestVhostUserFD(t *testing.T) {
	web, sum := testenv.HTTPFile(t, blobSize)
	theirs, ours := guestpeer.Socketpair(t, unix.SOCK_STREAM)
	srv := start(t, []*os.File{theirs}, "serve", "--fd", "3:vhost-user", "--mtu", "1500")
	theirs.Close()
	fe, err := vf.New(ours.(*net.UnixConn), vf.Options{Features: vf.Linux})
	if err != nil {
		t.Fatal(err)
	}
	if err := fe.Start(); err != nil {
		t.Fatal(err)
	}
	// The device reports the network's MTU (crosvm reads it).
	if _, mtu, err := fe.DeviceConfig(); err != nil || mtu != 1500 || fe.Acked&vf.FMTU == 0 {
		t.Errorf("device MTU %d (%v), MTU feature acknowledged %v; want 1500", mtu, err, fe.Acked&vf.FMTU != 0)
	}
	g := guestpeer.NewOffloading(t, fe, "52:54:00:00:24:01")
	online(t, g)
	download(t, g, web, sum)
	g.Close()
	if code := srv.wait(t, 60*time.Second); code != 0 {
		t.Errorf("serve exited %d after the VM left, want 0:\n%s", code, srv.Output())
	}
}

// A VM's link taken down and up through the control API: the device's
// status (GET_CONFIG, as crosvm reads it) follows, the front-end is told
// each time with CONFIG_CHANGE_MSG on the back-end channel, frames are
// dropped (and counted) while it is down, and a download works once it is
// up again.
func TestVhostUserLinkDownUp(t *testing.T) {
	web, sum := testenv.HTTPFile(t, 1<<20)
	dir := t.TempDir()
	sock, api := filepath.Join(dir, "vm.vhost"), filepath.Join(dir, "api.sock")
	testenv.Serve(t, "--listen", "vhost-user:"+sock, "--api-socket", api, "--mtu", "1500")
	fe := frontend(t, sock, vf.Options{Features: vf.Linux})
	g := guestpeer.NewOffloading(t, fe, "52:54:00:00:28:01")
	online(t, g)
	port := linkStats(t, api, "vhost-user:").Port
	set := func(state string, want bool) {
		t.Helper()
		var l control.Link
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := control.NewClient(api).Do(ctx, http.MethodPost, fmt.Sprintf("/v1/links/%d/%s", port, state), nil, &l); err != nil {
			t.Fatal(err)
		}
		if l.Up != want {
			t.Fatalf("POST %s: the API says up=%v", state, l.Up)
		}
		req, err := fe.BackendRequest(10 * time.Second)
		if err != nil || req != 2 {
			t.Fatalf("after %s the back-end channel got request %d (%v), want CONFIG_CHANGE_MSG (2)", state, req, err)
		}
		if up, _, err := fe.DeviceConfig(); err != nil || up != want {
			t.Fatalf("after %s the device's status says up=%v (%v)", state, up, err)
		}
	}
	set("down", false)
	// A frame from the guest while down goes nowhere, counted.
	arp := append(bytes.Repeat([]byte{0xff}, 6), 0x52, 0x54, 0, 0, 0x28, 1, 0x08, 0x06)
	arp = append(arp, make([]byte, 46)...)
	deadline := time.Now().Add(20 * time.Second)
	for linkStats(t, api, "vhost-user:").Drops["link_down"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("frames from a link that is down are not counted as link_down")
		}
		if err := fe.Send(arp); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	set("up", true)
	download(t, g, web, sum)
}

// slipway --connect vhost-user: dials a VMM that listens (QEMU server=on,
// cloud-hypervisor vhost_mode=server) and dials again when the VMM
// restarts; the guest gets the same lease back.
func TestVhostUserConnectRedials(t *testing.T) {
	web, sum := testenv.HTTPFile(t, 1<<20)
	sock := filepath.Join(t.TempDir(), "vmm.vhost")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	testenv.Serve(t, "--connect", "vhost-user:"+sock, "--mtu", "1500")
	var first netip.Addr
	for round := 0; round < 2; round++ {
		ln.SetDeadline(time.Now().Add(30 * time.Second))
		c, err := ln.AcceptUnix()
		if err != nil {
			t.Fatalf("round %d: slipway did not connect: %v", round, err)
		}
		fe, err := vf.New(c, vf.Options{Features: vf.Linux})
		if err != nil {
			t.Fatal(err)
		}
		if err := fe.Start(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		g := guestpeer.NewOffloading(t, fe, "52:54:00:00:29:01")
		l := online(t, g)
		download(t, g, web, sum)
		if round == 0 {
			first = l.IP
		} else if l.IP != first {
			t.Errorf("after the VMM restarted the guest got %v, before %v", l.IP, first)
		}
		g.Close() // the VMM exits
	}
}
