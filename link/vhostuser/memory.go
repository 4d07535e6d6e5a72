package vhostuser

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Bounds on the guest memory one connection may map.
const (
	// maxMemSlots is what GET_MAX_MEM_SLOTS answers: the most regions a
	// table may hold through ADD_MEM_REG.
	maxMemSlots = 32
	// maxMapped bounds the address space one VM's regions take in
	// slipway's process (a memfd can be made sparse and huge).
	maxMapped = 1 << 40
)

// memRegion is one region of guest memory, mapped.
type memRegion struct {
	region
	mapping []byte // the whole mapping, from offset 0 of the file
	data    []byte // the region's bytes: mapping[MmapOffset:][:Size]
	// adds counts the ADD_MEM_REGs that named this very region beyond
	// the first: QEMU sends one per queue pair's vhost device (and a
	// REM_MEM_REG from each). Only the message loop touches it.
	adds int
}

// memory is a memory table. It is never changed once built: a new table
// replaces it whole (see Link.setMemory), so the data path reads it
// without locks of its own.
type memory struct {
	regions []*memRegion // by GuestAddr
}

// guest returns the n bytes at guest-physical address addr, if they lie
// within one region.
func (m *memory) guest(addr, n uint64) ([]byte, bool) {
	if m == nil {
		return nil, false
	}
	// A VM has a region or two (RAM below and above the PCI hole):
	// a scan beats any index.
	for _, r := range m.regions {
		if b, ok := r.guest(addr, n); ok {
			return b, true
		}
	}
	return nil, false
}

func (r *memRegion) guest(addr, n uint64) ([]byte, bool) {
	if addr < r.GuestAddr || n > r.Size || addr-r.GuestAddr > r.Size-n {
		return nil, false
	}
	off := addr - r.GuestAddr
	return r.data[off : off+n : off+n], true
}

// user returns the n bytes at the front-end's virtual address addr (how
// ring addresses are given), if they lie within one region.
func (m *memory) user(addr, n uint64) ([]byte, bool) {
	if m == nil {
		return nil, false
	}
	for _, r := range m.regions {
		if addr < r.UserAddr || n > r.Size || addr-r.UserAddr > r.Size-n {
			continue
		}
		off := addr - r.UserAddr
		return r.data[off : off+n : off+n], true
	}
	return nil, false
}

// checkRegion refuses a region whose numbers cannot describe memory.
func checkRegion(r region) error {
	switch {
	case r.Size == 0:
		return fmt.Errorf("%w: empty region at %#x", ErrBadMemory, r.GuestAddr)
	case r.GuestAddr > math.MaxUint64-r.Size, r.UserAddr > math.MaxUint64-r.Size:
		return fmt.Errorf("%w: region at %#x+%#x wraps the address space", ErrBadMemory, r.GuestAddr, r.Size)
	case r.MmapOffset > math.MaxInt-r.Size, r.Size > maxMapped:
		return fmt.Errorf("%w: region of %#x bytes at offset %#x too large to map", ErrBadMemory, r.Size, r.MmapOffset)
	}
	return nil
}

// overlaps reports whether a and b share guest-physical or user addresses.
func overlaps(a, b region) bool {
	within := func(x, xn, y, yn uint64) bool { return x < y+yn && y < x+xn }
	return within(a.GuestAddr, a.Size, b.GuestAddr, b.Size) || within(a.UserAddr, a.Size, b.UserAddr, b.Size)
}

// mapRegion maps r from fd, which it does not close. The file must hold
// the whole region: touching a page past its end would be a SIGBUS.
func mapRegion(r region, fd int) (*memRegion, error) {
	if err := checkRegion(r); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("%w: fstat: %w", ErrBadMemory, err)
	}
	length := r.MmapOffset + r.Size
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size < 0 || uint64(st.Size) < length {
		return nil, fmt.Errorf("%w: file of %d bytes (mode %#o) cannot hold %#x bytes at offset %#x",
			ErrBadMemory, st.Size, st.Mode, r.Size, r.MmapOffset)
	}
	b, err := unix.Mmap(fd, 0, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%w: mmap %#x bytes: %w", ErrBadMemory, length, err)
	}
	return &memRegion{region: r, mapping: b, data: b[r.MmapOffset:length:length]}, nil
}

func (r *memRegion) unmap() {
	if r.mapping != nil {
		unix.Munmap(r.mapping)
		r.mapping, r.data = nil, nil
	}
}

// with returns a table of m's regions plus add (checked against them).
func (m *memory) with(add *memRegion) (*memory, error) {
	var old []*memRegion
	if m != nil {
		old = m.regions
	}
	if len(old) >= maxMemSlots {
		return nil, fmt.Errorf("%w: more than %d regions", ErrBadMemory, maxMemSlots)
	}
	var mapped uint64
	for _, r := range old {
		if overlaps(r.region, add.region) {
			return nil, fmt.Errorf("%w: region %#x+%#x overlaps %#x+%#x", ErrBadMemory,
				add.GuestAddr, add.Size, r.GuestAddr, r.Size)
		}
		mapped += r.Size
	}
	if mapped+add.Size > maxMapped {
		return nil, fmt.Errorf("%w: more than %d bytes of guest memory", ErrBadMemory, uint64(maxMapped))
	}
	regions := append(slices.Clone(old), add)
	slices.SortFunc(regions, func(a, b *memRegion) int { return cmp.Compare(a.GuestAddr, b.GuestAddr) })
	return &memory{regions: regions}, nil
}

// index is the position of m's region that is r (by guest address, user
// address and size, as REM_MEM_REG identifies it), or -1.
func (m *memory) index(r region) int {
	if m == nil {
		return -1
	}
	return slices.IndexFunc(m.regions, func(x *memRegion) bool {
		return x.GuestAddr == r.GuestAddr && x.UserAddr == r.UserAddr && x.Size == r.Size
	})
}

// find returns m's region that is r, if there is one.
func (m *memory) find(r region) *memRegion {
	if i := m.index(r); i >= 0 {
		return m.regions[i]
	}
	return nil
}

// without returns a table of m's regions but the one that is r.
func (m *memory) without(r region) (*memory, error) {
	i := m.index(r)
	if i < 0 {
		return nil, fmt.Errorf("%w: no region %#x+%#x to remove", ErrBadMemory, r.GuestAddr, r.Size)
	}
	return &memory{regions: slices.Delete(slices.Clone(m.regions), i, i+1)}, nil
}

// buildTable maps a whole SET_MEM_TABLE. On error nothing stays mapped.
func buildTable(regions []region, fds []int) (*memory, error) {
	var m *memory
	for i, r := range regions {
		mr, err := mapRegion(r, fds[i])
		if err == nil {
			var next *memory
			if next, err = m.with(mr); err == nil {
				m = next
				continue
			}
			mr.unmap()
		}
		m.unmapAll()
		return nil, err
	}
	return m, nil
}

func (m *memory) unmapAll() {
	if m == nil {
		return
	}
	for _, r := range m.regions {
		r.unmap()
	}
}

// contains reports whether r is one of m's regions.
func (m *memory) contains(r *memRegion) bool {
	return m != nil && slices.Contains(m.regions, r)
}

// holds reports whether addr lies in one of m's mappings.
func (m *memory) holds(addr uintptr) bool {
	if m == nil {
		return false
	}
	for _, r := range m.regions {
		if len(r.mapping) > 0 {
			start := uintptr(unsafe.Pointer(&r.mapping[0]))
			if addr >= start && addr-start < uintptr(len(r.mapping)) {
				return true
			}
		}
	}
	return false
}
