package endpoint

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/slipway-net/slipway/link"
)

// A socket Open binds (the launcher) serves once FromFile made it a
// listener (the engine): a peer's frame arrives on the accepted link. The
// engine's Close leaves the socket file, which only remove deletes; Open
// takes over a stale socket file at the path, as Listen does.
func TestOpenHandsOver(t *testing.T) {
	for _, c := range []struct {
		kind    Kind
		network string
		frame   func([]byte) []byte
	}{
		{Stream, "unix", func(f []byte) []byte { return binary.BigEndian.AppendUint32(nil, uint32(len(f))) }},
		{Seqpacket, "unixpacket", func([]byte) []byte { return nil }},
	} {
		t.Run(string(c.kind), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.sock")
			stale, err := net.ListenUnix(c.network, &net.UnixAddr{Name: path, Net: c.network})
			if err != nil {
				t.Fatal(err)
			}
			stale.SetUnlinkOnClose(false)
			stale.Close()
			spec := Spec{Kind: c.kind, Network: "unix", Address: path}
			f, remove, err := Open(spec)
			if err != nil {
				t.Fatalf("Open over a stale socket file: %v", err)
			}
			l, err := FromFile(spec, f, nil)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := net.Dial(c.network, path)
			if err != nil {
				l.Close()
				t.Fatal(err)
			}
			defer conn.Close()
			lk, err := l.Accept()
			if err != nil {
				l.Close()
				t.Fatal(err)
			}
			defer lk.Close()
			msg := make([]byte, 64)
			msg[30] = 7
			conn.Write(append(c.frame(msg), msg...))
			bufs, sizes := link.NewBuffers(lk.BatchSize())
			n, err := lk.Read(bufs, sizes)
			if err != nil || n != 1 || sizes[0] != 64 || bufs[0][link.VnetHdrLen+30] != 7 {
				t.Fatalf("Read = %d frames (sizes %v), %v; want the 64-byte frame sent", n, sizes[:n], err)
			}
			l.Close()
			if _, err := os.Lstat(path); err != nil {
				t.Fatalf("the engine's Close removed the launcher's socket file: %v", err)
			}
			remove()
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Errorf("after remove: %v, want the socket file gone", err)
			}
		})
	}
}
