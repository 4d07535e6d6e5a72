// Command core is slipway's libslirp core, built with
// -buildmode=c-shared into libslipway-slirp.so, which libslirp.so.0 (the C
// shim in ../shim) loads on the first slirp_new. It only converts between
// C and Go: each exported function takes the shim's plain C values and
// calls internal/slirpabi, which holds the logic.
//
// The handle table below is the one piece of process-wide state: C holds
// small integers, never Go pointers.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../shim
#include <stdlib.h>
#include "core.h"
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"unsafe"

	"github.com/slipway-net/slipway/internal/slirpabi"
	"golang.org/x/sys/unix"
)

// maxInstances bounds the handle table: a host with more slirp instances
// than this gets NULL from slirp_new.
const maxInstances = 64

// maxProcs bounds the Go runtime's threads running Go code at once, so a
// VMM's own threads keep the CPUs; SLIPWAY_GOMAXPROCS overrides it.
const maxProcs = 4

// entry is one live instance and what the shim's calls reuse.
type entry struct {
	inst *slirpabi.Instance
	note *notifier

	// bufs views the shim's frame slots; rebuilt when the shim's buffer
	// moves (it does not, but nothing here relies on it).
	slots unsafe.Pointer
	bufs  [][]byte
	sizes [C.SLIPWAY_SLOTS]int
}

// table maps handles to instances.
type table struct {
	mu      sync.Mutex
	next    int32
	entries map[int32]*entry
}

var handles = table{entries: map[int32]*entry{}}

func (t *table) add(e *entry) (int32, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.entries) >= maxInstances {
		return 0, fmt.Errorf("more than %d slirp instances in one process", maxInstances)
	}
	for {
		t.next++
		if t.next <= 0 {
			t.next = 1
		}
		if t.entries[t.next] == nil {
			t.entries[t.next] = e
			return t.next, nil
		}
	}
}

func (t *table) get(h C.int) *entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.entries[int32(h)]
}

func (t *table) remove(h C.int) *entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[int32(h)]
	delete(t.entries, int32(h))
	return e
}

var setProcs sync.Once

func boundProcs() {
	setProcs.Do(func() {
		n := min(runtime.NumCPU(), maxProcs)
		if v, err := strconv.Atoi(os.Getenv("SLIPWAY_GOMAXPROCS")); err == nil && v > 0 {
			n = v
		}
		runtime.GOMAXPROCS(n)
	})
}

// notifier writes to the shim's eventfd when frames start waiting, until
// it is stopped: after stop returns, the descriptor is never written again
// (the shim closes it then).
type notifier struct {
	mu      sync.RWMutex
	fd      int
	stopped bool
}

func (n *notifier) notify() {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.stopped {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	// EAGAIN means the counter is full: the host is woken anyway.
	_, _ = unix.Write(n.fd, one[:])
}

func (n *notifier) stop() {
	n.mu.Lock()
	n.stopped = true
	n.mu.Unlock()
}

//export slipway_core_abi
func slipway_core_abi() C.int { return C.SLIPWAY_CORE_ABI }

//export slipway_core_new
func slipway_core_new(c *C.struct_slipway_cfg, errbuf *C.char, errlen C.int) C.int {
	boundProcs()
	fail := func(err error) C.int {
		msg := err.Error()
		if errlen > 0 {
			b := unsafe.Slice((*byte)(unsafe.Pointer(errbuf)), int(errlen))
			n := copy(b[:len(b)-1], msg)
			b[n] = 0
		}
		return -1
	}
	base, err := slirpabi.BaseConfig(os.Getenv)
	if err != nil {
		return fail(err)
	}
	log, err := slirpabi.Logger(base.LogLevel)
	if err != nil {
		return fail(err)
	}
	base.LogLevel = "" // the config's own default; the logger is made
	n := &notifier{fd: int(c.notify_fd)}
	inst, err := slirpabi.New(settings(c), base, n.notify, log)
	if err != nil {
		return fail(err)
	}
	h, err := handles.add(&entry{inst: inst, note: n})
	if err != nil {
		n.stop()
		inst.Close()
		return fail(err)
	}
	return C.int(h)
}

//export slipway_core_input
func slipway_core_input(h C.int, pkt *C.uint8_t, n C.int) {
	e := handles.get(h)
	if e == nil || pkt == nil || n <= 0 {
		return
	}
	e.inst.Input(unsafe.Slice((*byte)(unsafe.Pointer(pkt)), int(n)))
}

//export slipway_core_take
func slipway_core_take(h C.int, buf *C.uint8_t, sizes *C.int) C.int {
	e := handles.get(h)
	if e == nil || buf == nil || sizes == nil {
		return 0
	}
	if e.slots != unsafe.Pointer(buf) {
		all := unsafe.Slice((*byte)(unsafe.Pointer(buf)), C.SLIPWAY_SLOTS*C.SLIPWAY_SLOT_SIZE)
		e.bufs = make([][]byte, C.SLIPWAY_SLOTS)
		for i := range e.bufs {
			e.bufs[i] = all[i*C.SLIPWAY_SLOT_SIZE : (i+1)*C.SLIPWAY_SLOT_SIZE : (i+1)*C.SLIPWAY_SLOT_SIZE]
		}
		e.slots = unsafe.Pointer(buf)
	}
	n := e.inst.Take(e.bufs, e.sizes[:])
	out := unsafe.Slice((*C.int)(unsafe.Pointer(sizes)), C.SLIPWAY_SLOTS)
	for i := range n {
		out[i] = C.int(e.sizes[i])
	}
	return C.int(n)
}

//export slipway_core_cleanup
func slipway_core_cleanup(h C.int) {
	e := handles.remove(h)
	if e == nil {
		return
	}
	e.note.stop()
	e.inst.Close()
}

//export slipway_core_hostfwd
func slipway_core_hostfwd(h C.int, add C.int, flags C.int, haddr unsafe.Pointer, hlen C.int, gaddr unsafe.Pointer, glen C.int) C.int {
	e := handles.get(h)
	if e == nil || haddr == nil || hlen <= 0 {
		return -C.int(unix.EINVAL)
	}
	host := C.GoBytes(haddr, hlen)
	var err error
	if add != 0 {
		if gaddr == nil || glen <= 0 {
			return -C.int(unix.EINVAL)
		}
		err = e.inst.AddForward(int(flags), host, C.GoBytes(gaddr, glen))
	} else {
		err = e.inst.RemoveForward(int(flags), host)
	}
	if err != nil {
		e.inst.Logger().Warn("host forward", "err", err)
		return -C.int(slirpabi.Errno(err))
	}
	return 0
}

//export slipway_core_connection_info
func slipway_core_connection_info(h C.int) *C.char {
	e := handles.get(h)
	if e == nil {
		return nil
	}
	return C.CString(e.inst.ConnectionInfo())
}

//export slipway_core_neighbor_info
func slipway_core_neighbor_info(h C.int) *C.char {
	e := handles.get(h)
	if e == nil {
		return nil
	}
	return C.CString(e.inst.NeighborInfo())
}

//export slipway_core_state_save
func slipway_core_state_save(h C.int, cb C.slipway_write_cb, opaque unsafe.Pointer) C.int {
	e := handles.get(h)
	if e == nil || cb == nil {
		return -C.int(unix.EINVAL)
	}
	if err := e.inst.SaveState(&hostWriter{cb: cb, opaque: opaque}); err != nil {
		e.inst.Logger().Error("slirp_state_save", "err", err)
		return -C.int(unix.EIO)
	}
	return 0
}

//export slipway_core_state_load
func slipway_core_state_load(h C.int, version C.int, cb C.slipway_read_cb, opaque unsafe.Pointer) C.int {
	e := handles.get(h)
	if e == nil || cb == nil {
		return -C.int(unix.EINVAL)
	}
	if err := e.inst.LoadState(int(version), &hostReader{cb: cb, opaque: opaque}); err != nil {
		e.inst.Logger().Error("slirp_state_load", "err", err)
		return C.int(slirpabi.StateErrno(err))
	}
	return 0
}

// gfwdAddr is a guest forward's address as the shim passes it.
func gfwdAddr(addr *C.uint8_t, port C.int) (netip.AddrPort, bool) {
	if addr == nil || port <= 0 || port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(netip.AddrFrom4(*(*[4]byte)(unsafe.Pointer(addr))), uint16(port)), true
}

//export slipway_core_gfwd_add
func slipway_core_gfwd_add(h C.int, addr *C.uint8_t, port C.int) C.int {
	e := handles.get(h)
	a, ok := gfwdAddr(addr, port)
	if e == nil || !ok {
		return -C.int(unix.EINVAL)
	}
	id, err := e.inst.AddGuestForward(a)
	if err != nil {
		e.inst.Logger().Warn("guest forward", "err", err)
		return -C.int(slirpabi.Errno(err))
	}
	return C.int(id)
}

//export slipway_core_gfwd_remove
func slipway_core_gfwd_remove(h C.int, addr *C.uint8_t, port C.int) C.int {
	e := handles.get(h)
	a, ok := gfwdAddr(addr, port)
	if e == nil || !ok {
		return -C.int(unix.EINVAL)
	}
	if err := e.inst.RemoveGuestForward(a); err != nil {
		return -C.int(slirpabi.Errno(err))
	}
	return 0
}

//export slipway_core_gfwd_take
func slipway_core_gfwd_take(h C.int, buf *C.uint8_t, n C.int, id *C.int) C.int {
	e := handles.get(h)
	if e == nil || buf == nil || n <= 0 || id == nil {
		return 0
	}
	fid, got := e.inst.TakeGuestForward(unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n)))
	*id = C.int(fid)
	return C.int(got)
}

//export slipway_core_gfwd_room
func slipway_core_gfwd_room(h C.int, addr *C.uint8_t, port C.int) C.int {
	e := handles.get(h)
	a, ok := gfwdAddr(addr, port)
	if e == nil || !ok {
		return 0
	}
	return C.int(e.inst.GuestForwardRoom(a))
}

//export slipway_core_gfwd_input
func slipway_core_gfwd_input(h C.int, addr *C.uint8_t, port C.int, buf *C.uint8_t, n C.int) {
	e := handles.get(h)
	a, ok := gfwdAddr(addr, port)
	if e == nil || !ok || buf == nil || n <= 0 {
		return
	}
	e.inst.GuestForwardInput(a, unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n)))
}

func main() {}
