package nvlist

import (
	"encoding/binary"
	"fmt"
)

// Pack encodes l as nvlist_pack does on a little-endian host, for lists
// without descriptors. Tests use it to play bhyve's part.
func Pack(l *List) ([]byte, error) {
	e := &encoder{}
	if err := e.list(l, 0); err != nil {
		return nil, err
	}
	// Every list header's size field counts the bytes after it to the
	// end of the whole buffer, known only now.
	for _, off := range e.headers {
		binary.LittleEndian.PutUint64(e.b[off+11:], uint64(len(e.b)-off-headerSize))
	}
	// A nested list's pair records how far the list reaches, counted as
	// libnv's nvlist_size counts it: to the end of the buffer, without
	// the end markers of the list and of the lists around it.
	for _, n := range e.nested {
		size := len(e.b) - n.dataOff - n.depth*(pairSize+1)
		binary.LittleEndian.PutUint64(e.b[n.pairOff+3:], uint64(size))
	}
	return e.b, nil
}

type encoder struct {
	b       []byte
	headers []int
	nested  []nestedPair
}

type nestedPair struct {
	pairOff, dataOff, depth int
}

func (e *encoder) header(flags uint8) {
	e.headers = append(e.headers, len(e.b))
	e.b = append(e.b, headerMagic, headerVersion, flags)
	e.b = binary.LittleEndian.AppendUint64(e.b, 0) // descriptors
	e.b = binary.LittleEndian.AppendUint64(e.b, 0) // size, filled in by Pack
}

func (e *encoder) pairHeader(t Type, name string, datasize, nitems int) error {
	if len(name)+1 > NameMax {
		return fmt.Errorf("nvlist: name of %d bytes is too long", len(name))
	}
	e.b = append(e.b, byte(t))
	e.b = binary.LittleEndian.AppendUint16(e.b, uint16(len(name)+1))
	e.b = binary.LittleEndian.AppendUint64(e.b, uint64(datasize))
	e.b = binary.LittleEndian.AppendUint64(e.b, uint64(nitems))
	e.b = append(e.b, name...)
	e.b = append(e.b, 0)
	return nil
}

func (e *encoder) list(l *List, depth int) error {
	e.header(l.Flags &^ flagBigEndian)
	for _, p := range l.Pairs {
		if err := e.pair(p, depth); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) pair(p Pair, depth int) error {
	bad := func() error { return fmt.Errorf("nvlist: pair %q: %s cannot hold a %T", p.Name, p.Type, p.Value) }
	switch p.Type {
	case Null:
		return e.pairHeader(Null, p.Name, 0, 0)
	case Bool:
		v, ok := p.Value.(bool)
		if !ok {
			return bad()
		}
		if err := e.pairHeader(Bool, p.Name, 1, 0); err != nil {
			return err
		}
		e.b = append(e.b, boolByte(v))
	case Number:
		v, ok := p.Value.(uint64)
		if !ok {
			return bad()
		}
		if err := e.pairHeader(Number, p.Name, 8, 0); err != nil {
			return err
		}
		e.b = binary.LittleEndian.AppendUint64(e.b, v)
	case String:
		v, ok := p.Value.(string)
		if !ok {
			return bad()
		}
		if err := e.pairHeader(String, p.Name, len(v)+1, 0); err != nil {
			return err
		}
		e.b = append(append(e.b, v...), 0)
	case Binary:
		v, ok := p.Value.([]byte)
		if !ok || len(v) == 0 {
			return bad()
		}
		if err := e.pairHeader(Binary, p.Name, len(v), 0); err != nil {
			return err
		}
		e.b = append(e.b, v...)
	case BoolArray:
		v, ok := p.Value.([]bool)
		if !ok || len(v) == 0 {
			return bad()
		}
		if err := e.pairHeader(BoolArray, p.Name, len(v), len(v)); err != nil {
			return err
		}
		for _, x := range v {
			e.b = append(e.b, boolByte(x))
		}
	case NumberArray:
		v, ok := p.Value.([]uint64)
		if !ok || len(v) == 0 {
			return bad()
		}
		if err := e.pairHeader(NumberArray, p.Name, 8*len(v), len(v)); err != nil {
			return err
		}
		for _, x := range v {
			e.b = binary.LittleEndian.AppendUint64(e.b, x)
		}
	case StringArray:
		v, ok := p.Value.([]string)
		if !ok || len(v) == 0 {
			return bad()
		}
		size := 0
		for _, s := range v {
			size += len(s) + 1
		}
		if err := e.pairHeader(StringArray, p.Name, size, len(v)); err != nil {
			return err
		}
		for _, s := range v {
			e.b = append(append(e.b, s...), 0)
		}
	case NVList:
		v, ok := p.Value.(*List)
		if !ok || v == nil {
			return bad()
		}
		n := nestedPair{pairOff: len(e.b), depth: depth + 1}
		if err := e.pairHeader(NVList, p.Name, 0, 0); err != nil {
			return err
		}
		n.dataOff = len(e.b)
		e.nested = append(e.nested, n)
		if err := e.list(v, depth+1); err != nil {
			return err
		}
		return e.pairHeader(typeUp, "", 0, 0)
	case NVListArray:
		v, ok := p.Value.([]*List)
		if !ok || len(v) == 0 {
			return bad()
		}
		if err := e.pairHeader(NVListArray, p.Name, 0, len(v)); err != nil {
			return err
		}
		for _, el := range v {
			if el == nil {
				return bad()
			}
			if err := e.list(el, depth+1); err != nil {
				return err
			}
			if err := e.pairHeader(typeArrayNext, "", 0, 0); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("nvlist: pair %q: cannot pack a %s", p.Name, p.Type)
	}
	return nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}
