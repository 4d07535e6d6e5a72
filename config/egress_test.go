package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseEgressRule(t *testing.T) {
	pr := netip.MustParsePrefix
	cases := []struct {
		in   string
		want EgressRule
		text string
	}{
		{"deny 169.254.0.0/16", EgressRule{EgressDeny, pr("169.254.0.0/16"), nil}, "deny 169.254.0.0/16"},
		{"allow 10.1.2.3", EgressRule{EgressAllow, pr("10.1.2.3/32"), nil}, "allow 10.1.2.3/32"},
		{"deny 10.1.0.0/16:22", EgressRule{EgressDeny, pr("10.1.0.0/16"), []PortRange{{22, 22}}}, "deny 10.1.0.0/16:22"},
		{"allow 10.1.2.0/24:80,443,8000-8099", EgressRule{EgressAllow, pr("10.1.2.0/24"), []PortRange{{80, 80}, {443, 443}, {8000, 8099}}}, "allow 10.1.2.0/24:80,443,8000-8099"},
		{"deny fd00::/8", EgressRule{EgressDeny, pr("fd00::/8"), nil}, "deny fd00::/8"},
		{"deny [fd00::/8]:53", EgressRule{EgressDeny, pr("fd00::/8"), []PortRange{{53, 53}}}, "deny [fd00::/8]:53"},
		{"deny [2001:db8::1]", EgressRule{EgressDeny, pr("2001:db8::1/128"), nil}, "deny 2001:db8::1/128"},
		{"deny 10.1.2.3/8", EgressRule{EgressDeny, pr("10.0.0.0/8"), nil}, "deny 10.0.0.0/8"},
	}
	for _, c := range cases {
		got, err := ParseEgressRule(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) || got.String() != c.text {
			t.Errorf("%q = %+v (%q), want %+v (%q)", c.in, got, got.String(), c.want, c.text)
		}
	}
	for _, bad := range []string{"", "deny", "block 10.0.0.0/8", "deny 10.0.0.0/33", "deny 10.0.0.0/8:", "deny 10.0.0.0/8:0",
		"deny 10.0.0.0/8:70000", "deny 10.0.0.0/8:90-80", "deny [fd00::/8", "deny [fd00::/8]22", "deny fe80::1%eth0", "deny host.example"} {
		if r, err := ParseEgressRule(bad); err == nil {
			t.Errorf("%q parsed to %+v, want an error", bad, r)
		}
	}
}

// --deny and --allow lay over the file's egress list in the order given,
// and YAML keeps its own order.
func TestEgressYAML(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("allow-link-local: true\negress:\n  - allow 10.9.0.0/16:443\n  - deny 10.9.0.0/16\n"), 0o600)
	var c Config
	if err := c.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if !c.AllowLinkLocal || len(c.Egress) != 2 || c.Egress[0].String() != "allow 10.9.0.0/16:443" || c.Egress[1].String() != "deny 10.9.0.0/16" {
		t.Fatalf("loaded %+v", c)
	}
	var flags Config
	flags.Egress = []EgressRule{{EgressDeny, netip.MustParsePrefix("192.0.2.0/24"), nil}}
	if !CopyField(&c, &flags, "deny") || len(c.Egress) != 1 {
		t.Fatalf("--deny did not replace the file's list: %+v", c.Egress)
	}
	os.WriteFile(path, []byte("egress: [\"deny 10.0.0.0/40\"]\n"), 0o600)
	if err := new(Config).LoadFile(path); err == nil {
		t.Fatal("a bad rule in the file loaded")
	}
}

func FuzzParseEgressRule(f *testing.F) {
	for _, s := range []string{"deny 169.254.0.0/16", "allow 10.1.2.0/24:80,443,8000-8099", "deny [fd00::/8]:53", "deny fd00::1", "allow 1.2.3.4:", "deny [", "deny 1-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseEgressRule(s)
		if err != nil {
			return
		}
		// What parses prints back to itself, and means the same.
		back, err := ParseEgressRule(r.String())
		if err != nil || !reflect.DeepEqual(back, r) {
			t.Fatalf("%q -> %q -> %+v, %v", s, r.String(), back, err)
		}
		if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() || len(r.Ports) > MaxEgressPorts {
			t.Fatalf("%q parsed to an invalid rule %+v", s, r)
		}
		r.Matches(TCP, netip.AddrPortFrom(r.Prefix.Addr(), 80))
	})
}
