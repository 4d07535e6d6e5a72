//go:build linux

package dgram

import (
	"bytes"
	"encoding/binary"
	"net"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// splitMessages turns fuzz input into messages: each is a big-endian u16
// length (scaled up to reach oversized messages) followed by that many
// bytes, cut short at the end of the input.
func splitMessages(data []byte) [][]byte {
	var msgs [][]byte
	for len(data) >= 2 && len(msgs) < 64 {
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		var m []byte
		if n&0x8000 != 0 {
			// High bit: a large message of a repeated byte, up to
			// well past the largest frame.
			fill := byte(0)
			if len(data) > 0 {
				fill = data[0]
			}
			m = bytes.Repeat([]byte{fill}, (n&0x7fff)*3)
		} else {
			n = min(n, len(data))
			m = data[:n]
			data = data[n:]
		}
		msgs = append(msgs, m)
	}
	// A last good frame: once it is read, every message before it has
	// been seen and counted.
	return append(msgs, frame(60, 0xee))
}

// checkDelivery reads what was sent and checks every message came out as
// a frame of the same bytes, or was counted as oversized.
func checkDelivery(t *testing.T, l link.Link, counters *link.Counters, msgs [][]byte) {
	var want [][]byte
	oversized := 0
	for _, m := range msgs {
		if len(m) > link.MaxFrameLen {
			oversized++
			continue
		}
		want = append(want, m)
	}
	got, _ := readAll(t, l, len(want))
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got[i]), len(want[i]))
		}
	}
	if c := counters.RxOversized.Load(); c != uint64(oversized) {
		t.Fatalf("RxOversized = %d, want %d", c, oversized)
	}
}

func seedMessages(f *testing.F) {
	f.Add([]byte{0, 4, 'V', 'F', 'K', 'T', 0, 14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14})
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0xff})
	f.Add([]byte{0xff, 0xff, 7, 0, 3, 1, 2, 3})
	f.Add([]byte{0x95, 0x56, 1, 0x95, 0x55, 2})
}

func FuzzConnRead(f *testing.F) {
	seedMessages(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs := splitMessages(data)
		l, peer := newConn(t, unix.SOCK_SEQPACKET, Options{Name: "fuzz"})
		unix.SetsockoptInt(peer, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
		go func() {
			for _, m := range msgs {
				unix.Sendmsg(peer, m, nil, nil, 0)
			}
		}()
		// Empty messages are runts the link passes on; only a hang-up
		// ends it, and this peer stays.
		checkDelivery(t, l, l.Counters(), msgs)
	})
}

func FuzzMuxRead(f *testing.F) {
	seedMessages(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs := splitMessages(data)
		dir := t.TempDir()
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		m, err := NewMux(conn, MuxOptions{Options: Options{Name: "fuzz"}})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		c := newClient(t, filepath.Join(dir, "s"), true)
		unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
		// Keep within the peer's queue so nothing is dropped as overrun.
		if len(msgs) > peerQueue {
			msgs = append(msgs[:peerQueue-1], msgs[len(msgs)-1])
		}
		for _, msg := range msgs {
			if err := unix.Send(c.fd, msg, 0); err != nil {
				t.Fatal(err)
			}
		}
		p := accept(t, m)
		if string(msgs[0]) == vfkitMagic {
			msgs = msgs[1:]
		}
		checkDelivery(t, p, p.Counters(), msgs)
	})
}
