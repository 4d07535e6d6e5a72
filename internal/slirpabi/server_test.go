package slirpabi

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/slipway-net/slipway/config"
)

// FuzzRequest: any control message of the process shape (but a state
// load, which talks back over the socket) gets a well-formed reply from
// a live instance, never a panic.
func FuzzRequest(f *testing.F) {
	h := sockaddr4("127.0.0.1", 0)
	g := sockaddr4("0.0.0.0", 22)
	add := []byte{'h', 1, 0, 0, 0, 0, 0, 0, 0}
	add = binary.NativeEndian.AppendUint16(add, uint16(len(h)))
	add = append(add, h...)
	add = binary.NativeEndian.AppendUint16(add, uint16(len(g)))
	f.Add(append([]byte{'h', 0}, add[2:]...))
	f.Add([]byte{'h', 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})
	f.Add([]byte{'i'})
	f.Add([]byte{'n'})
	f.Add([]byte{'s'})
	f.Add([]byte{'a', 10, 0, 2, 100, 0x39, 0x05, 0, 0})
	f.Add([]byte{'o', 10, 0, 2, 100, 0x39, 0x05, 0, 0})
	f.Add([]byte{'G', 10, 0, 2, 100, 0x39, 0x05, 0, 0, 'x'})
	f.Add([]byte{'d', 10, 0, 2, 100})
	base := config.Config{DNSUpstreams: []config.DNSServer{{AddrPort: netip.MustParseAddrPort("127.0.0.1:1")}}}
	inst, err := New(qemuDefaults(), base, func() {}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(inst.Close)
	f.Fuzz(func(t *testing.T, m []byte) {
		if len(m) == 0 || m[0] == 'l' {
			return
		}
		if m[0] == 'h' && len(m) > 1 && m[1] != 0 {
			// An addition binds a host port at the fuzzer's say: only
			// removals are fuzzed (additions are the C test's).
			return
		}
		rep, err := request(inst, nil, m, nil)
		if err != nil {
			t.Fatalf("%q: %v", m, err)
		}
		if len(rep) == 0 || (rep[0] == 'R' && len(rep) != 5) || (rep[0] != 'R' && rep[0] != 'S') {
			t.Fatalf("%q: reply %q", m, rep)
		}
	})
}
