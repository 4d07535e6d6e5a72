package dnsname

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, ok := range []string{"example.org", "example.org.", "a", "host.slipway.internal", strings.Repeat("a", 63) + ".b"} {
		if err := Check(ok); err != nil {
			t.Errorf("Check(%q) = %v", ok, err)
		}
	}
	long := strings.Repeat(strings.Repeat("a", 60)+".", 5)
	for _, bad := range []string{"", ".", "a..b", ".a", strings.Repeat("a", 64), long, "has space", "tab\there", "é.example", "nul\x00"} {
		if err := Check(bad); err == nil {
			t.Errorf("Check(%q) accepted", bad)
		}
	}
}

func TestEncode(t *testing.T) {
	got := Encode([]string{"example.org", "a.b.", "x"})
	want := "\x07example\x03org\x00\x01a\x01b\x00\x01x\x00"
	if string(got) != want {
		t.Fatalf("Encode = %q, want %q", got, want)
	}
	if Encode(nil) != nil {
		t.Fatal("Encode(nil) is not empty")
	}
}
