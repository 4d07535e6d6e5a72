package dhcp6

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

func TestNewRejectsBadConfig(t *testing.T) {
	reject := servicetest.ConfigRejecter(t, func() Config { return testConfig(&servicetest.Clock{}) }, servicetest.NoLog(New))
	reject("no duid", "ServerDUID of 0 bytes", func(c *Config) { c.ServerDUID = nil })
	reject("long duid", "ServerDUID of 131 bytes", func(c *Config) { c.ServerDUID = make([]byte, 131) })
	reject("no prefix", "Prefix invalid", func(c *Config) { c.Prefix = netip.Prefix{} })
	reject("v4 prefix", "Prefix 10.0.2.0/24", func(c *Config) { c.Prefix = netip.MustParsePrefix("10.0.2.0/24") })
	reject("tiny prefix", "/120", func(c *Config) { c.Prefix = netip.MustParsePrefix("fd00::/127") })
	reject("link-local prefix", "link-local", func(c *Config) { c.Prefix = netip.MustParsePrefix("fe80::/64") })
	reject("no range", "RangeStart invalid", func(c *Config) { c.RangeStart = netip.Addr{} })
	reject("range outside", "RangeStart fd01::100", func(c *Config) { c.RangeStart = netip.MustParseAddr("fd01::100") })
	reject("range anycast", "RangeStart fd00::", func(c *Config) { c.RangeStart = netip.MustParseAddr("fd00::") })
	reject("v4 dns", "DNS server 10.0.2.3", func(c *Config) { c.DNS = []netip.Addr{netip.MustParseAddr("10.0.2.3")} })
	reject("many dns", "17 DNS servers", func(c *Config) { c.DNS = make([]netip.Addr, 17) })
	reject("bad search", `Search: domain name "a..b"`, func(c *Config) { c.Search = []string{"ok.example", "a..b"} })
	reject("long search", "Search list takes", func(c *Config) {
		c.Search = []string{strings.Repeat("abcdefghi.", 20) + "x", strings.Repeat("abcdefghi.", 20) + "y", strings.Repeat("abcdefghi.", 20) + "z"}
	})
	reject("v4 reserved", "Reserved address 10.0.2.2", func(c *Config) { c.Reserved = []netip.Addr{netip.MustParseAddr("10.0.2.2")} })
	reject("negative leases", "MaxLeases -1", func(c *Config) { c.MaxLeases = -1 })
	reject("short preferred", "PreferredLifetime 1ms", func(c *Config) { c.PreferredLifetime = time.Millisecond })
	reject("huge valid", "ValidLifetime", func(c *Config) { c.ValidLifetime = 200 * 365 * 24 * time.Hour })
	reject("preferred > valid", "longer than ValidLifetime", func(c *Config) { c.PreferredLifetime, c.ValidLifetime = 2*time.Hour, time.Hour })
}

func TestDUIDLL(t *testing.T) {
	if got := hex.EncodeToString(DUIDLL(routerMAC)); got != "0003000152550a000202" {
		t.Fatalf("DUIDLL = %s", got)
	}
}

// TestAdvertiseBytes pins the wire encoding of an ADVERTISE to a SOLICIT
// laid out as busybox udhcpc6 sends it (DUID-LL, elapsed time, IA_NA
// without addresses, ORO for DNS and search list).
func TestAdvertiseBytes(t *testing.T) {
	s, _ := newTestServer(t, nil)
	req := msg(msgSolicit, 0xabcdef, clientIDOpt(duidLL(1)), elapsedOpt(0), iaNAOpt(0x12345601, 0, 0), oroOpt(23, 24))
	got, ok := s.Handle(req, clientLL)
	if !ok {
		t.Fatal("no reply")
	}
	want := servicetest.Unhex(t, `
		02 abcdef
		0001 000a 0003 0001 525400123401
		0002 000a 0003 0001 52550a000202
		0007 0001 ff
		0003 0028 12345601 00000708 00000b40
		          0005 0018 fd000000000000000000000000000100 00000e10 00001c20
		0017 0010 fd000000000000000000000000000003
		0018 000d 07 6578616d706c65 03 6f7267 00
	`)
	if !bytes.Equal(got, want) {
		t.Fatalf("ADVERTISE\n got % x\nwant % x", got, want)
	}
	if len(s.Leases()) != 0 {
		t.Fatalf("an advertised address must not show as a lease: %v", s.Leases())
	}
}

// TestInformationRequestBytes is the stateless exchange: no client
// identifier (allowed here only), the options asked for, the refresh
// time among them, and no addresses.
func TestInformationRequestBytes(t *testing.T) {
	s, _ := newTestServer(t, nil)
	got, ok := s.Handle(msg(msgInformationRequest, 0x010203, elapsedOpt(0), oroOpt(23, 24, 32)), clientLL)
	if !ok {
		t.Fatal("no reply")
	}
	want := servicetest.Unhex(t, `
		07 010203
		0002 000a 0003 0001 52550a000202
		0017 0010 fd000000000000000000000000000003
		0018 000d 07 6578616d706c65 03 6f7267 00
		0020 0004 00015180
	`)
	if !bytes.Equal(got, want) {
		t.Fatalf("REPLY\n got % x\nwant % x", got, want)
	}

	// A client identifier is echoed; an ORO without the search list gets
	// none; no ORO gets everything but the refresh time.
	r := exchange(t, s, msg(msgInformationRequest, 4, clientIDOpt(duidLLT(1)), oroOpt(23)))
	if !bytes.Equal(r.one(t, optClientID), duidLLT(1)) || len(r.opts[optDomainList]) != 0 || len(r.opts[optInfoRefreshTime]) != 0 {
		t.Fatalf("reply options %v", r.order)
	}
	r = exchange(t, s, msg(msgInformationRequest, 5, clientIDOpt(duidLLT(1)), serverIDOpt(serverDUID)))
	if len(r.opts[optDNSServers]) != 1 || len(r.opts[optDomainList]) != 1 || len(r.opts[optInfoRefreshTime]) != 0 || len(r.opts[optIANA]) != 0 {
		t.Fatalf("reply options %v", r.order)
	}
	if len(s.Leases()) != 0 {
		t.Fatalf("leases after stateless exchanges: %v", s.Leases())
	}
}

func TestSolicitRequest(t *testing.T) {
	s, c := newTestServer(t, nil)
	var events []Lease
	s.OnLease(func(l Lease) { events = append(events, l) })
	duid := duidLLT(1) // as dhclient -6 makes it
	adv := exchange(t, s, msg(msgSolicit, 1, clientIDOpt(duid), elapsedOpt(0), oroOpt(23, 24, 39), iaNAOpt(0x0e123401, 3600, 5400)))
	if adv.mtype != msgAdvertise || !bytes.Equal(adv.one(t, optServerID), serverDUID) || !bytes.Equal(adv.one(t, optClientID), duid) {
		t.Fatalf("ADVERTISE type %d options %v", adv.mtype, adv.order)
	}
	ia := adv.ias(t, optIANA)
	if len(ia) != 1 || ia[0].iaid != 0x0e123401 || len(ia[0].addrs) != 1 || ia[0].addrs[0].addr != first {
		t.Fatalf("advertised IA_NA %+v", ia)
	}

	rep := exchange(t, s, msg(msgRequest, 2, clientIDOpt(duid), serverIDOpt(serverDUID), elapsedOpt(0), oroOpt(23, 24, 39),
		iaNAOpt(0x0e123401, 3600, 5400, iaAddrOpt(first, 7200, 7500))))
	ia = rep.ias(t, optIANA)
	want := iaReply{iaid: 0x0e123401, t1: 1800, t2: 2880, addrs: []addrReply{{first, 3600, 7200}}, status: -1}
	if rep.mtype != msgReply || len(ia) != 1 || !equalIA(ia[0], want) {
		t.Fatalf("REPLY type %d IA_NA %+v, want %+v", rep.mtype, ia, want)
	}
	if rep.status(t) != -1 || len(rep.opts[optPreference]) != 0 {
		t.Fatalf("REPLY options %v", rep.order)
	}
	wantLease := Lease{DUID: hex.EncodeToString(duid), IAID: 0x0e123401, Addr: first, Expires: c.T.Add(2 * time.Hour)}
	if got := s.Leases(); len(got) != 1 || got[0] != wantLease {
		t.Fatalf("leases %+v, want [%+v]", got, wantLease)
	}
	// The ADVERTISE granted nothing; the REPLY did.
	if len(events) != 1 || events[0] != wantLease {
		t.Fatalf("OnLease events %+v, want [%+v]", events, wantLease)
	}
	if st := s.Stats(); st.Received != 2 || st.Replied != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func equalIA(a, b iaReply) bool {
	if a.iaid != b.iaid || a.t1 != b.t1 || a.t2 != b.t2 || a.status != b.status || len(a.addrs) != len(b.addrs) {
		return false
	}
	for i := range a.addrs {
		if a.addrs[i] != b.addrs[i] {
			return false
		}
	}
	return true
}

// TestRapidCommit is a SOLICIT as systemd-networkd sends it: DUID-EN, Rapid
// Commit, an IA_PD next to the IA_NA, and options the server ignores.
func TestRapidCommit(t *testing.T) {
	s, _ := newTestServer(t, nil)
	duid := duidEN(1)
	rep := exchange(t, s, msg(msgSolicit, 7, clientIDOpt(duid), elapsedOpt(0), rapidOpt(),
		opt(39, []byte{0, 5, 'g', 'u', 'e', 's', 't'}), // client FQDN
		oroOpt(23, 24, 56, 82, 39),
		iaNAOpt(0x7e420601, 0, 0),
		opt(optIAPD, u32(0x7e420602), u32(0), u32(0))))
	if rep.mtype != msgReply || len(rep.opts[optRapidCommit]) != 1 || len(rep.opts[optPreference]) != 0 {
		t.Fatalf("type %d options %v, want a REPLY with Rapid Commit", rep.mtype, rep.order)
	}
	na := rep.ias(t, optIANA)
	if len(na) != 1 || len(na[0].addrs) != 1 || na[0].addrs[0].addr != first {
		t.Fatalf("IA_NA %+v", na)
	}
	pd := rep.ias(t, optIAPD)
	if len(pd) != 1 || pd[0].iaid != 0x7e420602 || pd[0].status != statusNoPrefixAvail {
		t.Fatalf("IA_PD %+v, want NoPrefixAvail", pd)
	}
	if got := s.Leases(); len(got) != 1 || got[0].Addr != first {
		t.Fatalf("rapid commit left leases %+v", got)
	}
}

func TestRenewAndRebind(t *testing.T) {
	s, c := newTestServer(t, nil)
	duid := duidLL(1)
	a := lease(t, s, duid, 1)

	c.Advance(30 * time.Minute) // T1
	rep := exchange(t, s, msg(msgRenew, 3, clientIDOpt(duid), serverIDOpt(serverDUID), elapsedOpt(0), iaNAOpt(1, 1800, 2880, iaAddrOpt(a, 3600, 7200))))
	if ia := rep.ias(t, optIANA); rep.mtype != msgReply || len(ia) != 1 || len(ia[0].addrs) != 1 || ia[0].addrs[0] != (addrReply{a, 3600, 7200}) {
		t.Fatalf("RENEW reply %d %+v", rep.mtype, ia)
	}
	if got := s.Leases()[0].Expires; !got.Equal(c.T.Add(2 * time.Hour)) {
		t.Fatalf("renewed lease expires %v", got)
	}

	// REBIND goes to any server, so names none.
	c.Advance(20 * time.Minute)
	rep = exchange(t, s, msg(msgRebind, 4, clientIDOpt(duid), elapsedOpt(0), iaNAOpt(1, 0, 0, iaAddrOpt(a, 0, 0))))
	if ia := rep.ias(t, optIANA); len(ia) != 1 || len(ia[0].addrs) != 1 || ia[0].addrs[0].addr != a {
		t.Fatalf("REBIND reply %+v", ia)
	}
	expectDrop(t, s, msg(msgRebind, 5, clientIDOpt(duid), serverIDOpt(serverDUID), iaNAOpt(1, 0, 0)), dropUnexpectedSID)

	// Renewing an address that is not its binding: the binding's address
	// is granted and the other goes back with lifetimes of zero.
	other := netip.MustParseAddr("fd00::beef")
	rep = exchange(t, s, msg(msgRenew, 6, clientIDOpt(duid), serverIDOpt(serverDUID), iaNAOpt(1, 0, 0, iaAddrOpt(other, 0, 0))))
	ia := rep.ias(t, optIANA)
	want := iaReply{iaid: 1, t1: 1800, t2: 2880, addrs: []addrReply{{a, 3600, 7200}, {other, 0, 0}}, status: -1}
	if len(ia) != 1 || !equalIA(ia[0], want) {
		t.Fatalf("RENEW of a stranger address: %+v, want %+v", ia, want)
	}
}

// TestRenewAfterRestart: a server that has forgotten the client (slipway
// restarted) lets it keep its address when it is free.
func TestRenewAfterRestart(t *testing.T) {
	s, _ := newTestServer(t, nil)
	keep := netip.MustParseAddr("fd00::123")
	rep := exchange(t, s, msg(msgRenew, 1, clientIDOpt(duidLL(1)), serverIDOpt(serverDUID), iaNAOpt(9, 0, 0, iaAddrOpt(keep, 0, 0))))
	if ia := rep.ias(t, optIANA); len(ia) != 1 || len(ia[0].addrs) != 1 || ia[0].addrs[0].addr != keep {
		t.Fatalf("RENEW of an unknown binding: %+v", ia)
	}
	// Another client renewing the same address gets a different one and
	// is told to drop the one it has.
	rep = exchange(t, s, msg(msgRebind, 2, clientIDOpt(duidLL(2)), iaNAOpt(9, 0, 0, iaAddrOpt(keep, 0, 0))))
	want := iaReply{iaid: 9, t1: 1800, t2: 2880, addrs: []addrReply{{first, 3600, 7200}, {keep, 0, 0}}, status: -1}
	if ia := rep.ias(t, optIANA); len(ia) != 1 || !equalIA(ia[0], want) {
		t.Fatalf("REBIND of a taken address: %+v, want %+v", ia, want)
	}
	// Addresses outside the pool are never taken over.
	rep = exchange(t, s, msg(msgRebind, 3, clientIDOpt(duidLL(3)), iaNAOpt(9, 0, 0, iaAddrOpt(gw, 0, 0))))
	if ia := rep.ias(t, optIANA); len(ia) != 1 || ia[0].addrs[0].addr != second || ia[0].addrs[1] != (addrReply{gw, 0, 0}) {
		t.Fatalf("REBIND of a reserved address: %+v", ia)
	}
}

func TestReleaseThenLeaseAgain(t *testing.T) {
	s, _ := newTestServer(t, nil)
	duid := duidLL(1)
	a := lease(t, s, duid, 1)
	rep := exchange(t, s, msg(msgRelease, 3, clientIDOpt(duid), serverIDOpt(serverDUID), iaNAOpt(1, 0, 0, iaAddrOpt(a, 0, 0)), iaNAOpt(2, 0, 0)))
	if rep.mtype != msgReply || rep.status(t) != statusSuccess {
		t.Fatalf("RELEASE reply %d status %d", rep.mtype, rep.status(t))
	}
	// Only the unknown IA is listed, with NoBinding.
	if ia := rep.ias(t, optIANA); len(ia) != 1 || ia[0].iaid != 2 || ia[0].status != statusNoBinding || len(ia[0].addrs) != 0 {
		t.Fatalf("RELEASE IAs %+v", ia)
	}
	if len(rep.opts[optDNSServers]) != 0 {
		t.Fatal("RELEASE reply carries configuration")
	}
	if len(s.Leases()) != 0 {
		t.Fatalf("leases after release: %v", s.Leases())
	}
	// Asking again, the client gets the same address.
	if again := lease(t, s, duid, 1); again != a {
		t.Fatalf("after release got %v, had %v", again, a)
	}
}

func TestDecline(t *testing.T) {
	s, c := newTestServer(t, nil)
	a := lease(t, s, duidLL(1), 1)
	rep := exchange(t, s, msg(msgDecline, 3, clientIDOpt(duidLL(1)), serverIDOpt(serverDUID), iaNAOpt(1, 0, 0, iaAddrOpt(a, 0, 0))))
	if rep.status(t) != statusSuccess || len(rep.opts[optIANA]) != 0 {
		t.Fatalf("DECLINE reply status %d options %v", rep.status(t), rep.order)
	}
	// The declined address is held back, from this client too.
	if b := lease(t, s, duidLL(1), 1); b == a {
		t.Fatalf("declined address %v handed out again at once", a)
	}
	c.Advance(declineHold)
	if b := lease(t, s, duidLL(2), 1); b != a {
		t.Fatalf("after the hold got %v, want %v back", b, a)
	}
}

func TestConfirm(t *testing.T) {
	s, _ := newTestServer(t, nil)
	duid := duidLL(1)
	rep := exchange(t, s, msg(msgConfirm, 1, clientIDOpt(duid), iaNAOpt(1, 0, 0, iaAddrOpt(netip.MustParseAddr("fd00::77"), 0, 0))))
	if rep.mtype != msgReply || rep.status(t) != statusSuccess || len(rep.opts[optIANA]) != 0 {
		t.Fatalf("CONFIRM on link: type %d status %d options %v", rep.mtype, rep.status(t), rep.order)
	}
	rep = exchange(t, s, msg(msgConfirm, 2, clientIDOpt(duid), iaNAOpt(1, 0, 0, iaAddrOpt(netip.MustParseAddr("fd00::77"), 0, 0), iaAddrOpt(netip.MustParseAddr("2001:db8::1"), 0, 0))))
	if rep.status(t) != statusNotOnLink {
		t.Fatalf("CONFIRM off link: status %d", rep.status(t))
	}
	expectDrop(t, s, msg(msgConfirm, 3, clientIDOpt(duid), iaNAOpt(1, 0, 0)), dropNoAddresses)
}

func TestClientsGetDistinctStableAddresses(t *testing.T) {
	s, c := newTestServer(t, nil)
	a := lease(t, s, duidLL(1), 1)
	b := lease(t, s, duidLLT(2), 1)
	a2 := lease(t, s, duidLL(1), 2) // a second IA_NA of the first client
	if a != first || b != second || a2 == a || a2 == b {
		t.Fatalf("addresses %v %v %v", a, b, a2)
	}
	// Soliciting again while bound, or long after expiry while no one
	// took the address, gives the same one.
	if again := lease(t, s, duidLL(1), 1); again != a {
		t.Fatalf("same client got %v, then %v", a, again)
	}
	c.Advance(24 * time.Hour)
	if len(s.Leases()) != 0 {
		t.Fatalf("leases after expiry: %v", s.Leases())
	}
	if again := lease(t, s, duidLLT(2), 1); again != b {
		t.Fatalf("after expiry got %v, had %v", again, b)
	}
}

func TestPoolBound(t *testing.T) {
	s, c := newTestServer(t, func(c *Config) { c.MaxLeases = 2 })
	lease(t, s, duidLL(1), 1)
	lease(t, s, duidLL(2), 1)

	adv := exchange(t, s, msg(msgSolicit, 1, clientIDOpt(duidLL(3)), iaNAOpt(1, 0, 0)))
	ia := adv.ias(t, optIANA)
	if adv.mtype != msgAdvertise || len(ia) != 1 || ia[0].status != statusNoAddrsAvail || len(ia[0].addrs) != 0 {
		t.Fatalf("full pool: type %d IA_NA %+v, want NoAddrsAvail", adv.mtype, ia)
	}
	rep := exchange(t, s, msg(msgRequest, 2, clientIDOpt(duidLL(3)), serverIDOpt(serverDUID), iaNAOpt(1, 0, 0)))
	if ia := rep.ias(t, optIANA); len(ia) != 1 || ia[0].status != statusNoAddrsAvail {
		t.Fatalf("full pool REQUEST: %+v", ia)
	}
	// Once a lease expires its room is reclaimed for the newcomer.
	c.Advance(3 * time.Hour)
	if a := lease(t, s, duidLL(3), 1); !prefix.Contains(a) {
		t.Fatalf("after expiry got %v", a)
	}
	if n := len(s.Leases()); n != 1 {
		t.Fatalf("%d leases", n)
	}
}

// TestUnservedIATypes: temporary addresses and prefixes are declined
// with a status, never silently dropped.
func TestUnservedIATypes(t *testing.T) {
	s, _ := newTestServer(t, nil)
	rep := exchange(t, s, msg(msgSolicit, 1, clientIDOpt(duidLL(1)), opt(optIATA, u32(5)), opt(optIAPD, u32(6), u32(0), u32(0))))
	if ta := rep.ias(t, optIATA); len(ta) != 1 || ta[0].iaid != 5 || ta[0].status != statusNoAddrsAvail {
		t.Fatalf("IA_TA %+v", ta)
	}
	if pd := rep.ias(t, optIAPD); len(pd) != 1 || pd[0].iaid != 6 || pd[0].status != statusNoPrefixAvail {
		t.Fatalf("IA_PD %+v", pd)
	}
	// Renewing them finds no binding.
	rep = exchange(t, s, msg(msgRenew, 2, clientIDOpt(duidLL(1)), serverIDOpt(serverDUID), opt(optIATA, u32(5)), opt(optIAPD, u32(6), u32(0), u32(0))))
	if ta := rep.ias(t, optIATA); len(ta) != 1 || ta[0].iaid != 5 || ta[0].status != statusNoBinding {
		t.Fatalf("renewed IA_TA %+v", ta)
	}
	if pd := rep.ias(t, optIAPD); len(pd) != 1 || pd[0].iaid != 6 || pd[0].status != statusNoBinding {
		t.Fatalf("renewed IA_PD %+v", pd)
	}
}

// TestDrops covers RFC 8415 section 16's rules on identifiers, and
// malformed input.
func TestDrops(t *testing.T) {
	s, _ := newTestServer(t, nil)
	cid, sid := clientIDOpt(duidLL(1)), serverIDOpt(serverDUID)
	other := serverIDOpt(DUIDLL(mustMAC("02:00:00:00:00:09")))
	ia := iaNAOpt(1, 0, 0)
	cases := []struct {
		name   string
		msg    []byte
		reason string
	}{
		{"empty", nil, dropShort},
		{"short", []byte{1, 0, 0}, dropShort},
		{"advertise", msg(msgAdvertise, 1, cid, sid), dropNotClientMsg},
		{"reply", msg(msgReply, 1, cid, sid), dropNotClientMsg},
		{"reconfigure", msg(msgReconfigure, 1, cid, sid), dropNotClientMsg},
		{"relay", msg(msgRelayForw, 1), dropRelay},
		{"unknown type", msg(200, 1, cid), dropNotClientMsg},
		{"option past end", append(msg(msgSolicit, 1, cid), 0, 8, 0, 9, 1), dropBadOptions},
		{"stray bytes", append(msg(msgSolicit, 1, cid), 0, 8), dropBadOptions},
		{"odd oro", msg(msgSolicit, 1, cid, opt(optORO, []byte{0, 23, 0})), dropBadOptions},
		{"rapid commit with data", msg(msgSolicit, 1, cid, opt(optRapidCommit, []byte{1})), dropBadOptions},
		{"two server ids", msg(msgRequest, 1, cid, sid, sid), dropBadOptions},
		{"short client id", msg(msgSolicit, 1, opt(optClientID, []byte{0, 3})), dropBadClientID},
		{"long client id", msg(msgSolicit, 1, opt(optClientID, make([]byte, 131))), dropBadClientID},
		{"two client ids", msg(msgSolicit, 1, cid, cid), dropBadClientID},
		{"short ia", msg(msgSolicit, 1, cid, opt(optIANA, []byte{0, 0, 0, 1})), dropBadIA},
		{"short iaaddr", msg(msgSolicit, 1, cid, iaNAOpt(1, 0, 0, opt(optIAAddr, make([]byte, 20)))), dropBadIA},
		{"bad ia option", msg(msgSolicit, 1, cid, iaNAOpt(1, 0, 0, []byte{0, 5, 0})), dropBadIA},
		{"same iaid twice", msg(msgSolicit, 1, cid, ia, ia), dropBadIA},
		{"too many ias", msg(msgSolicit, 1, cid, iaNAOpt(1, 0, 0), iaNAOpt(2, 0, 0), iaNAOpt(3, 0, 0), iaNAOpt(4, 0, 0), iaNAOpt(5, 0, 0), iaNAOpt(6, 0, 0), iaNAOpt(7, 0, 0), iaNAOpt(8, 0, 0), iaNAOpt(9, 0, 0)), dropTooManyIAs},
		{"solicit without client id", msg(msgSolicit, 1, ia), dropNoClientID},
		{"solicit naming a server", msg(msgSolicit, 1, cid, sid, ia), dropUnexpectedSID},
		{"confirm naming a server", msg(msgConfirm, 1, cid, sid, iaNAOpt(1, 0, 0, iaAddrOpt(first, 0, 0))), dropUnexpectedSID},
		{"request without server id", msg(msgRequest, 1, cid, ia), dropNoServerID},
		{"request for another server", msg(msgRequest, 1, cid, other, ia), dropOtherServer},
		{"request without client id", msg(msgRequest, 1, sid, ia), dropNoClientID},
		{"renew for another server", msg(msgRenew, 1, cid, other, ia), dropOtherServer},
		{"release without server id", msg(msgRelease, 1, cid, ia), dropNoServerID},
		{"decline for another server", msg(msgDecline, 1, cid, other, ia), dropOtherServer},
		{"rebind without client id", msg(msgRebind, 1, ia), dropNoClientID},
		{"info-request for another server", msg(msgInformationRequest, 1, other), dropOtherServer},
		{"info-request with an IA", msg(msgInformationRequest, 1, cid, ia), dropIAInInfoReq},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { expectDrop(t, s, tc.msg, tc.reason) })
	}
	st := s.Stats()
	var dropped uint64
	for _, n := range st.Dropped {
		dropped += n
	}
	if st.Replied != 0 || st.Received != dropped || st.Received != uint64(len(cases)) {
		t.Fatalf("stats %+v after %d bad messages", st, len(cases))
	}
	if len(s.Leases()) != 0 || s.table.Len() != 0 {
		t.Fatal("a dropped message changed the lease table")
	}
}

// One client address cycling DUIDs (fuzz_dhcps6, dhcpig -6) holds at most
// maxPerSource IA_NAs, its oldest going first, so a pool with room for
// more still serves a client at another address.
func TestOneSourceCannotFillPool(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config) { c.MaxLeases = maxPerSource + 2 })
	for i := range byte(3 * maxPerSource) {
		lease(t, s, duidEN(i), 1)
	}
	if n := len(s.Leases()); n != maxPerSource {
		t.Fatalf("one address holds %d leases, want %d", n, maxPerSource)
	}
	if got := s.Stats().Evicted; got != 2*maxPerSource {
		t.Fatalf("evicted %d, want %d", got, 2*maxPerSource)
	}
	// The newest survive: the last DUID renews its own address.
	held := map[string]bool{}
	for _, l := range s.Leases() {
		held[l.DUID] = true
	}
	if !held[hex.EncodeToString(duidEN(3*maxPerSource-1))] || held[hex.EncodeToString(duidEN(0))] {
		t.Fatalf("leases held %v: want the newest DUIDs, not the first", held)
	}
	other := netip.AddrPortFrom(netip.MustParseAddr("fe80::99").WithZone("eth0"), 546)
	out, ok := s.Handle(msg(msgSolicit, 7, clientIDOpt(duidLL(99)), rapidOpt(), iaNAOpt(1, 0, 0)), other)
	if !ok {
		t.Fatal("no reply to a second client")
	}
	if ia := decode(t, out).ias(t, optIANA); len(ia) != 1 || len(ia[0].addrs) != 1 {
		t.Fatalf("second client's IA_NA %+v, want an address", ia)
	}
}
