package vhostuser

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Dirty-page logging for live migration (LOG_SHMFD, VHOST_F_LOG_ALL).
// While the VMM copies a running guest's memory to the destination it
// must learn of every page slipway writes behind its back: receive
// buffers and used rings. It hands over a bitmap in shared memory (one
// bit per 4 KiB page of guest-physical memory, bit p%8 of byte p/8) with
// SET_LOG_BASE and turns logging on by acknowledging LOG_ALL; slipway
// sets the bits of each page right after writing it, before the used
// index that hands the data to the guest is published, so a page QEMU
// finds clean was not written since it last looked.

const (
	logPageShift = 12
	// maxLogSize bounds the bitmap's mapping: enough for maxMapped
	// bytes of guest memory plus the holes between regions.
	maxLogSize = 2 * maxMapped >> logPageShift / 8
)

// dirtyLog is the front-end's bitmap, mapped. It is set and replaced
// under every queue's mutex, like the memory table.
type dirtyLog struct {
	mapping []byte
}

// mapLog maps the bitmap SET_LOG_BASE gave: size bytes at offset of fd,
// which it does not close.
func mapLog(fd int, size, offset uint64) (*dirtyLog, error) {
	if size == 0 || size > maxLogSize || offset%uint64(unix.Getpagesize()) != 0 || offset > maxLogSize {
		return nil, fmt.Errorf("%w: log of %#x bytes at offset %#x", ErrBadMemory, size, offset)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("%w: log fstat: %w", ErrBadMemory, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size < 0 || uint64(st.Size) < offset+size {
		return nil, fmt.Errorf("%w: log file of %d bytes cannot hold %#x bytes at offset %#x",
			ErrBadMemory, st.Size, size, offset)
	}
	b, err := unix.Mmap(fd, int64(offset), int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%w: log mmap: %w", ErrBadMemory, err)
	}
	return &dirtyLog{mapping: b}, nil
}

func (d *dirtyLog) unmap() {
	if d != nil && d.mapping != nil {
		unix.Munmap(d.mapping)
		d.mapping = nil
	}
}

// mark sets the bits of the pages n bytes at guest-physical addr touch.
// Pages past the bitmap's end are not logged (the front-end sized it for
// its memory; the address was checked against the memory table).
func (d *dirtyLog) mark(addr, n uint64) {
	if d == nil || n == 0 {
		return
	}
	first, last := addr>>logPageShift, (addr+n-1)>>logPageShift
	for p := first; p <= last; p++ {
		word := p / 32 * 4
		if word+4 > uint64(len(d.mapping)) {
			return
		}
		// The VMM clears bits concurrently: an atomic OR on the
		// little-endian word holding the page's byte (amd64 and
		// arm64 are little-endian, so bit p%32 of the word is bit
		// p%8 of byte p/8).
		atomic.OrUint32((*uint32)(unsafe.Pointer(&d.mapping[word])), 1<<(p%32))
	}
}

// holds reports whether addr lies in the log's mapping (a front-end that
// shrinks the file under it faults the data path there).
func (d *dirtyLog) holds(addr uintptr) bool {
	if d == nil || len(d.mapping) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(&d.mapping[0]))
	return addr >= start && addr-start < uintptr(len(d.mapping))
}
