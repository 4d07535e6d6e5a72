package main

import (
	"net/netip"
	"testing"
)

func TestParseMAC(t *testing.T) {
	m, err := parseMAC("52:54:00:AB:cd:01")
	if err != nil || m.String() != "52:54:00:ab:cd:01" {
		t.Errorf("parseMAC: %v, %v", m, err)
	}
	// net.ParseMAC also takes EUI-64 and InfiniBand addresses; a TAP
	// device has an Ethernet one.
	for _, bad := range []string{"", "52:54:00:ab:cd", "zz:54:00:ab:cd:01", "02:00:5e:10:00:00:00:01"} {
		if m, err := parseMAC(bad); err == nil {
			t.Errorf("parseMAC(%q) = %v, accepted", bad, m)
		}
	}
}

func TestGuestMAC(t *testing.T) {
	for addr, want := range map[string]string{
		"10.0.2.15":   "52:54:0a:00:02:0f",
		"10.0.2.100":  "52:54:0a:00:02:64",
		"192.168.7.1": "52:54:c0:a8:07:01",
	} {
		got := guestMAC(netip.MustParseAddr(addr))
		if got.String() != want {
			t.Errorf("guestMAC(%s) = %s, want %s", addr, got, want)
		}
		// Locally administered unicast, so it clashes with no vendor's.
		if got[0]&1 != 0 || got[0]&2 == 0 {
			t.Errorf("guestMAC(%s) = %s is not a locally administered unicast address", addr, got)
		}
	}
}
