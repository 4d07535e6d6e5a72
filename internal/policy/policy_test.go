package policy

import (
	"net/netip"
	"testing"

	"github.com/slipway-net/slipway/config"
)

func TestOutbound(t *testing.T) {
	base := Rules{
		Subnets:  []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24"), netip.MustParsePrefix("fd00::/64")},
		Gateways: []netip.Addr{netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("fd00::2")},
		Services: []netip.Addr{netip.MustParseAddr("10.0.2.3")},
	}
	noLo := base
	noLo.NoHostLoopback = true
	restrict := base
	restrict.Restrict = true
	aliased := base
	aliased.Aliases = map[netip.Addr]netip.Addr{netip.MustParseAddr("169.254.1.2"): netip.MustParseAddr("192.0.2.2")}
	aliasedRestrict := aliased
	aliasedRestrict.Restrict = true
	deny := base
	deny.Deny = []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}
	denyAliased := aliased
	denyAliased.Deny = deny.Deny
	ap := netip.MustParseAddrPort
	cases := []struct {
		name   string
		rules  Rules
		dst    string
		target string
		reason Reason
	}{
		{"internet", base, "192.0.2.10:80", "192.0.2.10:80", Allowed},
		{"gateway to loopback", base, "10.0.2.2:8080", "127.0.0.1:8080", Allowed},
		{"v6 gateway to loopback", base, "[fd00::2]:22", "[::1]:22", Allowed},
		{"gateway without loopback", noLo, "10.0.2.2:8080", "", NoLoopback},
		{"internet without loopback", noLo, "192.0.2.10:80", "192.0.2.10:80", Allowed},
		{"restricted internet", restrict, "192.0.2.10:80", "", Restricted},
		{"restricted gateway", restrict, "10.0.2.2:80", "", Restricted},
		{"direct loopback", base, "127.0.0.1:22", "", NotRoutable},
		{"mapped loopback", base, "[::ffff:127.0.0.1]:22", "", NotRoutable},
		{"v6 loopback", base, "[::1]:22", "", NotRoutable},
		{"broadcast", base, "255.255.255.255:9", "", NotRoutable},
		{"multicast", base, "224.0.0.251:5353", "", NotRoutable},
		{"unspecified", base, "0.0.0.0:80", "", NotRoutable},
		{"other guest", base, "10.0.2.16:80", "", InsideSubnet},
		{"dns other port", base, "10.0.2.3:80", "", ServiceAddrPort},
		{"alias to the host's address", aliased, "169.254.1.2:8080", "192.0.2.2:8080", Allowed},
		{"no alias without the map", base, "169.254.1.2:8080", "169.254.1.2:8080", Allowed},
		{"restricted alias", aliasedRestrict, "169.254.1.2:8080", "", Restricted},
		{"denied metadata", deny, "169.254.169.254:80", "", Denied},
		{"outside the denied", deny, "192.0.2.10:80", "192.0.2.10:80", Allowed},
		{"an alias over the denied", denyAliased, "169.254.1.2:8080", "192.0.2.2:8080", Allowed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := c.rules.Outbound(config.TCP, ap(c.dst))
			if v.Reason != c.reason {
				t.Fatalf("reason %q, want %q", v.Reason, c.reason)
			}
			if c.target != "" && v.Target != ap(c.target) {
				t.Fatalf("target %v, want %v", v.Target, c.target)
			}
		})
	}
}
