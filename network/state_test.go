package network

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/config"
)

func stateNetwork(t *testing.T) *Network {
	t.Helper()
	cfg := config.Default()
	cfg.DNSUpstreams = []config.DNSServer{{AddrPort: netip.MustParseAddrPort("127.0.0.1:53")}}
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func freeTCPPort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func sampleState(t *testing.T) State {
	t.Helper()
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	return State{
		Version: StateVersion,
		DHCP4: []StateLease4{
			{MAC: "52:54:00:00:30:01", Addr: netip.MustParseAddr("10.0.2.16"), Hostname: "a", Expires: exp},
			{MAC: "52:54:00:00:30:02", Addr: netip.MustParseAddr("10.0.2.20"), Expires: exp.Add(-48 * time.Hour)},
			{MAC: "52:54:00:00:30:03", Addr: netip.MustParseAddr("10.0.2.99"), Static: true},
		},
		DHCP6: []StateLease6{{DUID: "0003000152540000300a", IAID: 7, Addr: netip.MustParseAddr("fd00::123"), Expires: exp}},
	}
}

// A State exported from one network and restored into a fresh one gives
// the same State back: leases (expired and static ones too) and forwards.
func TestStateRestoreRoundTrip(t *testing.T) {
	a := stateNetwork(t)
	st := sampleState(t)
	if err := a.Restore(st); err != nil {
		t.Fatal(err)
	}
	fw, err := a.Publish(config.PublishRule{Proto: config.TCP, HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: freeTCPPort(t), GuestPort: 80})
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan struct{}, 8)
	a.OnStateChange(func() { changed <- struct{}{} })
	if err := a.AddDNSRecord("db.internal", netip.MustParseAddr("10.0.2.16"), netip.MustParseAddr("fd00::16")); err != nil {
		t.Fatal(err)
	}
	<-changed
	if _, err := a.Unpublish(fw.ID); err != nil {
		t.Fatal(err)
	}
	<-changed // a forward removed is a change
	fw, err = a.Publish(fw.PublishRule)
	if err != nil {
		t.Fatal(err)
	}
	<-changed
	exported := a.State()
	if len(exported.DHCP4) != 3 || len(exported.DHCP6) != 1 || len(exported.Forwards) != 1 ||
		len(exported.DNSRecords) != 1 || exported.DNSRecords[0].Name != "db.internal" || len(exported.DNSRecords[0].IPs) != 2 {
		t.Fatalf("exported %+v", exported)
	}
	enc, err := exported.Encode()
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := DecodeState(enc)
	if err != nil {
		t.Fatal(err)
	}
	// The forward's host port is bound by a; free it for b.
	a.Unpublish(fw.ID)
	b := stateNetwork(t)
	if err := b.Restore(decoded); err != nil {
		t.Fatal(err)
	}
	got := b.State()
	got.Saved, exported.Saved = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, exported) {
		t.Errorf("restored state\n%+v\nwant\n%+v", got, exported)
	}
	// The current ones are leases as /v1/leases shows them.
	var shown []string
	for _, l := range b.LeaseInfos() {
		shown = append(shown, l.Addr.String())
	}
	if s := strings.Join(shown, " "); !strings.Contains(s, "10.0.2.16") || !strings.Contains(s, "10.0.2.99") || !strings.Contains(s, "fd00::123") {
		t.Errorf("leases after restore: %s", s)
	}
}

// A State that clashes with what the network holds changes nothing: no
// forward published, no lease taken.
func TestStateRestoreConflict(t *testing.T) {
	n := stateNetwork(t)
	if err := n.Restore(sampleState(t)); err != nil {
		t.Fatal(err)
	}
	before := n.State()
	clash := State{
		Version:  StateVersion,
		Forwards: []config.PublishRule{{Proto: config.TCP, HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: freeTCPPort(t), GuestPort: 81}},
		// Another client on a held address.
		DHCP4: []StateLease4{{MAC: "52:54:00:00:30:09", Addr: netip.MustParseAddr("10.0.2.16")}},
	}
	err := n.Restore(clash)
	if !errors.Is(err, ErrRestoreConflict) {
		t.Fatalf("restore of a clashing state: %v", err)
	}
	after := n.State()
	after.Saved, before.Saved = time.Time{}, time.Time{}
	if !reflect.DeepEqual(after, before) {
		t.Errorf("a refused restore changed the state:\n%+v\nwas\n%+v", after, before)
	}
	for _, bad := range []State{
		{Version: StateVersion, DHCP4: []StateLease4{{MAC: "52:54:00:00:30:0a", Addr: netip.MustParseAddr("10.0.2.2")}}},                                                                      // the gateway
		{Version: StateVersion, DHCP4: []StateLease4{{MAC: "52:54:00:00:30:0a", Addr: netip.MustParseAddr("192.168.1.5")}}},                                                                   // another subnet
		{Version: StateVersion, DHCP6: []StateLease6{{DUID: "00", Addr: netip.MustParseAddr("fd00::5")}}},                                                                                     // short DUID
		{Version: StateVersion, DHCP4: []StateLease4{{MAC: "52:54:00:00:30:0b", Addr: netip.MustParseAddr("10.0.2.30")}, {MAC: "52:54:00:00:30:0b", Addr: netip.MustParseAddr("10.0.2.31")}}}, // one client twice
	} {
		if err := n.Restore(bad); err == nil {
			t.Errorf("restore of %+v: no error", bad)
		}
	}
}

func TestDecodeStateRefuses(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{``, "corrupt"},
		{`[]`, "corrupt"},
		{`{}`, "no version"},
		{`{"version":2}`, "newer slipway"},
		{`{"version":0}`, "version"},
		{`{"version":1,"extra":1}`, "unknown field"},
		{`{"version":1} {}`, "corrupt"},
		{`{"version":1,"dhcp4_leases":[{"mac":"52:54:00:00:00:01","addr":"fd00::1"}]}`, "not an IPv4"},
		{`{"version":1,"dhcp6_leases":[{"duid":"0001","addr":"10.0.2.1"}]}`, "not an IPv6"},
		{`{"version":1,"forwards":[{"proto":"tcp","host_port":70000}]}`, "corrupt"},
		{`{"version":1,"dns_records":[{"name":"a b","ips":["10.0.2.9"]}]}`, "dns record"},
		{`{"version":1,"dns_records":[{"name":"db","ips":[]}]}`, "no addresses"},
	} {
		_, err := DecodeState([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("DecodeState(%s): %v, want %q", c.in, err, c.want)
		}
	}
}

// FuzzDecodeState: the decoder never panics, and what it accepts encodes
// and decodes again to the same State.
func FuzzDecodeState(f *testing.F) {
	st := State{Version: 1, DHCP4: []StateLease4{{MAC: "52:54:00:00:30:01", Addr: netip.MustParseAddr("10.0.2.16"), Expires: time.Unix(1900000000, 0).UTC()}},
		DHCP6:    []StateLease6{{DUID: "0003000152540000300a", IAID: 1, Addr: netip.MustParseAddr("fd00::100")}},
		Forwards: []config.PublishRule{{Proto: config.UDP, HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: 5353, GuestAddr: netip.MustParseAddr("10.0.2.15"), GuestPort: 53}}}
	b, _ := st.Encode()
	f.Add(b)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":99}`))
	f.Add([]byte(`{"version":1,"dhcp4_leases":[{"mac":"zz","addr":"10.0.2.15"}]}`))
	f.Add([]byte(`{"version":1,"forwards":[{"proto":"tcp","host_port":8080,"guest_port":80}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		st, err := DecodeState(in)
		if err != nil {
			return
		}
		enc, err := st.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeState(enc)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", enc, err)
		}
		enc2, _ := again.Encode()
		if string(enc2) != string(enc) {
			t.Fatalf("not stable:\n%s\n%s", enc, enc2)
		}
	})
}
