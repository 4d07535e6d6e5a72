// Package nvlist reads and writes FreeBSD's name/value lists (libnv) in
// their wire format, the one nvlist_pack and nvlist_send produce. bhyve
// hands its slirp helper its configuration this way.
//
// The format, all integers in the sender's byte order (flag 0x80 in the
// list header means big-endian):
//
//	list header, 19 bytes: u8 magic 0x6c, u8 version 0, u8 flags,
//	    u64 descriptor count, u64 size (bytes after this header, to the
//	    end of the whole buffer, also in nested headers)
//	pair header, 19 bytes: u8 type, u16 name size (with its NUL),
//	    u64 data size, u64 item count (arrays); then the name and NUL
//
// A nested list follows its NVLIST pair as a list header and pairs and
// ends with an NVLIST_UP pair (type 255, empty name). Each element of an
// NVLIST_ARRAY is a list header and pairs ended by NVLIST_ARRAY_NEXT
// (type 254). Descriptors travel separately as SCM_RIGHTS and are not
// supported here: a list that has any is rejected.
package nvlist

import (
	"errors"
	"fmt"
	"strings"
)

// Type is a pair's type, numbered as in <sys/nv.h>.
type Type uint8

// Pair types.
const (
	Null            Type = 1
	Bool            Type = 2
	Number          Type = 3
	String          Type = 4
	NVList          Type = 5
	Descriptor      Type = 6
	Binary          Type = 7
	BoolArray       Type = 8
	NumberArray     Type = 9
	StringArray     Type = 10
	NVListArray     Type = 11
	DescriptorArray Type = 12

	typeArrayNext Type = 254 // ends an element of an NVLIST_ARRAY
	typeUp        Type = 255 // ends a nested list
)

var typeNames = map[Type]string{
	Null: "null", Bool: "bool", Number: "number", String: "string", NVList: "nvlist",
	Descriptor: "descriptor", Binary: "binary", BoolArray: "bool array", NumberArray: "number array",
	StringArray: "string array", NVListArray: "nvlist array", DescriptorArray: "descriptor array",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Public list flags.
const (
	// IgnoreCase makes name lookups case-insensitive.
	IgnoreCase = 0x01
	// NoUnique allows several pairs of one name.
	NoUnique = 0x02

	flagBigEndian = 0x80
	flagMask      = IgnoreCase | NoUnique | flagBigEndian
)

// HeaderSize is the size of a list header, the least a reader must have
// to learn a packed list's size (SizeOf).
const HeaderSize = 19

// Wire constants.
const (
	headerMagic   = 0x6c
	headerVersion = 0
	headerSize    = HeaderSize
	pairSize      = 19
	// NameMax is the longest name, with its NUL (NV_NAME_MAX).
	NameMax = 2048
)

// List is a decoded name/value list.
type List struct {
	Flags uint8 // IgnoreCase, NoUnique
	Pairs []Pair
}

// Pair is one named value. Value holds, by Type: nil (Null), bool,
// uint64 (Number), string, *List (NVList), []byte (Binary), []bool,
// []uint64, []string, []*List.
type Pair struct {
	Name  string
	Type  Type
	Value any
}

// Get returns the first pair called name.
func (l *List) Get(name string) (Pair, bool) {
	for _, p := range l.Pairs {
		if p.Name == name || l.Flags&IgnoreCase != 0 && strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return Pair{}, false
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed nvlist")

// Limits bound what a decoded list may hold, beyond the input's size.
type Limits struct {
	// MaxDepth bounds nesting of lists (default 32).
	MaxDepth int
	// MaxPairs bounds the pairs in all lists together (default 4096).
	MaxPairs int
}

func (l *Limits) complete() {
	if l.MaxDepth <= 0 {
		l.MaxDepth = 32
	}
	if l.MaxPairs <= 0 {
		l.MaxPairs = 4096
	}
}
