package control

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// resolve asks the network's DNS for name's A and AAAA records, as a
// guest's query would.
func resolve(t *testing.T, f *fixture, name string) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	for _, typ := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
		q := dnsmessage.Message{Header: dnsmessage.Header{ID: 7, RecursionDesired: true},
			Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name + "."), Type: typ, Class: dnsmessage.ClassINET}}}
		raw, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		var m dnsmessage.Message
		if err := m.Unpack(f.n.DNS().Exchange(context.Background(), raw)); err != nil {
			t.Fatal(err)
		}
		for _, a := range m.Answers {
			switch r := a.Body.(type) {
			case *dnsmessage.AResource:
				out = append(out, netip.AddrFrom4(r.A))
			case *dnsmessage.AAAAResource:
				out = append(out, netip.AddrFrom16(r.AAAA))
			}
		}
	}
	return out
}

// POST /v1/dns/records adds a name guests resolve at once; GET lists it
// beside the host names; bad requests change nothing.
func TestDNSRecords(t *testing.T) {
	f := newFixture(t)
	status, body := f.do(t, "GET", "/v1/dns/records", "")
	var recs []DNSRecord
	if err := json.Unmarshal([]byte(body), &recs); status != 200 || err != nil {
		t.Fatalf("list: %d %s", status, body)
	}
	found := false
	for _, r := range recs {
		found = found || (r.Name == "host.containers.internal" && len(r.IPs) > 0 && r.IPs[0] == mustAddr("10.0.2.2"))
	}
	if !found {
		t.Errorf("host.containers.internal → 10.0.2.2 not listed: %s", body)
	}
	if got := resolve(t, f, "db.internal"); len(got) != 0 {
		t.Fatalf("db.internal resolves before it is added: %v", got)
	}
	status, body = f.do(t, "POST", "/v1/dns/records", `{"name":"DB.internal","ips":["10.0.2.50","fd00::50"]}`)
	if status != 201 || !strings.Contains(body, `"name": "db.internal"`) {
		t.Fatalf("add: %d %s", status, body)
	}
	if got := resolve(t, f, "db.internal"); len(got) != 2 || got[0] != mustAddr("10.0.2.50") || got[1] != mustAddr("fd00::50") {
		t.Errorf("db.internal resolves to %v", got)
	}
	// More addresses for the same name are added to its own.
	if status, body = f.do(t, "POST", "/v1/dns/records", `{"name":"db.internal","ips":["10.0.2.51"]}`); status != 201 || !strings.Contains(body, "10.0.2.51") || !strings.Contains(body, "10.0.2.50") {
		t.Errorf("add again: %d %s", status, body)
	}
	_, before := f.do(t, "GET", "/v1/dns/records", "")
	for _, bad := range []string{
		`{"name":"db.internal"}`,
		`{"name":"","ips":["10.0.2.9"]}`,
		`{"name":"bad..name","ips":["10.0.2.9"]}`,
		`{"name":"x.internal","ips":["10.0.2.300"]}`,
		`{"name":"x.internal","ips":["10.0.2.9"],"ttl":5}`,
		`{"name":"x.internal","ips":["1.1.1.1","1.1.1.2","1.1.1.3","1.1.1.4","1.1.1.5","1.1.1.6","1.1.1.7","1.1.1.8","1.1.1.9","1.1.1.10","1.1.1.11","1.1.1.12","1.1.1.13","1.1.1.14","1.1.1.15","1.1.1.16","1.1.1.17"]}`,
	} {
		if status, body := f.do(t, "POST", "/v1/dns/records", bad); status != 400 || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s, want 400", bad, status, body)
		}
	}
	if _, after := f.do(t, "GET", "/v1/dns/records", ""); after != before {
		t.Errorf("bad requests changed the records:\n%s\n%s", before, after)
	}
}

// FuzzDNSRecordBody: any body to POST /v1/dns/records is a 201 with the
// name resolvable, or a 400/429 that adds nothing; never a panic.
func FuzzDNSRecordBody(f *testing.F) {
	for _, s := range []string{`{"name":"a.internal","ips":["10.0.2.9"]}`, `{"name":"x","ips":["::1","10.0.2.300"]}`, `{"name":"` + strings.Repeat("a.", 200) + `","ips":["1.1.1.1"]}`, `[]`, `{`, `{"name":"b","ips":[]}`} {
		f.Add(s)
	}
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, body string) {
		before := len(fx.n.DNS().Records())
		status, text := fx.do(t, "POST", "/v1/dns/records", body)
		switch status {
		case 201:
			var rec DNSRecord
			if err := json.Unmarshal([]byte(text), &rec); err != nil || len(rec.IPs) == 0 || len(fx.n.DNS().Records()[rec.Name+"."]) == 0 {
				t.Fatalf("201 %q for %q, but the name is not there", text, body)
			}
		case 400, 413, 429:
			if after := len(fx.n.DNS().Records()); after != before {
				t.Fatalf("%d for %q, yet the names went from %d to %d", status, body, before, after)
			}
		default:
			t.Fatalf("status %d for %q: %s", status, body, text)
		}
	})
}
