package dhcp4

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

var (
	gw     = netip.MustParseAddr("10.0.2.2")
	dns3   = netip.MustParseAddr("10.0.2.3")
	first  = netip.MustParseAddr("10.0.2.15")
	second = netip.MustParseAddr("10.0.2.16")
)

func testConfig(c *servicetest.Clock) Config {
	return Config{
		ServerIP:   gw,
		Subnet:     netip.MustParsePrefix("10.0.2.0/24"),
		Router:     gw,
		DNS:        []netip.Addr{dns3},
		RangeStart: first,
		Now:        c.Now,
	}
}

func newTestServer(t *testing.T, mutate func(*Config)) (*Server, *servicetest.Clock) {
	t.Helper()
	c := servicetest.NewClock()
	return servicetest.Build(t, testConfig(c), mutate, servicetest.NoLog(New)), c
}

func mac(last byte) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, last} }

// req describes a client message; build turns it into wire bytes the way
// a real client (udhcpc, dhclient) lays them out.
type req struct {
	mtype  byte
	mac    net.HardwareAddr
	xid    uint32
	ciaddr netip.Addr
	// opts are extra options as code, data pairs, written in order.
	opts []opt
}

type opt struct {
	code byte
	data []byte
}

func (r req) build() []byte {
	b := make([]byte, fixedLen, 300)
	b[offOp] = opRequest
	b[offHtype] = htypeEthernet
	b[offHlen] = hlenEthernet
	binary.BigEndian.PutUint32(b[offXid:], r.xid)
	putAddr(b, offCiaddr, r.ciaddr)
	copy(b[offChaddr:], r.mac)
	b = binary.BigEndian.AppendUint32(b, magicCookie)
	b = append(b, optMessageType, 1, r.mtype)
	for _, o := range r.opts {
		b = append(b, o.code, byte(len(o.data)))
		b = append(b, o.data...)
	}
	return append(b, optEnd)
}

func withServerID(a netip.Addr) opt  { return opt{optServerID, a.AsSlice()} }
func withRequested(a netip.Addr) opt { return opt{optRequestedIP, a.AsSlice()} }
func withPRL(codes ...byte) opt      { return opt{optParamRequest, codes} }

// parsed is a decoded server reply.
type parsed struct {
	xid    uint32
	ciaddr netip.Addr
	yiaddr netip.Addr
	chaddr net.HardwareAddr
	opts   map[byte][]byte
	order  []byte // option codes in the order sent
	mtype  byte
}

func decode(t *testing.T, b []byte) parsed {
	t.Helper()
	if len(b) < fixedLen+cookieLen || b[offOp] != opReply || binary.BigEndian.Uint32(b[fixedLen:]) != magicCookie {
		t.Fatalf("not a DHCP reply: % x", b)
	}
	p := parsed{
		xid:    binary.BigEndian.Uint32(b[offXid:]),
		ciaddr: addrAt(b, offCiaddr),
		yiaddr: addrAt(b, offYiaddr),
		chaddr: net.HardwareAddr(b[offChaddr : offChaddr+6]),
		opts:   make(map[byte][]byte),
	}
	o := b[fixedLen+cookieLen:]
	for i := 0; i < len(o); {
		code := o[i]
		if code == optEnd {
			if i != len(o)-1 {
				t.Fatalf("bytes after End option: % x", o[i:])
			}
			break
		}
		if i+2 > len(o) || i+2+int(o[i+1]) > len(o) {
			t.Fatalf("option %d overruns the reply", code)
		}
		if _, seen := p.opts[code]; !seen {
			p.order = append(p.order, code)
		}
		p.opts[code] = append(p.opts[code], o[i+2:i+2+int(o[i+1])]...)
		i += 2 + int(o[i+1])
	}
	if o[len(o)-1] != optEnd {
		t.Fatalf("reply does not end with the End option")
	}
	if mt := p.opts[optMessageType]; len(mt) == 1 {
		p.mtype = mt[0]
	}
	return p
}

// exchange sends r and decodes the reply, failing if there is none.
func exchange(t *testing.T, s *Server, r req) (parsed, netip.AddrPort) {
	t.Helper()
	reply, dst, ok := s.Handle(r.build())
	if !ok {
		t.Fatalf("no reply to message type %d from %v", r.mtype, r.mac)
	}
	p := decode(t, reply)
	if p.xid != r.xid {
		t.Fatalf("reply xid %#x, want %#x", p.xid, r.xid)
	}
	return p, dst
}

func expectNoReply(t *testing.T, s *Server, r req) {
	t.Helper()
	if reply, _, ok := s.Handle(r.build()); ok {
		t.Fatalf("unexpected reply to message type %d: % x", r.mtype, reply)
	}
}

// lease runs DISCOVER, OFFER, REQUEST, ACK for a client and returns the
// address it got.
func lease(t *testing.T, s *Server, m net.HardwareAddr) netip.Addr {
	t.Helper()
	offer, _ := exchange(t, s, req{mtype: msgDiscover, mac: m, xid: 1})
	if offer.mtype != msgOffer {
		t.Fatalf("DISCOVER answered with type %d", offer.mtype)
	}
	ack, _ := exchange(t, s, req{mtype: msgRequest, mac: m, xid: 2,
		opts: []opt{withServerID(gw), withRequested(offer.yiaddr)}})
	if ack.mtype != msgAck || ack.yiaddr != offer.yiaddr {
		t.Fatalf("REQUEST for %v answered with type %d for %v", offer.yiaddr, ack.mtype, ack.yiaddr)
	}
	return ack.yiaddr
}
