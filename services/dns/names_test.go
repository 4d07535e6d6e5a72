package dns

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// gvproxy's default zones and lima's additions (../shared/callers.md):
// records by name and by regexp, a zone's default address, NXDOMAIN for
// other names in a zone, and names outside every zone going upstream.
func TestZones(t *testing.T) {
	up := fakeUpstream(t, func(q []byte) [][]byte { return nil }) // never answers
	f := newForwarder(t, Config{Upstreams: []netip.AddrPort{up}, Timeout: 100e6})
	ip := netip.MustParseAddr
	must(t, f.AddZone(Zone{Name: "containers.internal.", Records: []Record{{Name: "gateway", IP: ip("192.168.127.1")}, {Name: "host", IP: ip("192.168.127.254")}}}))
	must(t, f.AddZone(Zone{Name: "internal", Records: []Record{{Regexp: `^lima-[a-z0-9]+$`, IP: ip("192.168.127.2")}}, DefaultIP: ip("192.168.127.253")}))
	// lima adds host.lima.internal to a zone that exists: it comes first.
	must(t, f.AddZone(Zone{Name: "internal.", Records: []Record{{Name: "host.lima", IP: ip("192.168.127.254")}}, DefaultIP: ip("192.168.127.253")}))
	for i, c := range []struct {
		name  string
		rcode dnsmessage.RCode
		want  []netip.Addr
	}{
		{"gateway.containers.internal.", dnsmessage.RCodeSuccess, []netip.Addr{ip("192.168.127.1")}},
		{"HOST.containers.internal.", dnsmessage.RCodeSuccess, []netip.Addr{ip("192.168.127.254")}},
		{"nope.containers.internal.", dnsmessage.RCodeNameError, nil},
		{"lima-default.internal.", dnsmessage.RCodeSuccess, []netip.Addr{ip("192.168.127.2")}},
		{"host.lima.internal.", dnsmessage.RCodeSuccess, []netip.Addr{ip("192.168.127.254")}},
		{"other.internal.", dnsmessage.RCodeSuccess, []netip.Addr{ip("192.168.127.253")}},
		{"example.org.", dnsmessage.RCodeServerFailure, nil},
	} {
		id := uint16(100 + i)
		a := expectRcode(t, f.Exchange(context.Background(), makeQuery(t, id, c.name, dnsmessage.TypeA, false)), id, c.name, c.rcode)
		if !slices.Equal(a.addrs, c.want) {
			t.Errorf("%s: %v, want %v", c.name, a.addrs, c.want)
		}
	}
	zs := f.Zones()
	if len(zs) != 2 || zs[1].Name != "internal." || len(zs[1].Records) != 2 || zs[1].Records[0].Name != "host.lima" {
		t.Fatalf("zones %+v", zs)
	}
	b, _ := json.Marshal(zs[0])
	if want := `{"name":"containers.internal.","records":[{"name":"gateway","ip":"192.168.127.1"},{"name":"host","ip":"192.168.127.254"}]}`; string(b) != want {
		t.Errorf("zone JSON %s, want %s", b, want)
	}
}

func TestZoneErrors(t *testing.T) {
	f := newForwarder(t, Config{})
	ip := netip.MustParseAddr("192.0.2.1")
	for _, c := range []struct {
		z    Zone
		want string
	}{
		{Zone{Name: ""}, "zone"},
		{Zone{Name: "a.", Records: []Record{{Name: "x"}}}, "no valid ip"},
		{Zone{Name: "a.", Records: []Record{{IP: ip}}}, "name or a regexp"},
		{Zone{Name: "a.", Records: []Record{{Regexp: "(", IP: ip}}}, "missing closing"},
		{Zone{Name: "a.", Records: []Record{{Name: "x.", IP: ip}}}, "trailing dot"},
		{Zone{Name: "a.", Records: []Record{{Regexp: strings.Repeat("a", 2000), IP: ip}}}, "longer"},
	} {
		if err := f.AddZone(c.z); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.z, err, c.want)
		}
	}
	for i := 0; i < MaxZones; i++ {
		must(t, f.AddZone(Zone{Name: "z" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + "."}))
	}
	if err := f.AddZone(Zone{Name: "onetoomany."}); err == nil {
		t.Error("more than MaxZones zones taken")
	}
}

func TestAddRecordAndUpstreams(t *testing.T) {
	f := newForwarder(t, Config{Local: map[string][]netip.Addr{"a.test": {netip.MustParseAddr("192.0.2.1")}}})
	must(t, f.AddRecord("A.test.", netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")))
	must(t, f.AddRecord("b.test", netip.MustParseAddr("192.0.2.2")))
	r := f.Records()
	if !slices.Equal(r["a.test."], []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}) || len(r["b.test."]) != 1 {
		t.Fatalf("records %v", r)
	}
	if err := f.AddRecord("bad..name", netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Error("bad name taken")
	}
	a := expectRcode(t, f.Exchange(context.Background(), makeQuery(t, 7, "a.test.", dnsmessage.TypeAAAA, false)), 7, "a.test.", dnsmessage.RCodeSuccess)
	if len(a.addrs) != 1 {
		t.Errorf("AAAA %v", a.addrs)
	}
	ups := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.53:53")}
	must(t, f.SetUpstreams(ups))
	if !slices.Equal(f.Upstreams(), ups) {
		t.Errorf("upstreams %v", f.Upstreams())
	}
	if err := f.SetUpstreams([]netip.AddrPort{{}}); err == nil {
		t.Error("invalid upstream taken")
	}
}
