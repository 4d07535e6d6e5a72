// Package dnsname validates the DNS names slipway's services take from
// configuration (domain, search list, local names), so a bad name is
// rejected when the user gives it rather than sent to a guest.
package dnsname

import (
	"fmt"
	"strings"
)

// Check reports whether name is a DNS name in dotted form that fits the
// wire format: labels of 1 to 63 printable ASCII bytes, at most 253 bytes
// in all. A trailing dot is allowed. Errors quote the name.
func Check(name string) error {
	n := strings.TrimSuffix(name, ".")
	if n == "" {
		return fmt.Errorf("empty domain name %q", name)
	}
	if len(n) > 253 {
		return fmt.Errorf("domain name %q is longer than 253 bytes", name)
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("domain name %q has a label that is empty or longer than 63 bytes", name)
		}
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("domain name %q has a space, control or non-ASCII byte", name)
		}
	}
	return nil
}

// Encode writes names in DNS wire format (RFC 1035 section 3.1), one after
// another and uncompressed, as DHCPv6's domain list (RFC 8415 section
// 10) and the router advertisement's DNSSL (RFC 8106 section 5.2) want
// them. Names must have passed Check.
func Encode(names []string) []byte {
	var out []byte
	for _, name := range names {
		for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
			out = append(out, byte(len(label)))
			out = append(out, label...)
		}
		out = append(out, 0)
	}
	return out
}
