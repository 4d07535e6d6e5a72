package dhcp6

import (
	"net/netip"
	"testing"
)

func TestLastAddr(t *testing.T) {
	for p, want := range map[string]string{
		"fd00::/64":       "fd00::ffff:ffff:ffff:ffff",
		"fd00::/120":      "fd00::ff",
		"fd00:0:0:1::/63": "fd00:0:0:1:ffff:ffff:ffff:ffff",
		"fd00::5/125":     "fd00::7",
		"::/1":            "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	} {
		if got := lastAddr(netip.MustParsePrefix(p)); got != netip.MustParseAddr(want) {
			t.Errorf("lastAddr(%s) = %v, want %s", p, got, want)
		}
	}
}
