package pasta

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestParsePortSpec(t *testing.T) {
	for _, c := range []struct {
		in   string
		want PortSpec
	}{
		{"none", PortSpec{None: true}},
		{"22", PortSpec{Include: []PortRange{{22, 22, 22}}}},
		{"22:23", PortSpec{Include: []PortRange{{22, 22, 23}}}},
		{"22-80:32-90", PortSpec{Include: []PortRange{{22, 80, 32}}}},
		{"22,25", PortSpec{Include: []PortRange{{22, 22, 22}, {25, 25, 25}}}},
		{"192.0.2.1/5", PortSpec{Addr: netip.MustParseAddr("192.0.2.1"), Include: []PortRange{{5, 5, 5}}}},
		{"::1/auto", PortSpec{Addr: netip.IPv6Loopback(), Auto: true}},
		{"5-25,~10-20", PortSpec{Include: []PortRange{{5, 25, 5}}, Excludes: []PortRange{{10, 20, 10}}}},
		{"~25", PortSpec{All: true, Excludes: []PortRange{{25, 25, 25}}}},
		{"80-82,auto", PortSpec{Auto: true, Include: []PortRange{{80, 82, 80}}}},
		{"127.0.0.1%lo/8080-8080:80-80", PortSpec{Addr: netip.MustParseAddr("127.0.0.1"), Iface: "lo", Include: []PortRange{{8080, 8080, 80}}}},
	} {
		got, err := ParsePortSpec(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "0", "80-70", "1-3:4-5", "x/80", "65536", "1.2.3.4/", "%/1", "22:"} {
		if _, err := ParsePortSpec(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestPortMapRuns(t *testing.T) {
	s, _ := ParsePortSpec("5-25,~10-20,30-31:40-41")
	m := s.Map(32768)
	want := []PortRange{{5, 9, 5}, {21, 25, 21}, {30, 31, 40}}
	if got := m.Runs(nil); !reflect.DeepEqual(got, want) {
		t.Errorf("runs %v, want %v", got, want)
	}
	if m.Count() != 12 {
		t.Errorf("count %d", m.Count())
	}
	all, _ := ParsePortSpec("~25")
	if n := all.Map(32768).Count(); n != 32766 {
		t.Errorf("all but 25 below 32768: %d ports", n)
	}
	auto, _ := ParsePortSpec("auto")
	if n := auto.Map(32768).Count(); n != 65535 {
		t.Errorf("auto candidates: %d", n)
	}
}

// FuzzParsePortSpec: any input is a spec or an error, never a panic, and
// a spec's map forwards only ports (and to ports) 1-65535 that it names.
func FuzzParsePortSpec(f *testing.F) {
	for _, s := range []string{"none", "22", "22-80:32-90", "::1/auto", "5-25,~10-20", "~25", "80-82,auto", "192.0.2.1%eth0/5", "all", "1-65535:1-65535", "[::1]/8080"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePortSpec(s)
		if err != nil {
			return
		}
		m := p.Map(32768)
		if m[0] != 0 {
			t.Fatalf("%q forwards port 0", s)
		}
		for _, r := range m.Runs(nil) {
			if r.First == 0 || r.To == 0 || r.Last < r.First || int(r.To)+int(r.Last-r.First) > 65535 {
				t.Fatalf("%q: bad run %+v", s, r)
			}
		}
	})
}
