package dhcp4

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

// FuzzHandle feeds arbitrary datagrams to one long-lived server, so that
// fuzzed input also exercises lease state built up by earlier inputs. It
// checks that Handle never panics, that every reply is a well-formed DHCP
// reply, and that the counters add up.
func FuzzHandle(f *testing.F) {
	m := mac(1)
	var seeds [][]byte
	for _, r := range []req{
		{mtype: msgDiscover, mac: m, xid: 1, opts: []opt{withPRL(1, 3, 6, 12, 15, 26, 28, 119), {optHostname, []byte("guest")}}},
		{mtype: msgRequest, mac: m, xid: 2, opts: []opt{withServerID(gw), withRequested(first)}},
		{mtype: msgRequest, mac: m, xid: 3, ciaddr: first},
		{mtype: msgRequest, mac: mac(2), xid: 4, opts: []opt{withRequested(netip.MustParseAddr("10.0.2.40"))}},
		{mtype: msgRelease, mac: m, xid: 5, ciaddr: first, opts: []opt{withServerID(gw)}},
		{mtype: msgDecline, mac: m, xid: 6, opts: []opt{withServerID(gw), withRequested(first)}},
		{mtype: msgInform, mac: m, xid: 7, ciaddr: netip.MustParseAddr("10.0.2.99")},
		{mtype: msgDiscover, mac: m, xid: 8, opts: []opt{{optOverload, []byte{3}}, {optMaxMessageSize, []byte{0xff, 0xff}}}},
	} {
		seeds = append(seeds, r.build())
	}
	seeds = append(seeds, []byte{}, make([]byte, fixedLen+cookieLen))

	s := servicetest.Build(f, Config{
		ServerIP:   gw,
		Subnet:     netip.MustParsePrefix("10.0.2.0/28"), // small, so the pool fills up
		Router:     gw,
		DNS:        []netip.Addr{dns3},
		RangeStart: netip.MustParseAddr("10.0.2.10"),
		MaxLeases:  4,
		MTU:        1500,
		Domain:     "example.org",
		Search:     []string{"a.example.org", "example.org"},
		Hostname:   "guest",
		Now:        (&servicetest.Clock{T: time.Unix(1e9, 0)}).Now,
	}, nil, servicetest.NoLog(New))

	counts := func() (uint64, uint64) { st := s.Stats(); return st.Received, st.Replied }
	servicetest.FuzzHandle(f, seeds, counts, func(t *testing.T, msg []byte) bool {
		reply, dst, ok := s.Handle(msg)
		if !ok {
			return false
		}
		if dst.Port() != clientPort || !dst.Addr().Is4() {
			t.Fatalf("reply to %v", dst)
		}
		if len(reply) < fixedLen+cookieLen+1 || reply[offOp] != opReply || binary.BigEndian.Uint32(reply[fixedLen:]) != magicCookie {
			t.Fatalf("malformed reply % x", reply)
		}
		if string(reply[offXid:offXid+4]) != string(msg[offXid:offXid+4]) {
			t.Fatalf("reply xid differs from request")
		}
		opts := make(map[byte][]byte)
		if err := parseOptions(reply[fixedLen+cookieLen:], opts); err != nil {
			t.Fatalf("reply options: %v", err)
		}
		if reply[len(reply)-1] != optEnd {
			t.Fatalf("reply does not end with End")
		}
		if mt := opts[optMessageType]; len(mt) != 1 || (mt[0] != msgOffer && mt[0] != msgAck && mt[0] != msgNak) {
			t.Fatalf("reply message type % x", mt)
		}
		if yi := addrAt(reply, offYiaddr); !yi.IsUnspecified() && !netip.MustParsePrefix("10.0.2.0/28").Contains(yi) {
			t.Fatalf("yiaddr %v outside the subnet", yi)
		}
		if n := len(s.Leases()); n > 4 {
			t.Fatalf("%d leases, bound is 4", n)
		}
		return true
	})
}
