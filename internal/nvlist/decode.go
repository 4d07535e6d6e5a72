package nvlist

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// SizeOf reads the list header at the start of b and returns how long the
// whole packed list is, so a reader knows how much to collect before
// calling Unpack. b must hold at least 19 bytes.
func SizeOf(b []byte) (int, error) {
	if len(b) < headerSize {
		return 0, fmt.Errorf("%w: %d bytes, shorter than a list header", ErrMalformed, len(b))
	}
	d := decoder{b: b}
	h, err := d.header(true)
	if err != nil {
		return 0, err
	}
	if h.size > uint64(1<<31) {
		return 0, fmt.Errorf("%w: list claims %d bytes", ErrMalformed, h.size)
	}
	return headerSize + int(h.size), nil
}

// Unpack decodes a packed list, checking it as strictly as libnv's own
// nvlist_unpack does (and a little more: nesting must be closed, and
// pairs may not mix byte orders). Nothing in b is trusted: every length
// is checked against what is left, so malformed input is an error
// wrapping ErrMalformed, never a panic or a large allocation.
func Unpack(b []byte, lim Limits) (*List, error) {
	lim.complete()
	d := decoder{b: b, lim: lim}
	return d.run()
}

type decoder struct {
	b     []byte
	off   int
	be    bool
	lim   Limits
	pairs int
}

func (d *decoder) order() binary.ByteOrder {
	if d.be {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

func (d *decoder) errf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrMalformed, d.off, fmt.Sprintf(format, args...))
}

func (d *decoder) left() uint64 { return uint64(len(d.b) - d.off) }

type listHeader struct {
	flags       uint8
	descriptors uint64
	size        uint64
}

// header reads a list header; the first one sets the byte order, later
// ones must agree with it.
func (d *decoder) header(first bool) (listHeader, error) {
	if d.left() < headerSize {
		return listHeader{}, d.errf("truncated list header")
	}
	b := d.b[d.off:]
	if b[0] != headerMagic {
		return listHeader{}, d.errf("bad list magic %#x", b[0])
	}
	if b[1] != headerVersion {
		return listHeader{}, d.errf("unsupported list version %d", b[1])
	}
	flags := b[2]
	if flags&^flagMask != 0 {
		return listHeader{}, d.errf("unknown list flags %#x", flags)
	}
	be := flags&flagBigEndian != 0
	if first {
		d.be = be
	} else if be != d.be {
		return listHeader{}, d.errf("nested list in another byte order")
	}
	o := d.order()
	h := listHeader{flags: flags &^ flagBigEndian, descriptors: o.Uint64(b[3:]), size: o.Uint64(b[11:])}
	d.off += headerSize
	return h, nil
}

// checkedHeader reads a list header that must account for exactly the
// rest of the buffer and carry no descriptors.
func (d *decoder) checkedHeader(first bool) (uint8, error) {
	h, err := d.header(first)
	if err != nil {
		return 0, err
	}
	if h.size != d.left() {
		return 0, d.errf("list header says %d bytes follow, %d do", h.size, d.left())
	}
	if h.descriptors != 0 {
		return 0, d.errf("list carries %d descriptors; none can be received here", h.descriptors)
	}
	return h.flags, nil
}

type pairHeader struct {
	typ      Type
	name     string
	datasize uint64
	nitems   uint64
}

func (d *decoder) pairHeader() (pairHeader, error) {
	if d.left() < pairSize {
		return pairHeader{}, d.errf("truncated pair header")
	}
	b := d.b[d.off:]
	o := d.order()
	h := pairHeader{typ: Type(b[0]), datasize: o.Uint64(b[3:]), nitems: o.Uint64(b[11:])}
	namesize := int(o.Uint16(b[1:]))
	if h.typ == 0 || h.typ > DescriptorArray && h.typ != typeArrayNext && h.typ != typeUp {
		return pairHeader{}, d.errf("unknown pair type %d", b[0])
	}
	if namesize < 1 || namesize > NameMax {
		return pairHeader{}, d.errf("name size %d out of range 1..%d", namesize, NameMax)
	}
	d.off += pairSize
	if d.left() < uint64(namesize) {
		return pairHeader{}, d.errf("truncated name")
	}
	name := d.b[d.off : d.off+namesize]
	if bytes.IndexByte(name, 0) != namesize-1 {
		return pairHeader{}, d.errf("name is not one NUL-terminated string")
	}
	h.name = string(name[:namesize-1])
	d.off += namesize
	if h.datasize > d.left() {
		return pairHeader{}, d.errf("pair %q claims %d data bytes, %d are left", h.name, h.datasize, d.left())
	}
	return h, nil
}

// open is a list being filled: a nested list (closed by UP) or the
// elements of an array (each closed by ARRAY_NEXT).
type open struct {
	parent *List
	elems  []*List // nil for a nested list
	next   int     // index of the element being filled
}

func (d *decoder) run() (*List, error) {
	root := &List{}
	flags, err := d.checkedHeader(true)
	if err != nil {
		return nil, err
	}
	root.Flags = flags
	cur := root
	var stack []open
	for d.left() > 0 {
		h, err := d.pairHeader()
		if err != nil {
			return nil, err
		}
		switch h.typ {
		case typeUp:
			if len(stack) == 0 || stack[len(stack)-1].elems != nil {
				return nil, d.errf("list end marker outside a nested list")
			}
			cur = stack[len(stack)-1].parent
			stack = stack[:len(stack)-1]
			continue
		case typeArrayNext:
			if len(stack) == 0 || stack[len(stack)-1].elems == nil {
				return nil, d.errf("array element end marker outside an array")
			}
			top := &stack[len(stack)-1]
			top.next++
			if top.next == len(top.elems) {
				cur = top.parent
				stack = stack[:len(stack)-1]
				continue
			}
			cur = top.elems[top.next]
			if cur.Flags, err = d.checkedHeader(false); err != nil {
				return nil, err
			}
			continue
		}
		if d.pairs++; d.pairs > d.lim.MaxPairs {
			return nil, d.errf("more than %d pairs", d.lim.MaxPairs)
		}
		p := Pair{Name: h.name, Type: h.typ}
		switch h.typ {
		case NVList, NVListArray:
			if len(stack) >= d.lim.MaxDepth {
				return nil, d.errf("lists nested deeper than %d", d.lim.MaxDepth)
			}
			o, err := d.openList(h, cur)
			if err != nil {
				return nil, err
			}
			if o.elems != nil {
				p.Value = o.elems
			} else {
				p.Value = o.first
			}
			if err := cur.add(p, d); err != nil {
				return nil, err
			}
			stack = append(stack, o.open)
			cur = o.first
			continue
		default:
			if p.Value, err = d.value(h); err != nil {
				return nil, err
			}
		}
		if err := cur.add(p, d); err != nil {
			return nil, err
		}
	}
	if len(stack) != 0 {
		return nil, d.errf("input ends inside %d unfinished nested lists", len(stack))
	}
	return root, nil
}

type opened struct {
	open
	first *List
}

// openList starts a nested list or an array of lists, reading the header
// of the (first) list.
func (d *decoder) openList(h pairHeader, parent *List) (opened, error) {
	o := opened{open: open{parent: parent}}
	if h.typ == NVList {
		if h.datasize == 0 {
			return o, d.errf("nested list %q with data size 0", h.name)
		}
		o.first = &List{}
	} else {
		// Every element is at least a header and an end marker, so
		// the count is bounded by what is left.
		if h.nitems == 0 || h.nitems > d.left()/(headerSize+pairSize+1) {
			return o, d.errf("list array %q of %d elements cannot fit in %d bytes", h.name, h.nitems, d.left())
		}
		o.elems = make([]*List, h.nitems)
		for i := range o.elems {
			o.elems[i] = &List{}
		}
		o.first = o.elems[0]
	}
	flags, err := d.checkedHeader(false)
	if err != nil {
		return o, err
	}
	o.first.Flags = flags
	return o, nil
}

// add appends p, refusing a second pair of one name unless the list
// allows it, as libnv does.
func (l *List) add(p Pair, d *decoder) error {
	if l.Flags&NoUnique == 0 {
		for _, q := range l.Pairs {
			if q.Name == p.Name || l.Flags&IgnoreCase != 0 && strings.EqualFold(q.Name, p.Name) {
				return d.errf("duplicate name %q", p.Name)
			}
		}
	}
	l.Pairs = append(l.Pairs, p)
	return nil
}

// value decodes the data of a pair that is not a list.
func (d *decoder) value(h pairHeader) (any, error) {
	data := d.b[d.off : d.off+int(h.datasize)]
	o := d.order()
	var v any
	switch h.typ {
	case Null:
		if h.datasize != 0 {
			return nil, d.errf("null %q with %d data bytes", h.name, h.datasize)
		}
	case Bool:
		if h.datasize != 1 || data[0] > 1 {
			return nil, d.errf("bool %q is not one byte of 0 or 1", h.name)
		}
		v = data[0] == 1
	case Number:
		if h.datasize != 8 {
			return nil, d.errf("number %q with %d data bytes", h.name, h.datasize)
		}
		v = o.Uint64(data)
	case String:
		s, err := d.cstring(h, data)
		if err != nil {
			return nil, err
		}
		v = s
	case Binary:
		if h.datasize == 0 {
			return nil, d.errf("binary %q is empty", h.name)
		}
		v = bytes.Clone(data)
	case BoolArray:
		if h.nitems == 0 || h.datasize != h.nitems {
			return nil, d.errf("bool array %q: %d items in %d bytes", h.name, h.nitems, h.datasize)
		}
		bs := make([]bool, h.nitems)
		for i, c := range data {
			if c > 1 {
				return nil, d.errf("bool array %q: item %d is %d", h.name, i, c)
			}
			bs[i] = c == 1
		}
		v = bs
	case NumberArray:
		if h.nitems == 0 || h.datasize/8 != h.nitems || h.datasize%8 != 0 {
			return nil, d.errf("number array %q: %d items in %d bytes", h.name, h.nitems, h.datasize)
		}
		ns := make([]uint64, h.nitems)
		for i := range ns {
			ns[i] = o.Uint64(data[8*i:])
		}
		v = ns
	case StringArray:
		if h.nitems == 0 || h.nitems > h.datasize {
			return nil, d.errf("string array %q: %d items in %d bytes", h.name, h.nitems, h.datasize)
		}
		parts := bytes.SplitAfter(data, []byte{0})
		// Exactly nitems NUL-terminated strings fill the data.
		if uint64(len(parts)) != h.nitems+1 || len(parts[len(parts)-1]) != 0 {
			return nil, d.errf("string array %q is not %d NUL-terminated strings", h.name, h.nitems)
		}
		ss := make([]string, h.nitems)
		for i := range ss {
			ss[i] = string(parts[i][:len(parts[i])-1])
		}
		v = ss
	case Descriptor, DescriptorArray:
		return nil, d.errf("%s %q: descriptors cannot be received here", h.typ, h.name)
	}
	d.off += int(h.datasize)
	return v, nil
}

func (d *decoder) cstring(h pairHeader, data []byte) (string, error) {
	if len(data) == 0 || bytes.IndexByte(data, 0) != len(data)-1 {
		return "", d.errf("string %q is not one NUL-terminated string", h.name)
	}
	return string(data[:len(data)-1]), nil
}
