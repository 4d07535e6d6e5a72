package tap_test

import (
	"encoding/binary"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/tap"
)

// The namespace's side of the test link, and the peer slipway would be.
var (
	nsAddr   = net.IPv4(10, 9, 0, 1).To4()
	peerAddr = net.IPv4(10, 9, 0, 2).To4()
	peerMAC  = net.HardwareAddr{2, 0, 0, 0, 0, 2}
)

const peerPort = 9000

// inNewNetns runs fn in a new network namespace, on a thread of its own
// that stays locked and ends with the namespace; it skips the test under
// -short or without root.
func inNewNetns(t *testing.T, fn func() error) error {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: makes a network namespace and a TAP device")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace and a TAP device")
	}
	errs := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errs <- err
			return
		}
		errs <- fn()
	}()
	return <-errs
}

// mqNamespace makes a network namespace on a thread of its own with a
// TAP device of queues queues, addressed and up, a static neighbour entry
// for the peer, and flows UDP sockets connected to the peer (flow i from
// an ephemeral port to peerPort+i). The thread stays locked and dies with
// its namespace when the test ends.
func mqNamespace(t *testing.T, queues, flows int) (*tap.Link, net.HardwareAddr, []*net.UDPConn) {
	t.Helper()
	var r struct {
		l     *tap.Link
		mac   net.HardwareAddr
		socks []*net.UDPConn
	}
	err := inNewNetns(t, func() error {
		var err error
		if r.l, err = tap.CreateQueues("mq0", false, queues); err != nil {
			return err
		}
		dev, err := netlink.LinkByName("mq0")
		if err == nil {
			r.mac = dev.Attrs().HardwareAddr
			err = netlink.AddrAdd(dev, &netlink.Addr{IPNet: &net.IPNet{IP: nsAddr, Mask: net.CIDRMask(24, 32)}})
		}
		if err == nil {
			err = netlink.LinkSetUp(dev)
		}
		if err == nil {
			err = netlink.NeighAdd(&netlink.Neigh{LinkIndex: dev.Attrs().Index, State: netlink.NUD_PERMANENT,
				IP: peerAddr, HardwareAddr: peerMAC})
		}
		for i := 0; err == nil && i < flows; i++ {
			var c *net.UDPConn
			c, err = net.DialUDP("udp4", &net.UDPAddr{IP: nsAddr}, &net.UDPAddr{IP: peerAddr, Port: peerPort + i})
			r.socks = append(r.socks, c)
		}
		return err
	})
	t.Cleanup(func() {
		for _, c := range r.socks {
			if c != nil {
				c.Close()
			}
		}
		if r.l != nil {
			r.l.Close()
		}
	})
	if err != nil {
		t.Fatalf("namespace with a %d-queue TAP: %v", queues, err)
	}
	return r.l, r.mac, r.socks
}

// seen is a UDP frame from the namespace to the peer, by the queue it
// was read from.
type seen struct {
	queue   int
	dstPort int
}

// readQueues reads every queue until the link closes and reports the
// namespace's UDP frames to the peer.
func readQueues(l *tap.Link) <-chan seen {
	out := make(chan seen, 1024)
	for q := range l.Queues() {
		go func() {
			bufs, sizes := link.NewBuffers(l.BatchSize())
			for {
				n, err := l.ReadQueue(q, bufs, sizes)
				for i := range n {
					f := bufs[i][link.VnetHdrLen : link.VnetHdrLen+sizes[i]]
					if len(f) < 42 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[23] != 17 || !net.IP(f[30:34]).Equal(peerAddr) {
						continue // IPv6 chatter, ARP
					}
					out <- seen{q, int(binary.BigEndian.Uint16(f[36:]))}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	return out
}

// nextFrom waits for the next frame of flow port.
func nextFrom(t *testing.T, frames <-chan seen, port int) int {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case s := <-frames:
			if s.dstPort == port {
				return s.queue
			}
		case <-deadline:
			t.Fatalf("no frame to port %d on any queue", port)
		}
	}
}

// udpFrame is a datagram from the peer's port to the namespace's port,
// as slipway would write it.
func udpFrame(nsMAC net.HardwareAddr, fromPort, toPort int) []byte {
	f := make([]byte, 14+20+8+4)
	copy(f[0:], nsMAC)
	copy(f[6:], peerMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-14))
	ip[8], ip[9] = 64, 17
	copy(ip[12:], peerAddr)
	copy(ip[16:], nsAddr)
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:], uint16(fromPort))
	binary.BigEndian.PutUint16(udp[2:], uint16(toPort))
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp))) // checksum 0: none, as IPv4 allows
	return f
}

// TestMultiQueueKeepsFlowsOnTheirQueue checks what a multi-queue TAP is
// for: the kernel spreads the namespace's flows over the queues, each flow
// on one, and once slipway has written a flow's frames (to the queue
// Write picks by the flow's hash) the flow's next frames come back on that
// queue, so one reader sees both directions of a flow.
func TestMultiQueueKeepsFlowsOnTheirQueue(t *testing.T) {
	const queues, flows = 2, 64
	l, mac, socks := mqNamespace(t, queues, flows)
	if l.Queues() != queues {
		t.Fatalf("Queues() = %d, want %d", l.Queues(), queues)
	}
	frames := readQueues(l)
	first := make([]int, flows)
	used := map[int]bool{}
	for i, c := range socks {
		if _, err := c.Write([]byte("before")); err != nil {
			t.Fatal(err)
		}
		first[i] = nextFrom(t, frames, peerPort+i)
		used[first[i]] = true
	}
	if len(used) != queues {
		t.Fatalf("%d flows all came on queue(s) %v: the device is not spreading them", flows, used)
	}
	moved := 0
	for i, c := range socks {
		local := c.LocalAddr().(*net.UDPAddr).Port
		var seg [1][]byte
		seg[0] = udpFrame(mac, peerPort+i, local)
		fr := link.Frame{Hdr: make([]byte, link.VnetHdrLen), Segs: seg[:]}
		want := int(fr.FlowHash() % queues)
		if n, err := l.Write([]link.Frame{fr}); n != 1 || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
		if want != first[i] {
			moved++
		}
		for range 3 {
			if _, err := c.Write([]byte("after")); err != nil {
				t.Fatal(err)
			}
			if q := nextFrom(t, frames, peerPort+i); q != want {
				t.Fatalf("flow %d: after slipway wrote its frame on queue %d, its next frame came on queue %d (first on %d)", i, want, q, first[i])
			}
		}
	}
	if moved == 0 {
		t.Fatalf("every flow's first queue was the one Write picked: the test shows no steering")
	}
	t.Logf("%d of %d flows moved to the queue their frames were written to", moved, flows)
}

// TestCreateQueuesOnSingleQueueDevice checks the fallback for a TAP device
// made beforehand without multi-queue (rootlesskit's tap0): asked for
// several queues, CreateQueues attaches the one the device has.
func TestCreateQueuesOnSingleQueueDevice(t *testing.T) {
	var queues int
	err := inNewNetns(t, func() error {
		// A persistent single-queue device with no queue attached,
		// as `ip tuntap add mode tap` leaves it.
		l, err := tap.Create("single0", true)
		if err != nil {
			return err
		}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, l.File().Fd(), unix.TUNSETPERSIST, 1); e != 0 {
			return e
		}
		l.Close()
		if l, err = tap.CreateQueues("single0", true, 4); err != nil {
			return err
		}
		defer l.Close()
		queues = l.Queues()
		unix.Syscall(unix.SYS_IOCTL, l.File().Fd(), unix.TUNSETPERSIST, 0)
		return nil
	})
	if err != nil {
		t.Fatalf("4 queues on a single-queue device: %v", err)
	}
	if queues != 1 {
		t.Fatalf("Queues() = %d on a single-queue device, want 1", queues)
	}
}

// TestCreateQueuesBounds checks the queue count's bounds, refused with an
// error before any device is made.
func TestCreateQueuesBounds(t *testing.T) {
	for _, n := range []int{0, -1, tap.MaxQueues + 1} {
		if l, err := tap.CreateQueues("mqbad", true, n); err == nil {
			l.Close()
			t.Errorf("CreateQueues(%d) made a device", n)
		}
	}
	if _, err := tap.FromFDs(nil, "x", true); err == nil {
		t.Error("FromFDs with no descriptors made a link")
	}
}
