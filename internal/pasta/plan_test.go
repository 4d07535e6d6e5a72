package pasta

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/config"
)

var testHost = HostNet{
	IfName: "eth0",
	Addr4:  netip.MustParsePrefix("192.0.2.2/24"), Gw4: netip.MustParseAddr("192.0.2.1"),
	Addr6: netip.MustParsePrefix("2001:db8::2/64"), Gw6: netip.MustParseAddr("2001:db8::1"),
	Resolvers: []netip.Addr{netip.MustParseAddr("127.0.0.53"), netip.MustParseAddr("198.51.100.77"), netip.MustParseAddr("2001:db8::77")},
}

func plan(t *testing.T, line string) *Plan {
	t.Helper()
	o, err := Parse(strings.Fields(line))
	if err != nil {
		t.Fatal(err)
	}
	p, err := o.Plan(testHost, 32768)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Config.Validate(); err != nil {
		t.Fatalf("plan's config: %v", err)
	}
	return p
}

// podman 5's command line: the namespace is the host, the gateway a real
// router, 169.254.1.1 the DNS and 169.254.1.2 the host.
func TestPlanPodman(t *testing.T) {
	p := plan(t, "--config-net -t 8080-8080:80-80 --dns-forward 169.254.1.1 -u none -T none -U none --no-map-gw --quiet --netns /x --map-guest-addr 169.254.1.2")
	ip := netip.MustParseAddr
	c := p.Config
	if p.IfName != "eth0" || p.Addr4 != testHost.Addr4 || p.Gw4 != testHost.Gw4 || p.Addr6 != testHost.Addr6 || p.Gw6 != testHost.Gw6 {
		t.Errorf("namespace: %+v", p)
	}
	if c.CIDR != netip.MustParsePrefix("192.0.2.0/24") || c.Gateway != ip("192.0.2.1") || c.DHCPStart != ip("192.0.2.2") || c.NoIPv6 {
		t.Errorf("network: %+v", c)
	}
	if !c.Map.Routed || !c.Map.GatewayIsRouter || !reflect.DeepEqual(c.Map.Guest, []netip.Addr{ip("169.254.1.2")}) ||
		!reflect.DeepEqual(c.Map.DNS, []netip.Addr{ip("169.254.1.1")}) || c.Map.GuestIPv6 != ip("2001:db8::2") {
		t.Errorf("map: %+v", c.Map)
	}
	if c.DNSAddress == c.Gateway || c.DNSAddress == c.DHCPStart || !c.CIDR.Contains(c.DNSAddress) {
		t.Errorf("DNS address %s", c.DNSAddress)
	}
	want := []config.PublishRule{
		{Proto: config.TCP, HostAddr: netip.IPv4Unspecified(), HostPort: 8080, GuestAddr: ip("192.0.2.2"), GuestPort: 80},
		{Proto: config.TCP, HostAddr: netip.IPv6Unspecified(), HostPort: 8080, GuestAddr: ip("2001:db8::2"), GuestPort: 80},
	}
	if !reflect.DeepEqual(c.Publish, want) {
		t.Errorf("publish %v, want %v", c.Publish, want)
	}
	if c.LogLevel != "warn" {
		t.Errorf("--quiet: log level %s", c.LogLevel)
	}
}

// The newest podman maps the same address to the host's loopback too:
// loopback wins.
func TestPlanHostLoopback(t *testing.T) {
	p := plan(t, "--config-net --no-map-gw --netns /x --map-guest-addr 169.254.1.2 --map-host-loopback 169.254.1.2")
	if len(p.Config.Map.Guest) != 0 || !reflect.DeepEqual(p.Config.Map.HostLoopback, []netip.Addr{netip.MustParseAddr("169.254.1.2")}) {
		t.Errorf("map %+v", p.Config.Map)
	}
}

// rootlesskit's pasta driver gives the addresses itself: slirp4netns's.
func TestPlanRootlesskit(t *testing.T) {
	p := plan(t, "--stderr --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 --ipv4-only --tcp-ports=auto --udp-ports=auto 4242")
	c := p.Config
	ip := netip.MustParseAddr
	if p.IfName != "tap0" || p.Addr4 != netip.MustParsePrefix("10.0.2.100/24") || p.Addr6.IsValid() || !c.NoIPv6 {
		t.Errorf("namespace %+v", p)
	}
	if c.CIDR != netip.MustParsePrefix("10.0.2.0/24") || c.Gateway != ip("10.0.2.2") || c.DNSAddress != ip("10.0.2.3") || c.DHCPStart != ip("10.0.2.100") || c.Map.GatewayIsRouter {
		t.Errorf("network %+v", c)
	}
	if len(p.Auto) != 2 || p.Auto[0].Proto != config.TCP || p.Auto[1].Proto != config.UDP || !reflect.DeepEqual(p.Auto[0].HostAddrs, []netip.Addr{netip.IPv4Unspecified()}) {
		t.Errorf("auto %+v", p.Auto)
	}
	if len(c.Publish) != 0 {
		t.Errorf("auto published at once: %v", c.Publish)
	}
}

// What DHCP, DHCPv6 and router advertisements tell of DNS, as pasta:
// nothing without --dhcp-dns; with it -D's addresses per family (three at
// most), else the host's nameservers of the family (a loopback one as
// slipway's DNS address); nothing after a last -D none.
func TestPlanAdvertiseDNS(t *testing.T) {
	ip := netip.MustParseAddr
	for _, c := range []struct {
		line string
		want []netip.Addr // nil: none told
	}{
		{"", nil},
		{"-D 192.0.2.53 -D 2001:db8::53", nil},
		{"--dhcp-dns -D 192.0.2.53 -D 2001:db8::53", []netip.Addr{ip("192.0.2.53"), ip("2001:db8::53")}},
		{"--dhcp-dns -D 192.0.2.51 -D 192.0.2.52 -D 192.0.2.53 -D 192.0.2.54", []netip.Addr{ip("192.0.2.51"), ip("192.0.2.52"), ip("192.0.2.53"), ip("2001:db8::77")}},
		{"--dhcp-dns", []netip.Addr{ip("192.0.2.254"), ip("198.51.100.77"), ip("2001:db8::77")}},
		{"--dhcp-dns -D 2001:db8::53 -4", []netip.Addr{ip("192.0.2.254"), ip("198.51.100.77")}},
		{"--dhcp-dns -D 192.0.2.53 -D none", nil},
		{"--dhcp-dns -D none -D 192.0.2.53", []netip.Addr{ip("192.0.2.53"), ip("2001:db8::77")}},
		{"--dhcp-dns -D 0.0.0.0", []netip.Addr{ip("192.0.2.254"), ip("198.51.100.77"), ip("2001:db8::77")}},
	} {
		p := plan(t, c.line+" --config-net --netns /x")
		if !reflect.DeepEqual(p.Config.AdvertiseDNS, c.want) || p.Config.NoAdvertiseDNS != (c.want == nil) {
			t.Errorf("%q: advertise %v (none: %v), want %v", c.line, p.Config.AdvertiseDNS, p.Config.NoAdvertiseDNS, c.want)
		}
	}
	if _, err := Parse([]string{"-D", "224.0.0.1", "--netns", "/x"}); err == nil || err.Error() != "Cannot use DNS address 224.0.0.1" {
		t.Errorf("multicast -D: %v", err)
	}
}

func TestPlanNSForwards(t *testing.T) {
	p := plan(t, "--config-net -T 5432,6000:7000 -U 53 -4 --netns /x")
	want := []NSForward{
		{config.TCP, netip.MustParseAddrPort("127.0.0.1:5432"), netip.MustParseAddrPort("127.0.0.1:5432")},
		{config.TCP, netip.MustParseAddrPort("127.0.0.1:6000"), netip.MustParseAddrPort("127.0.0.1:7000")},
		{config.UDP, netip.MustParseAddrPort("127.0.0.1:53"), netip.MustParseAddrPort("127.0.0.1:53")},
	}
	if !reflect.DeepEqual(p.NSForwards, want) {
		t.Errorf("%v, want %v", p.NSForwards, want)
	}
}

func TestPlanErrors(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"-t all --netns /x", "-t all"},
		{"-t ~22 --netns /x", "-t all"},
		{"-U all --netns /x", "-U all"},
		{"-a 192.0.2.9 -g 192.0.2.9 -4 --netns /x", "own address"},
	} {
		o, err := Parse(strings.Fields(c.line))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.Plan(testHost, 32768); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.line, err, c.want)
		}
	}
	o, _ := Parse([]string{"--netns", "/x"})
	if _, err := o.Plan(HostNet{}, 32768); err == nil || !strings.Contains(err.Error(), "no address") {
		t.Errorf("no host network: %v", err)
	}
}

// A plan goes to the sandboxed engine as JSON and comes back the same;
// its launcher binds for it only the host ports the plan forwards.
func TestPlanJSONAndMayListen(t *testing.T) {
	p := plan(t, "--config-net -t 127.0.0.1/8080-8081:80-81 -t 9000-9100,~9050,auto -u 5353 -T 3000 --netns /x")
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 16<<10 {
		t.Errorf("the plan is %d bytes of JSON", len(b))
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, p) {
		t.Errorf("the plan through JSON:\n%+v\nwant\n%+v", &back, p)
	}
	ap := netip.MustParseAddrPort
	for _, c := range []struct {
		proto config.Proto
		ap    string
		want  bool
	}{
		{config.TCP, "127.0.0.1:8080", true},
		{config.TCP, "127.0.0.1:8081", true},
		{config.TCP, "127.0.0.1:8082", false},
		{config.TCP, "0.0.0.0:8080", false},
		{config.UDP, "127.0.0.1:8080", false},
		{config.TCP, "0.0.0.0:9000", true},
		{config.TCP, "[::]:9100", true},
		{config.TCP, "0.0.0.0:9050", false},
		{config.TCP, "192.0.2.2:9000", false},
		{config.UDP, "0.0.0.0:5353", true},
		{config.UDP, "[::]:5353", true},
		{config.UDP, "0.0.0.0:5354", false},
		{config.TCP, "0.0.0.0:3000", false}, // -T's port is in the namespace
	} {
		if got := p.MayListen(c.proto, ap(c.ap)); got != c.want {
			t.Errorf("MayListen(%s, %s) = %v, want %v", c.proto, c.ap, got, c.want)
		}
	}
	for _, bad := range []string{`[[0,1,1]]`, `[[5,4,5]]`, `[[65535,65535,0]]`, `[[100,200,65500]]`, `{}`} {
		var m PortMap
		if err := json.Unmarshal([]byte(bad), &m); err == nil {
			t.Errorf("port map %s: read, want an error", bad)
		}
	}
}
