package slirpabi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// socketRecord is one guest-forward socket as libslirp 4.7 writes it
// (version 4), with a sbuf of n bytes each way.
func socketRecord(n uint32) []byte {
	var b []byte
	b = append(b, 42)
	b = binary.BigEndian.AppendUint32(b, 0) // so_urgc
	for range 2 {                           // fhost, lhost: AF_INET
		b = binary.BigEndian.AppendUint16(b, 2)
		b = append(b, 10, 0, 2, 100, 0x04, 0xd2)
	}
	b = append(b, 0, 0, 1)                  // iptos, emu, type
	b = binary.BigEndian.AppendUint32(b, 4) // so_state
	for range 2 {
		b = binary.BigEndian.AppendUint32(b, 0) // sb_cc
		b = binary.BigEndian.AppendUint32(b, n) // sb_datalen
		b = binary.BigEndian.AppendUint32(b, 0) // woff
		b = binary.BigEndian.AppendUint32(b, 0) // roff
		b = append(b, make([]byte, n)...)
	}
	return append(b, make([]byte, tcpcbLen)...)
}

func sampleState() State {
	var st State
	st.IPID = 0x1234
	st.Clients[0] = BootpClient{Allocated: true, MAC: [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}}
	st.Clients[15] = BootpClient{Allocated: true, MAC: [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x57}}
	return st
}

func TestWriteStateIsLibslirpsLayout(t *testing.T) {
	var b bytes.Buffer
	if err := WriteState(&b, sampleState()); err != nil {
		t.Fatal(err)
	}
	got := b.Bytes()
	if len(got) != 131 {
		t.Fatalf("%d bytes, want 131", len(got))
	}
	want := []byte{0, 0x12, 0x34, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56}
	if !bytes.Equal(got[:len(want)], want) {
		t.Errorf("start % x, want % x", got[:len(want)], want)
	}
	if !bytes.Equal(got[123:], []byte{0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x57}) {
		t.Errorf("last entry % x", got[123:])
	}
}

func TestReadStateSkipsSocketsAndStopsAtItsEnd(t *testing.T) {
	var table bytes.Buffer
	WriteState(&table, sampleState())
	stream := append(socketRecord(8), socketRecord(0x100)...)
	stream = append(stream, table.Bytes()...)
	stream = append(stream, "next section"...)
	r := bytes.NewReader(stream)
	st, err := ReadState(r, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleState()
	want.Sockets = 2
	if st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}
	if rest := r.Len(); rest != len("next section") {
		t.Errorf("%d bytes left after the state, want %d", rest, len("next section"))
	}
}

func TestReadStateOlderVersions(t *testing.T) {
	// Version 1 has nothing after the socket list; version 2 adds ip_id.
	if st, err := ReadState(bytes.NewReader([]byte{0}), 1); err != nil || st.IPID != 0 {
		t.Errorf("version 1: %+v, %v", st, err)
	}
	if st, err := ReadState(bytes.NewReader([]byte{0, 0xab, 0xcd}), 2); err != nil || st.IPID != 0xabcd {
		t.Errorf("version 2: %+v, %v", st, err)
	}
	// Version 3's socket records carry IPv4 addresses without a family.
	rec := []byte{42}
	rec = binary.BigEndian.AppendUint32(rec, 0)
	rec = append(rec, make([]byte, 12)...)
	rec = append(rec, 0, 0, 1, 0, 0, 0, 4)
	for range 2 {
		rec = binary.BigEndian.AppendUint32(rec, 0)
		rec = binary.BigEndian.AppendUint32(rec, 4)
		rec = append(rec, make([]byte, 8+4)...)
	}
	rec = append(rec, make([]byte, tcpcbLen)...)
	var table bytes.Buffer
	WriteState(&table, sampleState())
	st, err := ReadState(bytes.NewReader(append(rec, table.Bytes()...)), 3)
	if err != nil || st.Sockets != 1 || st.Clients != sampleState().Clients {
		t.Errorf("version 3: %+v, %v", st, err)
	}
}

func TestReadStateRefusesBadStreams(t *testing.T) {
	var table bytes.Buffer
	WriteState(&table, sampleState())
	huge := socketRecord(0)
	// sb_datalen of the first sbuf: past tag, urgc, 2 addresses, 7 bytes.
	binary.BigEndian.PutUint32(huge[1+4+16+7+4:], maxSbuf+1)
	badOffset := socketRecord(8)
	binary.BigEndian.PutUint32(badOffset[1+4+16+7+8:], 8)
	badFamily := socketRecord(8)
	binary.BigEndian.PutUint16(badFamily[5:], 7)
	for name, c := range map[string]struct {
		b       []byte
		version int
	}{
		"empty":             {nil, 4},
		"truncated table":   {table.Bytes()[:100], 4},
		"version 0":         {table.Bytes(), 0},
		"version 5":         {table.Bytes(), 5},
		"huge buffer":       {append(huge, table.Bytes()...), 4},
		"offset past end":   {append(badOffset, table.Bytes()...), 4},
		"bad family":        {append(badFamily, table.Bytes()...), 4},
		"truncated socket":  {socketRecord(8)[:50], 4},
		"endless socket 42": {bytes.Repeat([]byte{42}, 64), 4},
	} {
		if _, err := ReadState(bytes.NewReader(c.b), c.version); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: err %v, want ErrBadState", name, err)
		}
	}
}

// FuzzReadState: any stream is read without a panic, never past its end;
// what loads re-encodes to a stream that loads to the same table.
func FuzzReadState(f *testing.F) {
	var table bytes.Buffer
	WriteState(&table, sampleState())
	f.Add(table.Bytes(), 4)
	f.Add(append(socketRecord(8), table.Bytes()...), 4)
	f.Add([]byte{0, 1, 2}, 2)
	f.Add([]byte{0}, 1)
	f.Fuzz(func(t *testing.T, b []byte, version int) {
		r := bytes.NewReader(b)
		st, err := ReadState(r, version)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("error %v is not ErrBadState", err)
			}
			return
		}
		var again bytes.Buffer
		if err := WriteState(&again, st); err != nil {
			t.Fatal(err)
		}
		st2, err := ReadState(&again, StateVersion)
		if err != nil {
			t.Fatalf("re-encoded state does not load: %v", err)
		}
		if version >= 3 && st2.Clients != st.Clients || version >= 2 && st2.IPID != st.IPID {
			t.Fatalf("round trip changed the state: %+v -> %+v", st, st2)
		}
	})
}
