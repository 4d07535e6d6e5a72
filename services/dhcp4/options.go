package dhcp4

import (
	"encoding/binary"
	"strings"
	"time"
)

// encodeSearchList builds option 119 data (RFC 3397): the names in DNS wire
// format, one after another, where a name whose tail was already written
// ends in a compression pointer to it. Offsets count from the start of the
// option data, as the RFC specifies. Names must have passed dnsname.Check.
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
