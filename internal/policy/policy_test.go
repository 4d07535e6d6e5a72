package policy

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/slipway-net/slipway/config"
)

// rules returns the test network's rules, changed by opts.
func rules(opts ...func(*Rules)) *Rules {
	r := &Rules{
		Subnets:  []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24"), netip.MustParsePrefix("fd00::/64")},
		Gateways: []netip.Addr{netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("fd00::2")},
		Services: []netip.Addr{netip.MustParseAddr("10.0.2.3")},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func egress(t *testing.T, texts ...string) func(*Rules) {
	var list []config.EgressRule
	for _, s := range texts {
		r, err := config.ParseEgressRule(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		list = append(list, r)
	}
	return func(r *Rules) { r.SetEgress(list) }
}

func TestOutbound(t *testing.T) {
	base := rules()
	noLo := rules(func(r *Rules) { r.NoHostLoopback = true })
	restrict := rules(func(r *Rules) { r.Restrict = true })
	linkLocal := rules(func(r *Rules) { r.AllowLinkLocal = true })
	aliasMap := map[netip.Addr]netip.Addr{netip.MustParseAddr("169.254.1.2"): netip.MustParseAddr("192.0.2.2")}
	aliased := rules(func(r *Rules) { r.Aliases = aliasMap })
	aliasedRestrict := rules(func(r *Rules) { r.Aliases, r.Restrict = aliasMap, true })
	denyList := []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}
	deny := rules(func(r *Rules) { r.Deny, r.AllowLinkLocal = denyList, true })
	denyAliased := rules(func(r *Rules) { r.Deny, r.Aliases = denyList, aliasMap })
	ruled := rules(egress(t,
		"allow 192.0.2.0/24:443",
		"deny 192.0.2.0/24",
		"deny 198.51.100.7:22,8000-8099",
		"deny 10.0.2.2:22",
		"deny [2001:db8::/32]:53",
	))
	checkOutbound(t, []outboundCase{
		{"internet", base, config.TCP, "192.0.2.10:80", "192.0.2.10:80", Allowed},
		{"gateway to loopback", base, config.TCP, "10.0.2.2:8080", "127.0.0.1:8080", Allowed},
		{"v6 gateway to loopback", base, config.TCP, "[fd00::2]:22", "[::1]:22", Allowed},
		{"gateway without loopback", noLo, config.TCP, "10.0.2.2:8080", "", NoLoopback},
		{"internet without loopback", noLo, config.TCP, "192.0.2.10:80", "192.0.2.10:80", Allowed},
		{"restricted internet", restrict, config.TCP, "192.0.2.10:80", "", Restricted},
		{"restricted gateway", restrict, config.TCP, "10.0.2.2:80", "", Restricted},
		{"direct loopback", base, config.TCP, "127.0.0.1:22", "", NotRoutable},
		{"mapped loopback", base, config.TCP, "[::ffff:127.0.0.1]:22", "", NotRoutable},
		{"v6 loopback", base, config.TCP, "[::1]:22", "", NotRoutable},
		{"broadcast", base, config.TCP, "255.255.255.255:9", "", NotRoutable},
		{"multicast", base, config.TCP, "224.0.0.251:5353", "", NotRoutable},
		{"unspecified", base, config.TCP, "0.0.0.0:80", "", NotRoutable},
		{"other guest", base, config.TCP, "10.0.2.16:80", "", InsideSubnet},
		{"dns other port", base, config.TCP, "10.0.2.3:80", "", ServiceAddrPort},
		{"metadata", base, config.TCP, "169.254.169.254:80", "", LinkLocal},
		{"metadata ping", base, config.ICMP, "169.254.169.254:0", "", LinkLocal},
		{"mapped metadata", base, config.UDP, "[::ffff:169.254.169.254]:53", "", LinkLocal},
		{"v6 link-local", base, config.UDP, "[fe80::1]:53", "", LinkLocal},
		{"metadata allowed", linkLocal, config.TCP, "169.254.169.254:80", "169.254.169.254:80", Allowed},
		{"first match allows", ruled, config.TCP, "192.0.2.10:443", "192.0.2.10:443", Allowed},
		{"later deny", ruled, config.TCP, "192.0.2.10:80", "", DeniedByRule},
		{"deny covers ping", ruled, config.ICMP, "192.0.2.10:0", "", DeniedByRule},
		{"port list", ruled, config.UDP, "198.51.100.7:22", "", DeniedByRule},
		{"port range", ruled, config.TCP, "198.51.100.7:8050", "", DeniedByRule},
		{"port outside", ruled, config.TCP, "198.51.100.7:8100", "198.51.100.7:8100", Allowed},
		{"ports skip ping", ruled, config.ICMP, "198.51.100.7:0", "198.51.100.7:0", Allowed},
		{"gateway rule", ruled, config.TCP, "10.0.2.2:22", "", DeniedByRule},
		{"gateway other port", ruled, config.TCP, "10.0.2.2:80", "127.0.0.1:80", Allowed},
		{"v6 rule", ruled, config.UDP, "[2001:db8::1]:53", "", DeniedByRule},
		{"builtin before rules", ruled, config.TCP, "127.0.0.1:443", "", NotRoutable},
		{"alias to the host's address", aliased, config.TCP, "169.254.1.2:8080", "192.0.2.2:8080", Allowed},
		{"no alias without the map", base, config.TCP, "169.254.1.2:8080", "", LinkLocal},
		{"restricted alias", aliasedRestrict, config.TCP, "169.254.1.2:8080", "", Restricted},
		{"denied metadata", deny, config.TCP, "169.254.169.254:80", "", Denied},
		{"outside the denied", deny, config.TCP, "192.0.2.10:80", "192.0.2.10:80", Allowed},
		{"an alias over the denied", denyAliased, config.TCP, "169.254.1.2:8080", "192.0.2.2:8080", Allowed},
	})
}

// outboundCase is one flow Outbound decides: the reason it must give
// and, when allowed, the target.
type outboundCase struct {
	name   string
	rules  *Rules
	proto  config.Proto
	dst    string
	target string
	reason Reason
}

func checkOutbound(t *testing.T, cases []outboundCase) {
	t.Helper()
	ap := netip.MustParseAddrPort
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := c.rules.Outbound(c.proto, ap(c.dst))
			if v.Reason != c.reason {
				t.Fatalf("reason %q, want %q", v.Reason, c.reason)
			}
			if c.target != "" && v.Target != ap(c.target) {
				t.Fatalf("target %v, want %v", v.Target, c.target)
			}
		})
	}
}

// Decisions taken while the rules change see one whole list: a flow is
// denied under the deny list and allowed under the empty one, never
// anything else (the race detector checks the rest).
func TestSetEgressWhileDeciding(t *testing.T) {
	r := rules()
	deny := egress(t, "allow 192.0.2.1:80", "deny 192.0.2.0/24")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				deny(r)
			} else {
				r.SetEgress(nil)
			}
		}
	}()
	dst := netip.MustParseAddrPort("192.0.2.1:80")
	for range 10000 {
		if v := r.Outbound(config.TCP, dst); !v.Allowed() {
			t.Fatalf("192.0.2.1:80 refused (%s): allowed by both lists", v.Reason)
		}
	}
	close(stop)
	wg.Wait()
}

// The strict broker's check: a host target is allowed only where a
// guest's flow could go.
func TestHostTarget(t *testing.T) {
	cfg := config.Default()
	cfg.NoHostLoopback = false
	r := FromConfig(cfg)
	ap := netip.MustParseAddrPort
	for _, c := range []struct {
		target string
		want   Reason
	}{
		{"93.184.216.34:443", Allowed},
		{"127.0.0.1:8080", Allowed},
		{"[::1]:8080", Allowed},
		{"127.0.0.2:8080", NotRoutable},
		{"169.254.169.254:80", LinkLocal},
		{"10.0.2.15:22", InsideSubnet},
		{"224.0.0.1:5353", NotRoutable},
	} {
		if got := r.HostTarget(config.TCP, ap(c.target)); got != c.want {
			t.Errorf("%s: %q, want %q", c.target, got, c.want)
		}
	}
	cfg.NoHostLoopback = true
	if got := FromConfig(cfg).HostTarget(config.TCP, ap("127.0.0.1:8080")); got != NoLoopback {
		t.Errorf("loopback with NoHostLoopback: %q", got)
	}
	cfg.NoHostLoopback, cfg.Restrict = false, true
	if got := FromConfig(cfg).HostTarget(config.UDP, ap("93.184.216.34:53")); got != Restricted {
		t.Errorf("restricted: %q", got)
	}
}

// FromConfig lays the address map over the rules, so that the strict
// broker decides as the network: with gvproxy's map (the gateway a plain
// router, the host's loopback at .254 only, for IPv4) the host's ::1 is
// out of every guest's reach, and so out of the engine's.
func TestHostTargetFollowsTheMap(t *testing.T) {
	cfg := config.Default()
	cfg.Map.GatewayIsRouter = true
	cfg.Map.HostLoopback = []netip.Addr{netip.MustParseAddr("10.0.2.254")}
	r := FromConfig(cfg)
	if got := r.HostTarget(config.TCP, netip.MustParseAddrPort("127.0.0.1:8080")); got != Allowed {
		t.Errorf("127.0.0.1, reached at .254: %q, want allowed", got)
	}
	if got := r.HostTarget(config.TCP, netip.MustParseAddrPort("[::1]:8080")); got == Allowed {
		t.Error("[::1] allowed, though no address of the map stands for it")
	}
	if v := r.Outbound(config.TCP, netip.MustParseAddrPort("10.0.2.2:80")); v.Allowed() && v.Target.Addr().IsLoopback() {
		t.Errorf("the router gateway leads to the host's loopback: %+v", v)
	}
}

// TestHostOnly: host-only mode keeps the gateways (to the host's
// loopback), the aliases (to the host's own addresses) and slipway's
// addresses, and refuses every other destination with its own reason;
// NoHostLoopback and Restrict, stricter, still win where they apply.
func TestHostOnly(t *testing.T) {
	aliasMap := map[netip.Addr]netip.Addr{netip.MustParseAddr("169.254.1.2"): netip.MustParseAddr("192.0.2.2")}
	hostOnly := rules(func(r *Rules) { r.HostOnly, r.Aliases = true, aliasMap })
	noLo := rules(func(r *Rules) { r.HostOnly, r.NoHostLoopback = true, true })
	restrict := rules(func(r *Rules) { r.HostOnly, r.Restrict, r.Aliases = true, true, aliasMap })
	linkLocal := rules(func(r *Rules) { r.HostOnly, r.AllowLinkLocal = true, true })
	allowed := rules(func(r *Rules) { r.HostOnly = true }, egress(t, "allow 0.0.0.0/0"))
	denyGw := rules(func(r *Rules) { r.HostOnly = true }, egress(t, "deny 10.0.2.2:22"))
	ap := netip.MustParseAddrPort
	checkOutbound(t, []outboundCase{
		{"gateway to loopback", hostOnly, config.TCP, "10.0.2.2:8080", "127.0.0.1:8080", Allowed},
		{"v6 gateway to loopback", hostOnly, config.UDP, "[fd00::2]:53", "[::1]:53", Allowed},
		{"gateway ping", hostOnly, config.ICMP, "10.0.2.2:0", "127.0.0.1:0", Allowed},
		{"alias to the host", hostOnly, config.TCP, "169.254.1.2:80", "192.0.2.2:80", Allowed},
		{"outside tcp", hostOnly, config.TCP, "192.0.2.10:80", "", HostOnlyMode},
		{"outside udp", hostOnly, config.UDP, "[2001:db8::1]:53", "", HostOnlyMode},
		{"outside ping", hostOnly, config.ICMP, "198.51.100.1:0", "", HostOnlyMode},
		{"direct loopback", hostOnly, config.TCP, "127.0.0.1:22", "", HostOnlyMode},
		{"dns other port", hostOnly, config.TCP, "10.0.2.3:80", "", ServiceAddrPort},
		{"link-local allowed elsewhere", linkLocal, config.TCP, "169.254.169.254:80", "", HostOnlyMode},
		{"an allow rule does not open it", allowed, config.TCP, "192.0.2.10:443", "", HostOnlyMode},
		{"a deny rule still closes the gateway", denyGw, config.TCP, "10.0.2.2:22", "", DeniedByRule},
		{"no host loopback", noLo, config.TCP, "10.0.2.2:8080", "", NoLoopback},
		{"no host loopback, outside", noLo, config.TCP, "192.0.2.10:80", "", HostOnlyMode},
		{"restrict gateway", restrict, config.TCP, "10.0.2.2:8080", "", Restricted},
		{"restrict alias", restrict, config.TCP, "169.254.1.2:80", "", Restricted},
		{"restrict outside", restrict, config.TCP, "192.0.2.10:80", "", Restricted},
	})

	// The strict sandbox's launcher decides the same from the config.
	cfg := config.Default()
	cfg.NoHostLoopback, cfg.Mode = false, config.ModeHostOnly
	r := FromConfig(cfg)
	if !r.HostOnly {
		t.Fatal("FromConfig ignored mode host-only")
	}
	for target, want := range map[string]Reason{
		"127.0.0.1:8080":    Allowed,
		"[::1]:8080":        Allowed,
		"93.184.216.34:443": HostOnlyMode,
		"[2001:db8::1]:53":  HostOnlyMode,
	} {
		if got := r.HostTarget(config.TCP, ap(target)); got != want {
			t.Errorf("HostTarget %s: %q, want %q", target, got, want)
		}
	}
}
