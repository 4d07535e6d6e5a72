package pcap

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

func TestWriterLayout(t *testing.T) {
	var b bytes.Buffer
	w, err := NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.now = func() time.Time { return time.Unix(100, 5000) }
	frame := bytes.Repeat([]byte{0xab}, 60)
	if err := w.WriteFrame(frame); err != nil {
		t.Fatal(err)
	}
	out := b.Bytes()
	if len(out) != 24+16+60 {
		t.Fatalf("capture is %d bytes, want %d", len(out), 24+16+60)
	}
	if binary.LittleEndian.Uint32(out) != magicMicroseconds || binary.LittleEndian.Uint32(out[20:]) != linkTypeEthernet {
		t.Fatalf("bad file header % x", out[:24])
	}
	rec := out[24:]
	if sec, usec := binary.LittleEndian.Uint32(rec), binary.LittleEndian.Uint32(rec[4:]); sec != 100 || usec != 5 {
		t.Fatalf("timestamp %d.%06d, want 100.000005", sec, usec)
	}
	if incl, orig := binary.LittleEndian.Uint32(rec[8:]), binary.LittleEndian.Uint32(rec[12:]); incl != 60 || orig != 60 {
		t.Fatalf("lengths %d/%d, want 60/60", incl, orig)
	}
	if !bytes.Equal(rec[16:], frame) {
		t.Fatal("frame bytes differ")
	}
}
