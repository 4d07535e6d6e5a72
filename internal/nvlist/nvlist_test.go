package nvlist

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func unhex(t testing.TB, parts ...string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bhyveConfig is what bhyve sends for `-s 1,virtio-net,slirp,open`, laid
// out by hand from <sys/nv.h> and libnv's packing, little-endian.
func bhyveConfig(t testing.TB) []byte {
	return unhex(t,
		"6c", "00", "00", // magic 'l', version 0, flags 0 (little-endian)
		"0000000000000000", // no descriptors
		"5c00000000000000", // 92 bytes follow
		// "backend" = "slirp": type 4 (string), name size 8, data size 6
		"04", "0800", "0600000000000000", "0000000000000000", "6261636b656e6400", "736c69727000",
		// "open" = "true"
		"04", "0500", "0500000000000000", "0000000000000000", "6f70656e00", "7472756500",
		// "vmname" = "vm0"
		"04", "0700", "0400000000000000", "0000000000000000", "766d6e616d6500", "766d3000",
	)
}

// bigEndianNested is {n: 1500, sub: {b: true}} from a big-endian host.
func bigEndianNested(t testing.TB) []byte {
	return unhex(t,
		"6c", "00", "80", "0000000000000000", "0000000000000071", // 113 bytes follow
		"03", "0002", "0000000000000008", "0000000000000000", "6e00", "00000000000005dc", // n = 1500
		// "sub", an nvlist; its data size is libnv's nvlist_size of the
		// child: 41 bytes (header, pair, value), without its end marker.
		"05", "0004", "0000000000000029", "0000000000000000", "73756200",
		"6c", "00", "80", "0000000000000000", "000000000000002a", // nested header: 42 bytes to the end
		"02", "0002", "0000000000000001", "0000000000000000", "6200", "01", // b = true
		"ff", "0001", "0000000000000000", "0000000000000000", "00", // end of "sub"
	)
}

func TestUnpackBhyveConfig(t *testing.T) {
	l, err := Unpack(bhyveConfig(t), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := &List{Pairs: []Pair{
		{"backend", String, "slirp"}, {"open", String, "true"}, {"vmname", String, "vm0"},
	}}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("got %+v, want %+v", l, want)
	}
	if p, ok := l.Get("vmname"); !ok || p.Value != "vm0" {
		t.Errorf("Get(vmname) = %v, %v", p, ok)
	}
	if _, ok := l.Get("VMNAME"); ok {
		t.Error("lookup is case-sensitive without IgnoreCase")
	}
}

// Pack produces libnv's bytes exactly.
func TestPackMatchesLibnv(t *testing.T) {
	got, err := Pack(&List{Pairs: []Pair{
		{"backend", String, "slirp"}, {"open", String, "true"}, {"vmname", String, "vm0"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := bhyveConfig(t); !bytes.Equal(got, want) {
		t.Fatalf("Pack:\n%x\nwant\n%x", got, want)
	}
	// The nested case, byte-swapped to little-endian by hand.
	got, err = Pack(&List{Pairs: []Pair{
		{"n", Number, uint64(1500)},
		{"sub", NVList, &List{Pairs: []Pair{{"b", Bool, true}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t,
		"6c0000", "0000000000000000", "7100000000000000",
		"03", "0200", "0800000000000000", "0000000000000000", "6e00", "dc05000000000000",
		"05", "0400", "2900000000000000", "0000000000000000", "73756200",
		"6c0000", "0000000000000000", "2a00000000000000",
		"02", "0200", "0100000000000000", "0000000000000000", "6200", "01",
		"ff", "0100", "0000000000000000", "0000000000000000", "00",
	)
	if !bytes.Equal(got, want) {
		t.Fatalf("Pack nested:\n%x\nwant\n%x", got, want)
	}
}

func TestUnpackBigEndianNested(t *testing.T) {
	l, err := Unpack(bigEndianNested(t), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := &List{Pairs: []Pair{
		{"n", Number, uint64(1500)},
		{"sub", NVList, &List{Pairs: []Pair{{"b", Bool, true}}}},
	}}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("got %+v, want %+v", l, want)
	}
}

// everyType holds one pair of every type Pack supports, nested lists and
// arrays of lists included.
func everyType() *List {
	return &List{Flags: IgnoreCase, Pairs: []Pair{
		{"null", Null, nil},
		{"yes", Bool, true},
		{"no", Bool, false},
		{"num", Number, uint64(1) << 63},
		{"str", String, ""},
		{"bin", Binary, []byte{0, 1, 2}},
		{"bools", BoolArray, []bool{true, false}},
		{"nums", NumberArray, []uint64{1, 2, 3}},
		{"strs", StringArray, []string{"a", "", "ccc"}},
		{"empty", NVList, &List{}},
		{"deep", NVList, &List{Pairs: []Pair{
			{"inner", NVList, &List{Pairs: []Pair{{"x", String, "y"}}}},
			{"after", Number, uint64(7)},
		}}},
		{"arr", NVListArray, []*List{
			{},
			{Pairs: []Pair{{"k", String, "v"}}},
			{Flags: NoUnique, Pairs: []Pair{{"d", Null, nil}, {"d", Null, nil}}},
		}},
		{"last", String, "end"},
	}}
}

func TestRoundTripEveryType(t *testing.T) {
	in := everyType()
	b, err := Pack(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Unpack(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the list:\n%+v\n%+v", in, out)
	}
	if _, ok := out.Get("LAST"); !ok {
		t.Error("IgnoreCase list: Get(LAST) found nothing")
	}
	if n, err := SizeOf(b); err != nil || n != len(b) {
		t.Errorf("SizeOf = %d, %v; want %d", n, err, len(b))
	}
}

// Every malformed input is an error wrapping ErrMalformed.
func TestUnpackMalformed(t *testing.T) {
	good := bhyveConfig(t)
	patch := func(off int, bs ...byte) []byte {
		b := bytes.Clone(good)
		copy(b[off:], bs)
		return b
	}
	// Offsets in bhyveConfig: header 0..18, first pair header 19..37
	// (type 19, name size 20, data size 22, items 30), name 38..45,
	// value 46..51.
	cases := map[string][]byte{
		"empty":               {},
		"bad magic":           patch(0, 0x6d),
		"bad version":         patch(1, 1),
		"unknown flag":        patch(2, 0x04),
		"size too small":      patch(11, 0x5b),
		"size too large":      patch(11, 0x5d),
		"descriptors":         patch(3, 1),
		"type 0":              patch(19, 0),
		"type 13":             patch(19, 13),
		"name size 0":         patch(20, 0, 0),
		"name size too large": patch(20, 0x01, 0x08),
		"name without NUL":    patch(45, 'x'),
		"name with inner NUL": patch(40, 0),
		"data past the end":   patch(22, 0xff),
		"string without NUL":  patch(51, 'x'),
		"string inner NUL":    patch(48, 0),
		"up at top level":     patch(19, 0xff),
		"next at top level":   patch(19, 0xfe),
		"duplicate names": mustPack(t, &List{Pairs: []Pair{
			{"a", Null, nil}, {"a", Null, nil},
		}}),
		"unterminated nested": mustPack(t, &List{Pairs: []Pair{{"s", NVList, &List{}}}})[:19+21+19],
	}
	// A descriptor pair: type 6, 8 data bytes (an index into fds).
	desc := mustPack(t, &List{Pairs: []Pair{{"fd", Number, uint64(0)}}})
	desc[19] = byte(Descriptor)
	cases["descriptor pair"] = desc
	bools := mustPack(t, &List{Pairs: []Pair{{"b", Bool, true}}})
	bools[len(bools)-1] = 2
	cases["bool 2"] = bools
	nums := mustPack(t, &List{Pairs: []Pair{{"n", NumberArray, []uint64{1, 2}}}})
	nums[19+11] = 3 // three items in 16 bytes
	cases["array count"] = nums
	for name, b := range cases {
		if _, err := Unpack(b, Limits{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Unpack = %v, want ErrMalformed", name, err)
		}
	}
	// Every truncation of a valid list is an error, never a panic.
	full := mustPack(t, everyType())
	for i := 0; i < len(full); i++ {
		if _, err := Unpack(full[:i], Limits{}); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d of %d bytes: Unpack = %v, want ErrMalformed", i, len(full), err)
		}
	}
}

func TestUnpackLimits(t *testing.T) {
	deep := &List{}
	for i := 0; i < 5; i++ {
		deep = &List{Pairs: []Pair{{"d", NVList, deep}}}
	}
	b := mustPack(t, deep)
	if _, err := Unpack(b, Limits{MaxDepth: 5}); err != nil {
		t.Errorf("depth 5 within a limit of 5: %v", err)
	}
	if _, err := Unpack(b, Limits{MaxDepth: 4}); !errors.Is(err, ErrMalformed) {
		t.Errorf("depth 5 over a limit of 4: %v", err)
	}
	many := &List{}
	for i := 0; i < 10; i++ {
		many.Pairs = append(many.Pairs, Pair{string(rune('a' + i)), Null, nil})
	}
	if _, err := Unpack(mustPack(t, many), Limits{MaxPairs: 9}); !errors.Is(err, ErrMalformed) {
		t.Errorf("10 pairs over a limit of 9: %v", err)
	}
}

func mustPack(t testing.TB, l *List) []byte {
	t.Helper()
	b, err := Pack(l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzUnpack: no input panics; what decodes packs and decodes again to
// the same list.
func FuzzUnpack(f *testing.F) {
	f.Add(bhyveConfig(f))
	f.Add(bigEndianNested(f))
	f.Add(mustPack(f, everyType()))
	f.Add(mustPack(f, &List{Pairs: []Pair{{"hostfwd", String, "tcp::2222-:22;udp:127.0.0.1:5353-10.0.2.15:53"}, {"mtu", String, "2000"}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Unpack(b, Limits{})
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		again, err := Pack(l)
		if err != nil {
			t.Fatalf("decoded list does not pack: %v", err)
		}
		l2, err := Unpack(again, Limits{})
		if err != nil {
			t.Fatalf("packed list does not decode: %v", err)
		}
		if !reflect.DeepEqual(l, l2) {
			t.Fatalf("pack/unpack changed the list:\n%+v\n%+v", l, l2)
		}
	})
}
