package dhcp6

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

var (
	routerMAC  = net.HardwareAddr{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}
	serverDUID = DUIDLL(routerMAC)
	prefix     = netip.MustParsePrefix("fd00::/64")
	gw         = netip.MustParseAddr("fd00::2")
	dns3       = netip.MustParseAddr("fd00::3")
	first      = netip.MustParseAddr("fd00::100")
	second     = netip.MustParseAddr("fd00::101")
	clientLL   = netip.AddrPortFrom(netip.MustParseAddr("fe80::5054:ff:fe12:3401"), 546)
)

func testConfig(c *servicetest.Clock) Config {
	return Config{
		ServerDUID: serverDUID,
		Prefix:     prefix,
		RangeStart: first,
		DNS:        []netip.Addr{dns3},
		Search:     []string{"example.org"},
		Reserved:   []netip.Addr{gw},
		Now:        c.Now,
	}
}

func newTestServer(t *testing.T, mutate func(*Config)) (*Server, *servicetest.Clock) {
	t.Helper()
	c := servicetest.NewClock()
	return servicetest.Build(t, testConfig(c), mutate, servicetest.NoLog(New)), c
}

// Client-side option encoders, laid out as RFC 8415 section 21 gives them.

func opt(code uint16, data ...[]byte) []byte {
	var body []byte
	for _, d := range data {
		body = append(body, d...)
	}
	b := binary.BigEndian.AppendUint16(nil, code)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func clientIDOpt(duid []byte) []byte { return opt(optClientID, duid) }
func serverIDOpt(duid []byte) []byte { return opt(optServerID, duid) }
func elapsedOpt(cs uint16) []byte    { return opt(optElapsedTime, u16(cs)) }
func rapidOpt() []byte               { return opt(optRapidCommit) }

func oroOpt(codes ...uint16) []byte {
	var b []byte
	for _, c := range codes {
		b = append(b, u16(c)...)
	}
	return opt(optORO, b)
}

func iaNAOpt(iaid, t1, t2 uint32, sub ...[]byte) []byte {
	return opt(optIANA, append([][]byte{u32(iaid), u32(t1), u32(t2)}, sub...)...)
}

func iaAddrOpt(a netip.Addr, preferred, valid uint32) []byte {
	return opt(optIAAddr, a.AsSlice(), u32(preferred), u32(valid))
}

// msg builds a client message.
func msg(mtype byte, xid uint32, opts ...[]byte) []byte {
	b := []byte{mtype, byte(xid >> 16), byte(xid >> 8), byte(xid)}
	for _, o := range opts {
		b = append(b, o...)
	}
	return b
}

// DUIDs as three common clients make them: busybox udhcpc6 and many
// embedded clients use DUID-LL, ISC dhclient DUID-LLT, systemd-networkd
// DUID-EN with its enterprise number 43793.
func duidLL(last byte) []byte { return DUIDLL(net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, last}) }

func duidLLT(last byte) []byte {
	return append([]byte{0, 1, 0, 1, 0x2e, 0x8f, 0x1a, 0x55}, 0x52, 0x54, 0, 0x12, 0x34, last)
}

func duidEN(last byte) []byte {
	return append([]byte{0, 2, 0, 0, 0xab, 0x11}, 0x9c, 0x3d, 0x51, 0x7e, 0x42, 0x06, 0x11, last)
}

// reply is a decoded server message.
type reply struct {
	mtype byte
	xid   uint32
	opts  map[uint16][][]byte
	order []uint16
}

type iaReply struct {
	iaid, t1, t2 uint32
	addrs        []addrReply
	status       int // -1 when absent
}

type addrReply struct {
	addr             netip.Addr
	preferred, valid uint32
}

func decode(t *testing.T, b []byte) reply {
	t.Helper()
	if len(b) < 4 {
		t.Fatalf("reply of %d bytes", len(b))
	}
	r := reply{mtype: b[0], xid: uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), opts: map[uint16][][]byte{}}
	if err := walkOptions(b[4:], func(code uint16, data []byte) error {
		r.opts[code] = append(r.opts[code], data)
		r.order = append(r.order, code)
		return nil
	}); err != nil {
		t.Fatalf("reply options: %v (% x)", err, b)
	}
	return r
}

func (r reply) one(t *testing.T, code uint16) []byte {
	t.Helper()
	if len(r.opts[code]) != 1 {
		t.Fatalf("reply has %d options %d, want 1", len(r.opts[code]), code)
	}
	return r.opts[code][0]
}

// status returns the top-level status code, -1 when absent.
func (r reply) status(t *testing.T) int {
	t.Helper()
	if len(r.opts[optStatusCode]) == 0 {
		return -1
	}
	return int(binary.BigEndian.Uint16(r.one(t, optStatusCode)))
}

// ias decodes the IA options of one kind.
func (r reply) ias(t *testing.T, kind uint16) []iaReply {
	t.Helper()
	var out []iaReply
	for _, d := range r.opts[kind] {
		fixed := 12
		if kind == optIATA {
			fixed = 4
		}
		if len(d) < fixed {
			t.Fatalf("IA of %d bytes", len(d))
		}
		ia := iaReply{iaid: binary.BigEndian.Uint32(d), status: -1}
		if fixed == 12 {
			ia.t1, ia.t2 = binary.BigEndian.Uint32(d[4:]), binary.BigEndian.Uint32(d[8:])
		}
		if err := walkOptions(d[fixed:], func(code uint16, s []byte) error {
			switch code {
			case optIAAddr:
				if len(s) != 24 {
					t.Fatalf("IAADDR of %d bytes", len(s))
				}
				ia.addrs = append(ia.addrs, addrReply{netip.AddrFrom16([16]byte(s)), binary.BigEndian.Uint32(s[16:]), binary.BigEndian.Uint32(s[20:])})
			case optStatusCode:
				ia.status = int(binary.BigEndian.Uint16(s))
			}
			return nil
		}); err != nil {
			t.Fatalf("IA options: %v", err)
		}
		out = append(out, ia)
	}
	return out
}

// exchange sends a message and decodes the reply, failing if there is none.
func exchange(t *testing.T, s *Server, b []byte) reply {
	t.Helper()
	out, ok := s.Handle(b, clientLL)
	if !ok {
		t.Fatalf("no reply to % x (stats %+v)", b, s.Stats())
	}
	r := decode(t, out)
	if r.xid != uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]) {
		t.Fatalf("reply xid %#x to % x", r.xid, b[:4])
	}
	return r
}

func expectDrop(t *testing.T, s *Server, b []byte, reason string) {
	t.Helper()
	before := s.Stats().Dropped[reason]
	if out, ok := s.Handle(b, clientLL); ok {
		t.Fatalf("unexpected reply % x", out)
	}
	if got := s.Stats().Dropped[reason]; got != before+1 {
		t.Fatalf("dropped %q went from %d to %d (stats %+v)", reason, before, got, s.Stats())
	}
}

// lease runs SOLICIT, ADVERTISE, REQUEST, REPLY for one IA_NA and returns
// the address granted.
func lease(t *testing.T, s *Server, duid []byte, iaid uint32) netip.Addr {
	t.Helper()
	adv := exchange(t, s, msg(msgSolicit, 1, clientIDOpt(duid), elapsedOpt(0), iaNAOpt(iaid, 0, 0), oroOpt(23, 24)))
	if adv.mtype != msgAdvertise {
		t.Fatalf("SOLICIT answered with type %d", adv.mtype)
	}
	ia := adv.ias(t, optIANA)
	if len(ia) != 1 || len(ia[0].addrs) != 1 {
		t.Fatalf("ADVERTISE IA_NA %+v", ia)
	}
	a := ia[0].addrs[0].addr
	rep := exchange(t, s, msg(msgRequest, 2, clientIDOpt(duid), serverIDOpt(serverDUID), elapsedOpt(0),
		iaNAOpt(iaid, 0, 0, iaAddrOpt(a, 0, 0)), oroOpt(23, 24)))
	ia = rep.ias(t, optIANA)
	if rep.mtype != msgReply || len(ia) != 1 || len(ia[0].addrs) != 1 || ia[0].addrs[0].addr != a {
		t.Fatalf("REQUEST for %v answered with type %d, IA_NA %+v", a, rep.mtype, ia)
	}
	return a
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
