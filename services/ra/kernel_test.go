//go:build linux

package ra

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/services/internal/netnstest"
)

// router answers on a real link as the lead's stack will: one timer from
// the Advertiser's schedule, and solicitations from the wire validated by
// ParseSolicitation. Frames go through a packet socket, so the checksum
// the guest's kernel verifies is the one this package computed.
type router struct {
	t   *testing.T
	fd  int
	adv *Advertiser
	mac net.HardwareAddr

	mu   sync.Mutex
	rs   [][]byte // valid solicitations seen, as "src msg" hex
	sent int
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func openPacketSocket(t *testing.T, l *netnstest.Link) int {
	t.Helper()
	fd := -1
	err := l.Do(l.Server, func() error {
		ifi, err := net.InterfaceByName(netnstest.IfName)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IPV6)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IPV6), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	// Reads return now and then so the loop can look at its timer.
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50000}); err != nil {
		t.Fatal(err)
	}
	return fd
}

// frame wraps the advertisement in IPv6 (link-local source, all-nodes
// destination, hop limit 255) and Ethernet.
func (r *router) frame() []byte {
	src, dst := LinkLocal(r.mac), allNodes
	msg := r.adv.Message()
	binary.BigEndian.PutUint16(msg[2:], Checksum(src, dst, msg))
	f := make([]byte, 14+40, 14+40+len(msg))
	copy(f, []byte{0x33, 0x33, 0, 0, 0, 1})
	copy(f[6:], r.mac)
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := f[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(msg)))
	ip[6], ip[7] = 58, 255
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return append(f, msg...)
}

func (r *router) run(ctx context.Context) {
	timer := time.NewTimer(time.Until(r.adv.Due()))
	defer timer.Stop()
	buf := make([]byte, 65536)
	for ctx.Err() == nil {
		select {
		case <-timer.C:
			if _, err := unix.Write(r.fd, r.frame()); err != nil {
				r.t.Errorf("send advertisement: %v", err)
				return
			}
			r.mu.Lock()
			r.sent++
			r.mu.Unlock()
			timer.Reset(time.Until(r.adv.Sent(time.Now())))
		default:
		}
		n, err := unix.Read(r.fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			r.t.Errorf("read: %v", err)
			return
		}
		f := buf[:n]
		// Ethernet, IPv6 with ICMPv6 straight after the fixed header.
		if n < 14+40+1 || f[14+6] != 58 || f[14+40] != TypeRouterSolicitation {
			continue
		}
		ip := f[14:]
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		if 40+plen > len(ip) {
			continue
		}
		src := netip.AddrFrom16([16]byte(ip[8:24]))
		dst := netip.AddrFrom16([16]byte(ip[24:40]))
		msg := ip[40 : 40+plen]
		if _, err := ParseSolicitation(src, dst, ip[7], msg); err != nil {
			r.t.Errorf("the kernel's solicitation from %v was rejected: %v (% x)", src, err, msg)
			continue
		}
		r.mu.Lock()
		r.rs = append(r.rs, []byte(src.String()+" "+hex.EncodeToString(msg)))
		r.mu.Unlock()
		if at, moved := r.adv.Solicited(time.Now()); moved {
			timer.Reset(time.Until(at))
		}
	}
}

func startRouter(t *testing.T, l *netnstest.Link, cfg Config) *router {
	t.Helper()
	adv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &router{t: t, fd: openPacketSocket(t, l), adv: adv, mac: cfg.RouterMAC}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

// waitFor polls cond until it holds; the limit only keeps a broken test
// from hanging, it measures nothing.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s; last state:\n%s", what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKernelAutoconfiguration has the Linux kernel of a real namespace
// configure itself from the advertisements: SLAAC address in the prefix,
// default route via the router's link-local address, and the MTU option
// (the link is larger, so only the option can set 65520). The kernel's
// router solicitations go through ParseSolicitation on the way.
func TestKernelAutoconfiguration(t *testing.T) {
	l := netnstest.New(t, 65535)
	cfg := testConfig()
	cfg.RouterMAC = l.ServerMAC
	cfg.Now = time.Now
	r := startRouter(t, l, cfg)

	iid := LinkLocal(l.ClientMAC).As16()
	want := prefix.Addr().As16()
	copy(want[8:], iid[8:])
	slaac := netip.AddrFrom16(want).String()
	gw := LinkLocal(l.ServerMAC).String()
	configured := func() {
		t.Helper()
		waitFor(t, "a SLAAC address", func() (bool, string) {
			out := l.IP(t, l.Client, "-6", "addr", "show", "dev", netnstest.IfName)
			return strings.Contains(out, "inet6 "+slaac+"/64 scope global"), out
		})
		waitFor(t, "a default route", func() (bool, string) {
			out := l.IP(t, l.Client, "-6", "route", "show", "default")
			return strings.Contains(out, "via "+gw+" dev "+netnstest.IfName+" proto ra"), out
		})
		var mtu string
		if err := l.Do(l.Client, func() error {
			b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + netnstest.IfName + "/mtu")
			mtu = strings.TrimSpace(string(b))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if mtu != "65520" {
			t.Fatalf("IPv6 MTU %s, want the advertised 65520", mtu)
		}
	}
	// The first, unsolicited advertisement may well come before the
	// kernel asks.
	configured()

	// Taking the link down drops what the kernel learnt; up again, it
	// solicits, and this time the answer is what configures it.
	l.IP(t, l.Client, "link", "set", netnstest.IfName, "down")
	r.mu.Lock()
	seen := len(r.rs)
	r.mu.Unlock()
	l.IP(t, l.Client, "link", "set", netnstest.IfName, "up")
	waitFor(t, "a router solicitation", func() (bool, string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.rs) > seen, ""
	})
	configured()

	r.mu.Lock()
	defer r.mu.Unlock()
	t.Logf("sent %d advertisements; solicitation: %s", r.sent, r.rs[len(r.rs)-1])
}

// TestRdisc6 has ndisc6's rdisc6 solicit and decode an advertisement, the
// DNS options the kernel does not use among them. It is skipped without
// rdisc6 (Debian package ndisc6).
func TestRdisc6(t *testing.T) {
	if _, err := exec.LookPath("rdisc6"); err != nil {
		t.Skip("rdisc6 is not installed (Debian package ndisc6)")
	}
	l := netnstest.New(t, 65535)
	cfg := testConfig()
	cfg.RouterMAC = l.ServerMAC
	cfg.ManagedFlag = true
	cfg.DNSSL = []string{"example.org", "corp.example"}
	cfg.Now = time.Now
	startRouter(t, l, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// -1: stop at the first answer; retries cover the 3 s rate limit.
	out, err := l.Command(ctx, l.Client, "rdisc6", "-1", "-r", "5", "-w", "4000", netnstest.IfName).CombinedOutput()
	if err != nil {
		t.Fatalf("rdisc6: %v\n%s", err, out)
	}
	text := strings.Join(strings.Fields(string(out)), " ")
	for _, want := range []string{
		"Stateful address conf. : Yes",
		"Stateful other conf. : Yes",
		"Router lifetime : 1800",
		"Source link-layer address: " + strings.ToUpper(l.ServerMAC.String()),
		"MTU : 65520 bytes (valid)",
		"Prefix : fd00::/64 On-link : Yes Autonomous address conf.: Yes Valid time : 86400",
		"Pref. time : 14400",
		"Recursive DNS server : fd00::3 DNS server lifetime : 1800",
		"DNS search list : example.org corp.example DNS search list lifetime: 1800",
		"from " + LinkLocal(l.ServerMAC).String(),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rdisc6 output lacks %q:\n%s", want, out)
		}
	}
}
