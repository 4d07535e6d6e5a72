package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePublish(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		in   string
		want PublishRule
	}{
		{"8080:80", PublishRule{Proto: "tcp", HostPort: 8080, GuestPort: 80}},
		{"8080:80/udp", PublishRule{Proto: "udp", HostPort: 8080, GuestPort: 80}},
		{"127.0.0.1:8080:80", PublishRule{Proto: "tcp", HostAddr: a("127.0.0.1"), HostPort: 8080, GuestPort: 80}},
		{"8080:10.0.2.16:80/tcp", PublishRule{Proto: "tcp", HostPort: 8080, GuestAddr: a("10.0.2.16"), GuestPort: 80}},
		{"[::1]:8080:80", PublishRule{Proto: "tcp", HostAddr: a("::1"), HostPort: 8080, GuestPort: 80}},
		{"[::]:53:10.0.2.15:53/udp", PublishRule{Proto: "udp", HostAddr: a("::"), HostPort: 53, GuestAddr: a("10.0.2.15"), GuestPort: 53}},
		{"8000-8002:9000-9002", PublishRule{Proto: "tcp", HostPort: 8000, HostPortEnd: 8002, GuestPort: 9000, GuestPortEnd: 9002}},
		{"8080:[fd00::15]:80", PublishRule{Proto: "tcp", HostPort: 8080, GuestAddr: a("fd00::15"), GuestPort: 80}},
	} {
		got, err := ParsePublish(tc.in)
		if err != nil {
			t.Errorf("ParsePublish(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParsePublish(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		back, err := ParsePublish(got.String())
		if err != nil || back != got {
			t.Errorf("round trip of %q via %q = %+v, %v", tc.in, got.String(), back, err)
		}
	}
}

func TestParsePublishErrors(t *testing.T) {
	for _, in := range []string{
		"", "80", "8080:", ":80", "0:80", "8080:0", "65536:80", "8080:80/sctp", "8080:80/",
		"8080-8081:80", "8081-8080:80-81", "::1:8080:80", "[::1:8080:80", "[::1]x:8080:80",
		"1.2.3.4:5:6:7:8", "1.2.3:8080:80", "a:b:c:d", "8080:80:90", "[fe80::1%eth0]:80:80",
		"1.2.3.4:8080:80:90:100",
	} {
		if r, err := ParsePublish(in); err == nil {
			t.Errorf("ParsePublish(%q) = %+v, want an error", in, r)
		}
	}
}

func TestResolvePublish(t *testing.T) {
	c := Default()
	r, err := c.Resolve(PublishRule{HostPort: 8080, GuestPort: 80})
	if err != nil {
		t.Fatal(err)
	}
	if r.Proto != "tcp" || r.HostAddr != netip.IPv4Unspecified() || r.GuestAddr != c.DHCPStart {
		t.Errorf("defaults not applied: %+v", r)
	}
	for _, bad := range []string{
		"8080:10.0.2.2:80", "8080:10.0.2.3:80", "8080:10.0.3.9:80", "8080:10.0.2.255:80",
		"8080:[fd00::2]:80", "8080:[fd00::3]:80", "8080:[fd01::15]:80", "8080:[fd00::]:80",
	} {
		pr, err := ParsePublish(bad)
		if err != nil {
			t.Fatalf("%s: %v", bad, err)
		}
		_, err = c.Resolve(pr)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Flag != "publish" {
			t.Errorf("Resolve(%s) = %v, want a --publish FieldError", bad, err)
		}
	}
	v6, _ := ParsePublish("[::1]:8080:[fd00::15]:80")
	if r, err := c.Resolve(v6); err != nil || r.GuestAddr.String() != "fd00::15" {
		t.Errorf("an IPv6 guest: %+v, %v", r, err)
	}
	off := Default()
	off.NoIPv6 = true
	if _, err := off.Resolve(v6); err == nil {
		t.Error("an IPv6 guest accepted with --no-ipv6")
	}
	if _, err := c.Resolve(PublishRule{Proto: "tcp", HostPort: 10, HostPortEnd: 12, GuestPort: 10}); err == nil {
		t.Error("unequal ranges accepted")
	}
}

func TestPublishConflictsInValidate(t *testing.T) {
	for _, tc := range []struct {
		rules []string
		ok    bool
	}{
		{[]string{"8080:80", "8081:80"}, true},
		{[]string{"8080:80", "8080:80/udp"}, true},
		{[]string{"8080:80", "[::]:8080:80"}, true},
		{[]string{"127.0.0.1:8080:80", "127.0.0.2:8080:80"}, true},
		{[]string{"8080:80", "127.0.0.1:8080:81"}, false},
		{[]string{"8000-8010:9000-9010", "8010:80"}, false},
		{[]string{"[::1]:8080:80", "[::]:8080:80"}, false},
	} {
		c := Default()
		for _, s := range tc.rules {
			r, err := ParsePublish(s)
			if err != nil {
				t.Fatal(err)
			}
			c.Publish = append(c.Publish, r)
		}
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%v: Validate = %v, want ok=%v", tc.rules, err, tc.ok)
		}
	}
	c := Default()
	c.Limits.MaxPublishedPorts = 10
	r, _ := ParsePublish("8000-8010:8000-8010")
	c.Publish = []PublishRule{r}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "max-published-ports") {
		t.Errorf("port budget not enforced: %v", err)
	}
	c = Default()
	c.PublishSource = "nat"
	if err := c.Validate(); err == nil {
		t.Error("bad --publish-source accepted")
	}
}

func TestPublishYAML(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("publish:\n  - 8080:80\n  - \"[::1]:5353:53/udp\"\npublish-source: gateway\napi-socket: /tmp/x.sock\n"), 0o600)
	var c Config
	if err := c.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if len(c.Publish) != 2 || c.Publish[1].Proto != "udp" || c.Publish[1].HostAddr != netip.IPv6Loopback() || c.PublishSource != "gateway" || c.APISocket != "/tmp/x.sock" {
		t.Errorf("loaded %+v", c)
	}
	os.WriteFile(path, []byte("publish:\n  - 8080\n"), 0o600)
	var bad Config
	if err := bad.LoadFile(path); err == nil || !strings.Contains(err.Error(), "--publish") {
		t.Errorf("bad rule in YAML: %v", err)
	}
}

// FuzzParsePublish: any input is a rule or an error, never a panic; a rule
// prints to a string that parses back to itself.
func FuzzParsePublish(f *testing.F) {
	for _, s := range []string{"8080:80", "127.0.0.1:8080:80/udp", "[::1]:8080:10.0.2.15:80", "8000-8100:8000-8100/tcp", "[", "::", "1-:2", "[::]:1:[::]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePublish(s)
		if err != nil {
			return
		}
		if r.HostPort == 0 || r.GuestPort == 0 || r.HostPorts() != r.GuestPorts() {
			t.Fatalf("%q parsed to an invalid rule %+v", s, r)
		}
		back, err := ParsePublish(r.String())
		if err != nil || back != r {
			t.Fatalf("%q -> %q -> %+v, %v", s, r.String(), back, err)
		}
		c := Default()
		c.Resolve(r) // must not panic either
	})
}
