package dhcp4

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

func TestNewRejectsBadConfig(t *testing.T) {
	reject := servicetest.ConfigRejecter(t, func() Config { return testConfig(&servicetest.Clock{}) }, servicetest.NoLog(New))
	reject("no subnet", "Subnet", func(c *Config) { c.Subnet = netip.Prefix{} })
	reject("v6 subnet", "Subnet", func(c *Config) { c.Subnet = netip.MustParsePrefix("fd00::/64") })
	reject("tiny subnet", "/30", func(c *Config) { c.Subnet = netip.MustParsePrefix("10.0.2.0/31") })
	reject("server outside", "ServerIP 10.0.3.2", func(c *Config) { c.ServerIP = netip.MustParseAddr("10.0.3.2") })
	reject("server is network", "ServerIP", func(c *Config) { c.ServerIP = netip.MustParseAddr("10.0.2.0") })
	reject("router outside", "Router 192.168.1.1", func(c *Config) { c.Router = netip.MustParseAddr("192.168.1.1") })
	reject("no range", "RangeStart", func(c *Config) { c.RangeStart = netip.Addr{} })
	reject("range broadcast", "RangeStart 10.0.2.255", func(c *Config) { c.RangeStart = netip.MustParseAddr("10.0.2.255") })
	reject("v6 dns", "DNS server ::1", func(c *Config) { c.DNS = []netip.Addr{netip.MustParseAddr("::1")} })
	reject("negative leases", "MaxLeases -1", func(c *Config) { c.MaxLeases = -1 })
	reject("short lease", "LeaseTime", func(c *Config) { c.LeaseTime = time.Millisecond })
	reject("huge lease", "LeaseTime", func(c *Config) { c.LeaseTime = 200 * 365 * 24 * time.Hour })
	reject("small mtu", "MTU 10", func(c *Config) { c.MTU = 10 })
	reject("bad domain", "Domain", func(c *Config) { c.Domain = "a..b" })
	reject("bad search", "Search", func(c *Config) { c.Search = []string{"ok.example", strings.Repeat("x", 64) + ".example"} })
	reject("bad hostname", "Hostname", func(c *Config) { c.Hostname = "has space" })
	reject("v6 reserved", "Reserved", func(c *Config) { c.Reserved = []netip.Addr{netip.MustParseAddr("fd00::1")} })
}

func TestDORA(t *testing.T) {
	s, c := newTestServer(t, nil)
	var events []Lease
	s.OnLease(func(l Lease) { events = append(events, l) })
	m := mac(1)

	offer, dst := exchange(t, s, req{mtype: msgDiscover, mac: m, xid: 0x1234})
	if offer.mtype != msgOffer || offer.yiaddr != first {
		t.Fatalf("offer type %d addr %v, want OFFER of %v", offer.mtype, offer.yiaddr, first)
	}
	if dst.String() != "255.255.255.255:68" {
		t.Fatalf("offer sent to %v, want the broadcast", dst)
	}
	if !bytes.Equal(offer.chaddr, m) {
		t.Fatalf("offer chaddr %v, want %v", offer.chaddr, m)
	}
	if len(s.Leases()) != 0 {
		t.Fatalf("an offer must not show as a lease: %v", s.Leases())
	}

	ack, dst := exchange(t, s, req{mtype: msgRequest, mac: m, xid: 0x1235,
		opts: []opt{withServerID(gw), withRequested(first), {optHostname, []byte("guest\x00<b>")}}})
	if ack.mtype != msgAck || ack.yiaddr != first {
		t.Fatalf("ack type %d addr %v", ack.mtype, ack.yiaddr)
	}
	if dst.String() != "255.255.255.255:68" {
		t.Fatalf("ack sent to %v, want the broadcast", dst)
	}
	want := Lease{MAC: m.String(), Addr: first, Hostname: "guestb", Expires: c.T.Add(time.Hour)}
	if got := s.Leases(); len(got) != 1 || got[0] != want {
		t.Fatalf("leases %+v, want [%+v]", got, want)
	}
	if len(events) != 1 || events[0] != want {
		t.Fatalf("OnLease events %+v, want [%+v]", events, want)
	}
	st := s.Stats()
	if st.Received != 2 || st.Replied != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRenewIsUnicastAndExtends(t *testing.T) {
	s, c := newTestServer(t, nil)
	m := mac(1)
	addr := lease(t, s, m)
	c.Advance(40 * time.Minute)

	ack, dst := exchange(t, s, req{mtype: msgRequest, mac: m, xid: 9, ciaddr: addr})
	if ack.mtype != msgAck || ack.yiaddr != addr || ack.ciaddr != addr {
		t.Fatalf("renew: type %d yiaddr %v ciaddr %v", ack.mtype, ack.yiaddr, ack.ciaddr)
	}
	if dst != netip.AddrPortFrom(addr, 68) {
		t.Fatalf("renew reply to %v, want %v:68", dst, addr)
	}
	if got := s.Leases()[0].Expires; !got.Equal(c.T.Add(time.Hour)) {
		t.Fatalf("lease expires %v, want %v", got, c.T.Add(time.Hour))
	}

	// A client renewing after its lease ran out keeps the address while no
	// one else took it.
	c.Advance(3 * time.Hour)
	ack, _ = exchange(t, s, req{mtype: msgRequest, mac: m, xid: 10, ciaddr: addr})
	if ack.mtype != msgAck {
		t.Fatalf("late renew answered with type %d", ack.mtype)
	}
}

func TestNAK(t *testing.T) {
	s, _ := newTestServer(t, nil)
	a, b := mac(1), mac(2)
	addrA := lease(t, s, a)

	cases := []struct {
		name string
		r    req
	}{
		{"init-reboot outside subnet", req{mtype: msgRequest, mac: b, xid: 1,
			opts: []opt{withRequested(netip.MustParseAddr("192.168.7.9"))}}},
		{"init-reboot taken by another client", req{mtype: msgRequest, mac: b, xid: 2,
			opts: []opt{withRequested(addrA)}}},
		{"init-reboot reserved address", req{mtype: msgRequest, mac: b, xid: 3,
			opts: []opt{withRequested(dns3)}}},
		{"selecting without an offer", req{mtype: msgRequest, mac: b, xid: 4,
			opts: []opt{withServerID(gw), withRequested(second)}}},
		{"renewing another client's address", req{mtype: msgRequest, mac: b, xid: 5, ciaddr: addrA}},
		{"lease holder asks for a different address", req{mtype: msgRequest, mac: a, xid: 6,
			opts: []opt{withRequested(second)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nak, dst := exchange(t, s, tc.r)
			if nak.mtype != msgNak {
				t.Fatalf("type %d, want NAK", nak.mtype)
			}
			if nak.yiaddr.IsValid() && !nak.yiaddr.IsUnspecified() || !nak.ciaddr.IsUnspecified() {
				t.Fatalf("NAK carries addresses yiaddr %v ciaddr %v", nak.yiaddr, nak.ciaddr)
			}
			if !bytes.Equal(nak.opts[optServerID], gw.AsSlice()) {
				t.Fatalf("NAK server id % x", nak.opts[optServerID])
			}
			if dst.String() != "255.255.255.255:68" {
				t.Fatalf("NAK sent to %v, want the broadcast", dst)
			}
		})
	}

	// A REQUEST naming another server is that server's business.
	expectNoReply(t, s, req{mtype: msgRequest, mac: b, xid: 7,
		opts: []opt{withServerID(netip.MustParseAddr("10.0.2.200")), withRequested(second)}})
	if got := s.Stats().Dropped[dropOtherServer]; got != 1 {
		t.Fatalf("other-server drops %d, want 1", got)
	}
	// The first client's lease survived all of that.
	if l := s.Leases(); len(l) != 1 || l[0].Addr != addrA {
		t.Fatalf("leases %+v", l)
	}
}

func TestInitRebootWithoutRecordGetsFreeAddress(t *testing.T) {
	s, _ := newTestServer(t, nil)
	want := netip.MustParseAddr("10.0.2.77")
	ack, _ := exchange(t, s, req{mtype: msgRequest, mac: mac(1), xid: 1, opts: []opt{withRequested(want)}})
	if ack.mtype != msgAck || ack.yiaddr != want {
		t.Fatalf("type %d addr %v, want ACK of %v", ack.mtype, ack.yiaddr, want)
	}
}

func TestReleaseThenReLease(t *testing.T) {
	s, _ := newTestServer(t, nil)
	m := mac(1)
	addr := lease(t, s, m)
	expectNoReply(t, s, req{mtype: msgRelease, mac: m, xid: 3, ciaddr: addr, opts: []opt{withServerID(gw)}})
	if l := s.Leases(); len(l) != 0 {
		t.Fatalf("leases after release: %+v", l)
	}
	if got := lease(t, s, m); got != addr {
		t.Fatalf("re-lease got %v, want the same %v", got, addr)
	}
	// A released address is free for others when the pool needs it.
	s2, _ := newTestServer(t, func(c *Config) { c.MaxLeases = 1 })
	addr = lease(t, s2, mac(1))
	expectNoReply(t, s2, req{mtype: msgRelease, mac: mac(1), xid: 3, ciaddr: addr})
	if got := lease(t, s2, mac(2)); got != addr {
		t.Fatalf("second client got %v, want released %v", got, addr)
	}
}

func TestTwoClientsGetDistinctAddresses(t *testing.T) {
	s, _ := newTestServer(t, nil)
	a := lease(t, s, mac(1))
	b := lease(t, s, mac(2))
	if a == b {
		t.Fatalf("both clients got %v", a)
	}
	if a != first || b != second {
		t.Fatalf("got %v and %v, want %v and %v", a, b, first, second)
	}
	// Stable per MAC: asking again gives the same address.
	if again := lease(t, s, mac(1)); again != a {
		t.Fatalf("client 1 moved from %v to %v", a, again)
	}
	if l := s.Leases(); len(l) != 2 || l[0].Addr != a || l[1].Addr != b {
		t.Fatalf("leases %+v", l)
	}
}

func TestReservedAddressesSkipped(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config) {
		c.RangeStart = netip.MustParseAddr("10.0.2.1")
		c.Reserved = []netip.Addr{netip.MustParseAddr("10.0.2.1"), netip.MustParseAddr("10.0.2.4")}
	})
	var got []netip.Addr
	for i := range byte(3) {
		got = append(got, lease(t, s, mac(i)))
	}
	want := []netip.Addr{netip.MustParseAddr("10.0.2.5"), netip.MustParseAddr("10.0.2.6"), netip.MustParseAddr("10.0.2.7")}
	if !slices.Equal(got, want) {
		// .2 is the gateway and router, .3 the DNS server, .1 and .4 reserved.
		t.Fatalf("addresses %v, want %v", got, want)
	}
}

func TestMaxLeasesBound(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config) { c.MaxLeases = 2 })
	lease(t, s, mac(1))
	lease(t, s, mac(2))
	expectNoReply(t, s, req{mtype: msgDiscover, mac: mac(3), xid: 1})
	if got := s.Stats().Dropped[dropPoolExhausted]; got != 1 {
		t.Fatalf("pool-exhausted drops %d, want 1", got)
	}
	// Known clients still get their offers.
	if offer, _ := exchange(t, s, req{mtype: msgDiscover, mac: mac(1), xid: 2}); offer.yiaddr != first {
		t.Fatalf("known client offered %v", offer.yiaddr)
	}
}

func TestSmallSubnetExhausted(t *testing.T) {
	// A /29 has hosts .1 to .6; .2 and .3 are the network's own.
	s, _ := newTestServer(t, func(c *Config) {
		c.Subnet = netip.MustParsePrefix("10.0.2.0/29")
		c.RangeStart = netip.MustParseAddr("10.0.2.4")
	})
	for i := range byte(3) {
		lease(t, s, mac(i))
	}
	expectNoReply(t, s, req{mtype: msgDiscover, mac: mac(9), xid: 1})
}

func TestExpiredLeasesReclaimed(t *testing.T) {
	s, c := newTestServer(t, func(c *Config) { c.MaxLeases = 2 })
	a := lease(t, s, mac(1))
	c.Advance(10 * time.Minute)
	lease(t, s, mac(2))

	// Still within the lease: a third client is refused.
	expectNoReply(t, s, req{mtype: msgDiscover, mac: mac(3), xid: 1})

	// Both expire; the one that expired first is reclaimed for the newcomer.
	c.Advance(2 * time.Hour)
	if got := lease(t, s, mac(3)); got != a {
		t.Fatalf("newcomer got %v, want reclaimed %v", got, a)
	}
	// Client 2 expired too but nobody needed its address: it keeps it.
	if got := lease(t, s, mac(2)); got != second {
		t.Fatalf("client 2 got %v after expiry, want its old %v", got, second)
	}
	if l := s.Leases(); len(l) != 2 {
		t.Fatalf("leases %+v", l)
	}
}

func TestDeclineHoldsAddressBack(t *testing.T) {
	s, c := newTestServer(t, nil)
	m := mac(1)
	addr := lease(t, s, m)
	expectNoReply(t, s, req{mtype: msgDecline, mac: m, xid: 5, opts: []opt{withServerID(gw), withRequested(addr)}})
	if l := s.Leases(); len(l) != 0 {
		t.Fatalf("leases after decline: %+v", l)
	}
	if got := lease(t, s, m); got == addr {
		t.Fatalf("declined address %v offered again", addr)
	}
	// After the hold the address returns to the pool.
	c.Advance(declineHold + time.Second)
	if got := lease(t, s, mac(2)); got != addr {
		t.Fatalf("after the hold, got %v, want %v", got, addr)
	}
	// A DECLINE for an address the client does not hold changes nothing.
	expectNoReply(t, s, req{mtype: msgDecline, mac: mac(7), xid: 6, opts: []opt{withRequested(addr)}})
	if l := s.Leases(); len(l) != 2 {
		t.Fatalf("leases %+v", l)
	}
}

func TestInform(t *testing.T) {
	s, _ := newTestServer(t, nil)
	ci := netip.MustParseAddr("10.0.2.99")
	ack, dst := exchange(t, s, req{mtype: msgInform, mac: mac(1), xid: 1, ciaddr: ci, opts: []opt{withPRL(1, 3, 6, 15)}})
	if ack.mtype != msgAck || !ack.yiaddr.IsUnspecified() || ack.ciaddr != ci {
		t.Fatalf("type %d yiaddr %v ciaddr %v", ack.mtype, ack.yiaddr, ack.ciaddr)
	}
	if dst != netip.AddrPortFrom(ci, 68) {
		t.Fatalf("sent to %v", dst)
	}
	for _, code := range []byte{optLeaseTime, optRenewalTime, optRebindingTime} {
		if _, ok := ack.opts[code]; ok {
			t.Fatalf("INFORM reply carries lease option %d", code)
		}
	}
	if !bytes.Equal(ack.opts[optRouter], gw.AsSlice()) {
		t.Fatalf("router % x", ack.opts[optRouter])
	}
	if len(s.Leases()) != 0 {
		t.Fatalf("INFORM created a lease")
	}
}

func TestOptionEncodings(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config) {
		c.MTU = 65520
		c.Domain = "example.org"
		c.Search = []string{"eng.apple.com", "marketing.apple.com."}
		c.Hostname = "guest1"
		c.DNS = []netip.Addr{dns3, netip.MustParseAddr("10.0.2.4")}
		c.LeaseTime = 2 * time.Hour
	})
	offer, _ := exchange(t, s, req{mtype: msgDiscover, mac: mac(1), xid: 1,
		opts: []opt{withPRL(1, 3, 6, 12, 15, 26, 119)}})
	want := map[byte][]byte{
		optMessageType:   {msgOffer},
		optServerID:      {10, 0, 2, 2},
		optLeaseTime:     {0, 0, 0x1c, 0x20}, // 7200
		optRenewalTime:   {0, 0, 0x0e, 0x10}, // 3600
		optRebindingTime: {0, 0, 0x18, 0x9c}, // 6300
		optSubnetMask:    {255, 255, 255, 0},
		optRouter:        {10, 0, 2, 2},
		optDNS:           {10, 0, 2, 3, 10, 0, 2, 4},
		optInterfaceMTU:  {0xff, 0xf0},
		optHostname:      []byte("guest1"),
		optDomainName:    []byte("example.org"),
		// The example of RFC 3397 section 2, with its compression pointer.
		optDomainSearch: append(
			[]byte("\x03eng\x05apple\x03com\x00"),
			append([]byte("\x09marketing"), 0xc0, 0x04)...),
	}
	for code, w := range want {
		if got := offer.opts[code]; !bytes.Equal(got, w) {
			t.Errorf("option %d = % x, want % x", code, got, w)
		}
	}
	if len(offer.opts) != len(want) {
		t.Errorf("options sent %v, want exactly %d", offer.order, len(want))
	}
	if offer.order[0] != optMessageType {
		t.Errorf("option 53 is not first: %v", offer.order)
	}
}

func TestParameterRequestList(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config) {
		c.Domain = "example.org"
		c.Search = []string{"example.org"}
		c.Hostname = "guest1"
	})
	// Asking for nothing optional still gets the essentials.
	offer, _ := exchange(t, s, req{mtype: msgDiscover, mac: mac(1), xid: 1, opts: []opt{withPRL(1)}})
	for _, code := range []byte{optSubnetMask, optRouter, optDNS, optLeaseTime, optRenewalTime, optRebindingTime, optServerID} {
		if _, ok := offer.opts[code]; !ok {
			t.Errorf("essential option %d missing", code)
		}
	}
	for _, code := range []byte{optDomainName, optDomainSearch, optHostname, optInterfaceMTU} {
		if _, ok := offer.opts[code]; ok {
			t.Errorf("option %d sent though not requested (or not configured)", code)
		}
	}
	// Requested ones come in the client's order.
	offer, _ = exchange(t, s, req{mtype: msgDiscover, mac: mac(1), xid: 2, opts: []opt{withPRL(119, 28, 15)}})
	tail := offer.order[len(offer.order)-3:]
	if !slices.Equal(tail, []byte{optDomainSearch, optBroadcast, optDomainName}) {
		t.Errorf("order %v, want the requested options last in request order", offer.order)
	}
	if !bytes.Equal(offer.opts[optBroadcast], []byte{10, 0, 2, 255}) {
		t.Errorf("broadcast % x", offer.opts[optBroadcast])
	}
	// No list at all: everything configured.
	offer, _ = exchange(t, s, req{mtype: msgDiscover, mac: mac(1), xid: 3})
	for _, code := range []byte{optDomainName, optDomainSearch, optHostname} {
		if _, ok := offer.opts[code]; !ok {
			t.Errorf("option %d missing without a request list", code)
		}
	}
}

func TestLongSearchListRespectsSizeAndSplits(t *testing.T) {
	var names []string
	for i := range 30 {
		names = append(names, strings.Repeat(string(rune('a'+i%26)), 20)+".example.com")
	}
	s, _ := newTestServer(t, func(c *Config) { c.Search = names })
	want := encodeSearchList(names)
	if len(want) <= 255 {
		t.Fatalf("test needs a search list longer than one option, got %d bytes", len(want))
	}

	// Without option 57 the reply stays within 576-byte datagrams and the
	// list, which does not fit, is left out rather than cut.
	reply, _, _ := s.Handle(req{mtype: msgDiscover, mac: mac(1), xid: 1}.build())
	if len(reply) > minReplySize {
		t.Fatalf("reply %d bytes, larger than %d", len(reply), minReplySize)
	}
	if _, ok := decode(t, reply).opts[optDomainSearch]; ok {
		t.Fatalf("search list sent in a reply too small for it")
	}

	// With room, it is split into several option 119 instances that
	// concatenate back to the list (RFC 3396).
	reply, _, _ = s.Handle(req{mtype: msgDiscover, mac: mac(1), xid: 2,
		opts: []opt{{optMaxMessageSize, []byte{0x05, 0xdc}}}}.build())
	if len(reply) > 1500-28 {
		t.Fatalf("reply %d bytes exceeds the client's limit", len(reply))
	}
	if got := decode(t, reply).opts[optDomainSearch]; !bytes.Equal(got, want) {
		t.Fatalf("search list\n got % x\nwant % x", got, want)
	}
}

func TestReserve(t *testing.T) {
	s, _ := newTestServer(t, nil)
	static := netip.MustParseAddr("10.0.2.100")
	m := mac(1)
	if err := s.Reserve(m, static); err != nil {
		t.Fatal(err)
	}
	if got := lease(t, s, m); got != static {
		t.Fatalf("static client got %v, want %v", got, static)
	}
	l := s.Leases()
	if len(l) != 1 || !l[0].Static || l[0].Addr != static {
		t.Fatalf("leases %+v", l)
	}
	if l[0].Expires.IsZero() {
		t.Fatalf("a static binding a client asked for shows no expiry: %+v", l)
	}
	// Release does not undo a static binding, but it ends the client's
	// lease of it (dhclient -r on slipway run's own address showed the
	// expiry of the lease it had given back).
	expectNoReply(t, s, req{mtype: msgRelease, mac: m, xid: 3, ciaddr: static})
	if l := s.Leases(); len(l) != 1 || !l[0].Static || !l[0].Expires.IsZero() {
		t.Fatalf("leases after the static client's release: %+v, want the binding without an expiry", l)
	}
	if got := lease(t, s, m); got != static {
		t.Fatalf("static client got %v after its release, want %v", got, static)
	}

	dyn := lease(t, s, mac(2))
	for _, tc := range []struct {
		mac  net.HardwareAddr
		addr netip.Addr
		want string
	}{
		{mac(3), netip.MustParseAddr("10.0.3.1"), "not a host address"},
		{mac(3), netip.MustParseAddr("10.0.2.255"), "not a host address"},
		{mac(3), gw, "reserved"},
		{mac(3), dyn, "leased to"},
		{net.HardwareAddr{1, 2}, netip.MustParseAddr("10.0.2.101"), "not an Ethernet MAC"},
	} {
		if err := s.Reserve(tc.mac, tc.addr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Reserve(%v, %v) = %v, want error with %q", tc.mac, tc.addr, err, tc.want)
		}
	}
}

func TestMalformedDropped(t *testing.T) {
	good := req{mtype: msgDiscover, mac: mac(1), xid: 1}.build()
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := []struct {
		name   string
		msg    []byte
		reason string
	}{
		{"empty", nil, dropShort},
		{"header only", good[:fixedLen], dropShort},
		{"bad cookie", mutate(func(b []byte) []byte { b[fixedLen] = 0; return b }), dropBadCookie},
		{"reply op", mutate(func(b []byte) []byte { b[offOp] = opReply; return b }), dropNotRequest},
		{"token ring", mutate(func(b []byte) []byte { b[offHtype] = 6; return b }), dropBadHtype},
		{"hlen 16", mutate(func(b []byte) []byte { b[offHlen] = 16; return b }), dropBadHlen},
		{"option overruns", mutate(func(b []byte) []byte { return append(b[:len(b)-1], 12, 200, 'x') }), dropBadOptions},
		{"option without length", mutate(func(b []byte) []byte { return append(b[:len(b)-1], 12) }), dropBadOptions},
		{"message type length 2", mutate(func(b []byte) []byte { b[fixedLen+5] = 2; return b }), dropBadOptions},
		{"requested ip length 3", mutate(func(b []byte) []byte { return append(b[:len(b)-1], 50, 3, 1, 2, 3, 255) }), dropBadOptions},
		{"bad overload", mutate(func(b []byte) []byte { return append(b[:len(b)-1], 52, 1, 9, 255) }), dropBadOptions},
		{"bootp", mutate(func(b []byte) []byte { return append(b[:fixedLen+4], 255) }), dropNoMessageType},
		{"offer from a client", mutate(func(b []byte) []byte { b[fixedLen+6] = msgOffer; return b }), dropUnsupported},
		{"zero chaddr", mutate(func(b []byte) []byte { clear(b[offChaddr : offChaddr+16]); return b }), dropBadChaddr},
		{"request without address", req{mtype: msgRequest, mac: mac(1), xid: 1}.build(), dropMissingAddr},
	}
	s, _ := newTestServer(t, nil)
	for _, tc := range cases {
		before := s.Stats().Dropped[tc.reason]
		if reply, _, ok := s.Handle(tc.msg); ok {
			t.Errorf("%s: got a reply % x", tc.name, reply)
		}
		if got := s.Stats().Dropped[tc.reason]; got != before+1 {
			t.Errorf("%s: %q count %d, want %d", tc.name, tc.reason, got, before+1)
		}
	}
	st := s.Stats()
	var dropped uint64
	for _, n := range st.Dropped {
		dropped += n
	}
	if st.Received != uint64(len(cases)) || st.Replied != 0 || dropped != st.Received {
		t.Fatalf("stats %+v", st)
	}
}

func TestOverloadedOptionsRead(t *testing.T) {
	// A client may put options into the file field (option 52 = 1).
	b := req{mtype: msgDiscover, mac: mac(1), xid: 1, opts: []opt{{optOverload, []byte{1}}}}.build()
	copy(b[offFile:], []byte{optRequestedIP, 4, 10, 0, 2, 50, optEnd})
	s, _ := newTestServer(t, nil)
	reply, _, ok := s.Handle(b)
	if !ok {
		t.Fatal("no reply")
	}
	if got := decode(t, reply).yiaddr; got != netip.MustParseAddr("10.0.2.50") {
		t.Fatalf("offered %v, want the address requested in the file field", got)
	}
}

// TestBootFile: with a boot file the reply names it in the BOOTP file
// field with the server as next server (what PXE firmware reads), and as
// options 66/67 to a client asking for them; without one, none of it.
func TestBootFile(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config) { c.BootFile, c.TFTPServerName = "boot.ipxe", "tftp.lab" })
	r := req{mtype: msgDiscover, mac: mac(1), xid: 1, opts: []opt{withPRL(1, 3, 66, 67)}}
	raw, _, ok := s.Handle(r.build())
	if !ok {
		t.Fatal("no offer")
	}
	if got := addrAt(raw, offSiaddr); got.String() != "10.0.2.2" {
		t.Errorf("siaddr %v", got)
	}
	if got := string(bytes.TrimRight(raw[offFile:offFile+128], "\x00")); got != "boot.ipxe" {
		t.Errorf("file field %q", got)
	}
	p := decode(t, raw)
	if string(p.opts[optBootFileName]) != "boot.ipxe" || string(p.opts[optTFTPServerName]) != "tftp.lab" {
		t.Errorf("options 66/67: %q %q", p.opts[optTFTPServerName], p.opts[optBootFileName])
	}

	plain, _ := newTestServer(t, nil)
	raw, _, _ = plain.Handle(r.build())
	if addrAt(raw, offSiaddr).IsValid() && !addrAt(raw, offSiaddr).IsUnspecified() || raw[offFile] != 0 {
		t.Errorf("a server without a boot file sent siaddr %v, file % x", addrAt(raw, offSiaddr), raw[offFile:offFile+8])
	}
	long := testConfig(servicetest.NewClock())
	long.BootFile = strings.Repeat("x", 128)
	if _, err := New(long, nil); err == nil {
		t.Error("a 128-byte boot file accepted")
	}
}

// Config.Known gates new leases: a client the network has not seen gets
// no offer and no ACK, while clients with a lease keep renewing even if
// Known would now say no.
func TestUnknownClientsGetNoLease(t *testing.T) {
	known := map[string]bool{mac(1).String(): true}
	s, _ := newTestServer(t, func(c *Config) {
		c.Known = func(m net.HardwareAddr) bool { return known[m.String()] }
	})
	addr := lease(t, s, mac(1))
	expectNoReply(t, s, req{mtype: msgDiscover, mac: mac(2), xid: 1})
	expectNoReply(t, s, req{mtype: msgRequest, mac: mac(2), xid: 2, opts: []opt{withRequested(second)}})
	if got := s.Stats().Dropped[dropUnknownClient]; got != 2 {
		t.Fatalf("unknown-client drops %d, want 2", got)
	}
	if l := s.Leases(); len(l) != 1 {
		t.Fatalf("leases %+v, want only the known client's", l)
	}
	delete(known, mac(1).String())
	ack, _ := exchange(t, s, req{mtype: msgRequest, mac: mac(1), xid: 3, ciaddr: addr})
	if ack.mtype != msgAck || ack.yiaddr != addr {
		t.Fatalf("renewal of a held lease: type %d addr %v, want ACK of %v", ack.mtype, ack.yiaddr, addr)
	}
}
