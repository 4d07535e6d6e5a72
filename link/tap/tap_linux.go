// Package tap is a link over a Linux TAP device, used to put a network
// namespace on slipway's network. With a virtio-net header on the device
// the kernel hands over frames with partial checksums and TCP super-frames
// and takes them back the same way, so neither side computes checksums or
// segments on the namespace path.
package tap

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/link"
)

// TUN/TAP offload flags (linux/if_tun.h).
const (
	tunFCsum = 0x01
	tunFTSO4 = 0x02
	tunFTSO6 = 0x04
)

// batchSize is how many frames one Read drains from the device before
// handing them on.
const batchSize = 32

// MaxQueues is the most queues a TAP device has (the kernel's limit).
const MaxQueues = 256

// Link is a TAP device: one descriptor per queue. With more than one
// queue (IFF_MULTI_QUEUE) it is a link.MultiQueue: the kernel hands each
// queue the frames of the flows it steers there, which is the queue slipway
// last wrote that flow's frames to (the tun driver remembers a flow's queue
// from the writes), so Write picks a flow's queue by its hash and a flow's
// frames come back on one queue, read by one goroutine.
type Link struct {
	qs       []*os.File
	name     string
	vnetHdr  bool
	counters link.Counters
}

// Create makes a TAP device called name in the calling thread's network
// namespace. With vnetHdr the device carries virtio-net headers and
// checksum/TSO offloads are enabled.
func Create(name string, vnetHdr bool) (*Link, error) {
	return CreateQueues(name, vnetHdr, 1)
}

// CreateQueues is Create with up to queues queues (1 to MaxQueues): more
// than one makes a multi-queue device, one descriptor per queue. A device
// of that name made beforehand without multi-queue (rootlesskit makes
// tap0 with `ip tuntap add` before it starts slirp4netns) refuses a
// multi-queue attach; it gets its one queue, as a single-queue open
// would.
func CreateQueues(name string, vnetHdr bool, queues int) (*Link, error) {
	if queues < 1 || queues > MaxQueues {
		return nil, fmt.Errorf("tap: %d queues: want 1 to %d", queues, MaxQueues)
	}
	first, err := openQueue(name, vnetHdr, queues > 1)
	if errors.Is(err, unix.EINVAL) && queues > 1 {
		queues = 1
		first, err = openQueue(name, vnetHdr, false)
	}
	if err != nil {
		return nil, err
	}
	fds := []int{first}
	for len(fds) < queues {
		fd, err := openQueue(name, vnetHdr, true)
		if err != nil {
			closeAll(fds)
			return nil, err
		}
		fds = append(fds, fd)
	}
	l, err := FromFDs(fds, name, vnetHdr)
	if err != nil {
		closeAll(fds)
	}
	return l, err
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// Attach opens the existing TAP device name (a persistent one, made by
// `ip tuntap add mode tap name NAME user U`) in the calling thread's
// network namespace. Unlike Create it never makes a device: TUNSETIFF
// would create a missing one for a caller with CAP_NET_ADMIN, so the
// device is looked up first. The flags given here replace the ones the
// device was made with, so vnetHdr is this caller's choice.
func Attach(name string, vnetHdr bool) (*Link, error) {
	// Names the kernel would refuse anyway, refused here with a line that
	// says why rather than an ioctl's EINVAL.
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/ \x00") || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap: interface name %q: want 1..%d characters, no '/' or space", name, unix.IFNAMSIZ-1)
	}
	// The lookup is by ioctl, in this thread's network namespace:
	// /sys/class/net shows the namespace sysfs was mounted in.
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tap: socket: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		err = unix.IoctlIfreq(sock, unix.SIOCGIFINDEX, ifr)
	}
	unix.Close(sock)
	if errors.Is(err, unix.ENODEV) {
		return nil, fmt.Errorf("tap: no device %s", name)
	}
	if err != nil {
		return nil, fmt.Errorf("tap: %s: %w", name, err)
	}
	fd, err := openQueue(name, vnetHdr, false)
	var l *Link
	if err == nil {
		if l, err = FromFD(fd, name, vnetHdr); err != nil {
			unix.Close(fd)
		}
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBUSY) {
		return nil, fmt.Errorf("%w (not a TAP device, a multi-queue one, or in use)", err)
	}
	if err != nil {
		return nil, err
	}
	// TUNSETIFF attaches to an existing TUN device too: the type is the
	// device's, not the request's.
	got, err := unix.NewIfreq(name)
	if err == nil {
		err = l.control(func(fd int) error { return unix.IoctlIfreq(fd, unix.TUNGETIFF, got) })
	}
	if err == nil && got.Uint16()&unix.IFF_TAP == 0 {
		err = errors.New("a TUN device, not a TAP")
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("tap: %s: %w", name, err)
	}
	return l, nil
}

// openQueue opens one queue of the TAP device name (creating the device
// with its first queue).
func openQueue(name string, vnetHdr, multi bool) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("tap: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tap: interface name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tap: TUNSETIFF %s: %w", name, err)
	}
	if vnetHdr {
		if err := setupVnetHdr(fd); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

func setupVnetHdr(fd int) error {
	size := int32(link.VnetHdrLen)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETVNETHDRSZ, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return fmt.Errorf("tap: TUNSETVNETHDRSZ: %w", errno)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCsum|tunFTSO4|tunFTSO6); err != nil {
		return fmt.Errorf("tap: TUNSETOFFLOAD: %w", err)
	}
	return nil
}

// FromFD adopts an open TAP fd (for example one created in another
// namespace and passed over a socket).
func FromFD(fd int, name string, vnetHdr bool) (*Link, error) {
	return FromFDs([]int{fd}, name, vnetHdr)
}

// FromFDs adopts the open fds of a TAP device's queues, one or more (all
// of one device, each opened with IFF_MULTI_QUEUE when there are several).
// The link owns them once it is made; on an error they are still the
// caller's.
func FromFDs(fds []int, name string, vnetHdr bool) (*Link, error) {
	if len(fds) < 1 || len(fds) > MaxQueues {
		return nil, fmt.Errorf("tap: %d queue descriptors: want 1 to %d", len(fds), MaxQueues)
	}
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, true); err != nil {
			return nil, fmt.Errorf("tap: set non-blocking: %w", err)
		}
	}
	l := &Link{name: name, vnetHdr: vnetHdr}
	for _, fd := range fds {
		l.qs = append(l.qs, os.NewFile(uintptr(fd), "tap:"+name))
	}
	return l, nil
}

// control runs fn on the descriptor of the device's first queue
// (File.Fd would make it blocking).
func (l *Link) control(fn func(fd int) error) error {
	rc, err := l.qs[0].SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Read is ReadQueue of the first queue.
func (l *Link) Read(bufs [][]byte, sizes []int) (int, error) { return l.ReadQueue(0, bufs, sizes) }

// Queues is how many queues the device has.
func (l *Link) Queues() int { return len(l.qs) }

// ReadQueue drains up to len(bufs) frames from queue i; it waits (in the
// Go poller) only for the first. Each queue has one reader.
func (l *Link) ReadQueue(i int, bufs [][]byte, sizes []int) (int, error) {
	rc, err := l.qs[i].SyscallConn()
	if err != nil {
		return 0, err
	}
	n := 0
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for n < len(bufs) {
			buf := bufs[n]
			var m int
			var e error
			if l.vnetHdr {
				m, e = unix.Read(int(fd), buf)
				m -= link.VnetHdrLen
			} else {
				m, e = unix.Read(int(fd), buf[link.VnetHdrLen:])
				link.ClearVnetHdr(buf)
			}
			if e == unix.EINTR {
				continue
			}
			if e == unix.EAGAIN {
				return n > 0 // wait for readiness only if nothing was read
			}
			if e != nil {
				rerr = fmt.Errorf("tap: read: %w", e)
				return true
			}
			if m < 0 {
				continue // shorter than a virtio-net header: nothing to pass on
			}
			sizes[n] = m
			n++
		}
		return true
	})
	if err != nil {
		return n, fmt.Errorf("tap: read: %w", err)
	}
	return n, rerr
}

// maxPieces is how many pieces of a frame one writev takes here; the
// stack's packets have a handful. A frame in more is copied together
// first (slower, but never dropped).
const maxPieces = 32

var coalesced = sync.Pool{New: func() any { b := make([]byte, link.BufSize); return &b }}

// Write sends frames from their pieces, one writev(2) each; the device
// takes them whole and never blocks, and concurrent writers need no lock.
// On a multi-queue device each frame goes to its flow's queue, in runs.
func (l *Link) Write(frames []link.Frame) (int, error) {
	if len(l.qs) == 1 {
		return l.writeQueue(l.qs[0], frames)
	}
	n := 0
	for len(frames) > 0 {
		q := l.steer(&frames[0])
		run := 1
		for run < len(frames) && l.steer(&frames[run]) == q {
			run++
		}
		sent, err := l.writeQueue(l.qs[q], frames[:run])
		n += sent
		if err != nil {
			return n, err
		}
		frames = frames[run:]
	}
	return n, nil
}

func (l *Link) steer(f *link.Frame) int { return int(f.FlowHash() % uint32(len(l.qs))) }

// writeQueue writes frames to one queue's descriptor.
func (l *Link) writeQueue(q *os.File, frames []link.Frame) (int, error) {
	rc, err := q.SyscallConn()
	if err != nil {
		return 0, err
	}
	n := 0
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		var iov [1 + maxPieces][]byte
		for n < len(frames) {
			f := &frames[n]
			k := 0
			if l.vnetHdr {
				iov[0] = f.Hdr
				k = 1
			}
			var bp *[]byte
			if len(f.Segs) > maxPieces {
				bp = coalesced.Get().(*[]byte)
				m := f.CopyTo(*bp)
				iov[k] = (*bp)[link.VnetHdrLen:m]
				k++
			} else {
				k += copy(iov[k:], f.Segs)
			}
			_, e := unix.Writev(int(fd), iov[:k])
			if bp != nil {
				coalesced.Put(bp)
			}
			if e == unix.EINTR {
				continue
			}
			if e == unix.EAGAIN {
				return false
			}
			if errors.Is(e, unix.EINVAL) {
				// The kernel refused this one frame: count it, go on.
				l.counters.TxRefused.Add(1)
			} else if e != nil {
				werr = fmt.Errorf("tap: writev: %w", e)
				return true
			}
			n++
		}
		return true
	})
	if err != nil {
		return n, fmt.Errorf("tap: writev: %w", err)
	}
	return n, werr
}

// BatchSize is how many frames a Read may return.
func (l *Link) BatchSize() int { return batchSize }

// Offloads reports whether the device carries virtio-net headers.
func (l *Link) Offloads() bool { return l.vnetHdr }

// Close closes the device's fds; the interface disappears with them.
func (l *Link) Close() error {
	var errs []error
	for _, q := range l.qs {
		errs = append(errs, q.Close())
	}
	return errors.Join(errs...)
}

func (l *Link) String() string { return "tap:" + l.name }

// File is the file of the device's first queue; the link still owns it.
func (l *Link) File() *os.File { return l.qs[0] }

// Files are the files of the device's queues, in order; the link still
// owns them.
func (l *Link) Files() []*os.File { return l.qs }

// Name is the interface name.
func (l *Link) Name() string { return l.name }

// Counters are the link's own counters.
func (l *Link) Counters() *link.Counters { return &l.counters }

var _ link.MultiQueue = (*Link)(nil)
