package dhcp4

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// checkDomainName validates a DNS name given in configuration, so the
// server never sends a name a resolver would reject. A trailing dot is
// allowed.
func checkDomainName(name string) error {
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
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c <= ' ' || c >= 0x7f {
				return fmt.Errorf("domain name %q has a space, control or non-ASCII byte", name)
			}
		}
	}
	return nil
}

// encodeSearchList builds option 119 data (RFC 3397): the names in DNS wire
// format, one after another, where a name whose tail was already written
// ends in a compression pointer to it. Offsets count from the start of the
// option data, as the RFC specifies. Names must have passed checkDomainName.
func encodeSearchList(names []string) []byte {
	var out []byte
	seen := make(map[string]int) // lower-case suffix -> offset
	for _, name := range names {
		labels := strings.Split(strings.TrimSuffix(name, "."), ".")
		pointed := false
		for i := range labels {
			suffix := strings.ToLower(strings.Join(labels[i:], "."))
			if off, ok := seen[suffix]; ok {
				out = append(out, 0xc0|byte(off>>8), byte(off))
				pointed = true
				break
			}
			// Pointers have 14 bits; later suffixes are written in full.
			if len(out) < 0x4000 {
				seen[suffix] = len(out)
			}
			out = append(out, byte(len(labels[i])))
			out = append(out, labels[i]...)
		}
		if !pointed {
			out = append(out, 0)
		}
	}
	return out
}

// seconds encodes a duration as the 32-bit seconds count of options 51,
// 58 and 59.
func seconds(d time.Duration) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(d/time.Second))
}
