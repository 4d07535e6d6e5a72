package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzExchange drives the query path with no network: local names are
// answered, everything else reaches a Dial that fails at once. Whatever
// the input, Exchange must not panic, must answer anything with a header
// that is not a response, and must answer with the query's ID.
func FuzzExchange(f *testing.F) {
	for i, s := range []struct {
		name string
		typ  dnsmessage.Type
		edns bool
	}{
		{"host.slipway.internal.", dnsmessage.TypeA, false},
		{"HOST.slipway.internal.", dnsmessage.TypeAAAA, true},
		{"host.slipway.internal.", dnsmessage.TypeALL, false},
		{"test.example.", dnsmessage.TypeA, true},
		{"test.example.", dnsmessage.TypeTXT, false},
	} {
		q, err := buildQuery(uint16(i), s.name, s.typ, s.edns)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(q)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1})

	fw, err := New(Config{
		Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:53")},
		Local: map[string][]netip.Addr{
			"host.slipway.internal.": {netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("fd00::2")},
		},
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("no network while fuzzing")
		},
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, q []byte) {
		reply := fw.Exchange(context.Background(), q)
		var p dnsmessage.Parser
		qh, qerr := p.Start(q)
		if reply == nil {
			if qerr == nil && !qh.Response {
				t.Fatalf("no reply to a query with a header: % x", q)
			}
			return
		}
		rh, err := p.Start(reply)
		if err != nil {
			t.Fatalf("unparsable reply % x: %v", reply, err)
		}
		if !rh.Response || rh.ID != qh.ID {
			t.Fatalf("reply header %+v to query header %+v", rh, qh)
		}
		if _, err := p.AllQuestions(); err != nil {
			t.Fatalf("reply questions: %v", err)
		}
		if _, err := p.AllAnswers(); err != nil {
			t.Fatalf("reply answers: %v", err)
		}
		if st := fw.Stats(); st.InFlight != 0 {
			t.Fatalf("%d queries left in flight", st.InFlight)
		}
	})
}

// FuzzReadResolvConf checks that any file content parses without panic
// and yields only usable nameservers.
func FuzzReadResolvConf(f *testing.F) {
	f.Add([]byte(sampleResolvConf))
	f.Add([]byte("nameserver\nsearch\n#\n;\n\n"))
	f.Add([]byte("nameserver 1.2.3.4%eth0\nnameserver fe80::1%\nnameserver ::ffff:1.2.3.4\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		servers, search, domain := parseResolvConf(b)
		for _, s := range servers {
			if !s.IsValid() || s.Port() != 53 || s.Addr().IsUnspecified() {
				t.Fatalf("unusable nameserver %v", s)
			}
		}
		for _, s := range search {
			if s == "" || strings.ContainsAny(s, " \t\n") {
				t.Fatalf("bad search name %q", s)
			}
		}
		if strings.ContainsAny(domain, " \t\n") {
			t.Fatalf("bad domain %q", domain)
		}
		if len(servers) > 0 {
			if _, err := New(Config{Upstreams: servers}, nil); err != nil {
				t.Fatalf("nameservers from resolv.conf rejected by New: %v", err)
			}
		}
	})
}
