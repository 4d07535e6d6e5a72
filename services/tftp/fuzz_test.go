package tftp

import (
	"encoding/binary"
	"strings"
	"testing"
)

// FuzzParseRequest: any packet parses or is refused, never a panic; a
// parsed request has a filename and a known mode, and re-encoding it
// parses to the same request.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("\x00\x01pxelinux.0\x00octet\x00"))
	f.Add([]byte("\x00\x01boot.ipxe\x00octet\x00blksize\x001432\x00tsize\x000\x00"))
	f.Add([]byte("\x00\x02x\x00netascii\x00"))
	f.Add([]byte("\x00\x01\x00octet\x00"))
	f.Add([]byte("\x00\x03\x00\x01data"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if r.Filename == "" || (r.Mode != "octet" && r.Mode != "netascii") || len(r.Options) > maxOptions {
			t.Fatalf("bad request parsed: %+v", r)
		}
		op := uint16(opRRQ)
		if r.Write {
			op = opWRQ
		}
		enc := binary.BigEndian.AppendUint16(nil, op)
		enc = append(append(append(append(enc, r.Filename...), 0), r.Mode...), 0)
		for k, v := range r.Options {
			if strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
				t.Fatalf("NUL inside an option: %q=%q", k, v)
			}
			enc = append(append(append(append(enc, k...), 0), v...), 0)
		}
		if len(enc) > maxRequestLen {
			return
		}
		r2, err := ParseRequest(enc)
		if err != nil || r2.Filename != r.Filename || r2.Mode != r.Mode || len(r2.Options) != len(r.Options) {
			t.Fatalf("re-encoded %+v parses to %+v, %v", r, r2, err)
		}
	})
}
