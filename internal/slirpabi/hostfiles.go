package slirpabi

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipway-net/slipway/services/dns"
)

// The host files the sandboxed server reads, which it cannot open: it
// asks the shim on the data socket ('o' u32 id, u8 kind, name), the shim
// opens the file in the host and answers ('O' u32 id, i32 result) with the
// descriptor attached (libslirp/shim/proc.h). Kinds: the host's
// resolv.conf, and a file of the TFTP directory (the shim resolves the
// name beneath the directory the host's settings name).
const (
	openResolvConf = 'r'
	openTFTP       = 't'
)

// Bounds on what the server asks of the shim: requests waiting at once
// (TFTP transfers are 16 at most), how long one may wait (the shim
// answers from the host's main loop), a TFTP name and a resolv.conf.
const (
	maxOpens       = 32
	openTimeout    = 5 * time.Second
	maxTFTPName    = 1024
	maxResolvConf  = 64 << 10
	openReplyBytes = 1 + 4 + 4
)

type openResult struct {
	f   *os.File
	err error
}

// hostFiles is the server's side of those requests.
type hostFiles struct {
	data net.Conn
	mu   sync.Mutex
	next uint32
	wait map[uint32]chan openResult
}

func newHostFiles(data net.Conn) *hostFiles {
	return &hostFiles{data: data, wait: map[uint32]chan openResult{}}
}

func (h *hostFiles) open(kind byte, name string) (*os.File, error) {
	ch := make(chan openResult, 1)
	h.mu.Lock()
	if len(h.wait) >= maxOpens {
		h.mu.Unlock()
		return nil, fmt.Errorf("%d host files asked for already: %w", maxOpens, syscall.EAGAIN)
	}
	h.next++
	id := h.next
	h.wait[id] = ch
	h.mu.Unlock()
	msg := binary.NativeEndian.AppendUint32([]byte{'o'}, id)
	msg = append(append(msg, kind), name...)
	_, err := h.data.Write(msg)
	if err == nil {
		t := time.NewTimer(openTimeout)
		defer t.Stop()
		select {
		case r := <-ch:
			return r.f, r.err
		case <-t.C:
			err = fmt.Errorf("the host did not answer within %v: %w", openTimeout, syscall.ETIMEDOUT)
		}
	}
	h.mu.Lock()
	delete(h.wait, id)
	h.mu.Unlock()
	return nil, err
}

// deliver hands the shim's answer m ('O' ...) with the descriptors that
// came with it to the request waiting for it; a stray one is closed.
func (h *hostFiles) deliver(m []byte, fds []int) {
	if len(m) < openReplyBytes {
		closeFDs(fds)
		return
	}
	id := binary.NativeEndian.Uint32(m[1:])
	res := int32(binary.NativeEndian.Uint32(m[5:]))
	h.mu.Lock()
	ch, ok := h.wait[id]
	delete(h.wait, id)
	h.mu.Unlock()
	var r openResult
	switch {
	case res < 0:
		r.err = syscall.Errno(-res)
		closeFDs(fds)
	case len(fds) != 1:
		r.err = fmt.Errorf("the host answered with %d descriptors: %w", len(fds), syscall.EIO)
		closeFDs(fds)
	default:
		r.f = os.NewFile(uintptr(fds[0]), "host file")
	}
	if !ok {
		if r.f != nil {
			r.f.Close()
		}
		return
	}
	ch <- r
}

// OpenTFTP opens a file of the TFTP directory through the shim.
func (h *hostFiles) OpenTFTP(name string) (*os.File, error) {
	if len(name) > maxTFTPName || strings.IndexByte(name, 0) >= 0 {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EINVAL}
	}
	f, err := h.open(openTFTP, name)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return f, nil
}

// ReadResolvers reads the host's resolv.conf nameservers through the
// shim, each time the network looks whether they changed.
func (h *hostFiles) ReadResolvers() ([]netip.AddrPort, error) {
	f, err := h.open(openResolvConf, "")
	if err != nil {
		return nil, fmt.Errorf("the host's resolv.conf: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxResolvConf))
	if err != nil {
		return nil, fmt.Errorf("the host's resolv.conf: %w", err)
	}
	servers, _, _ := dns.ParseResolvConf(b)
	return servers, nil
}

// rightsIn are the descriptors an SCM_RIGHTS message in oob carries.
func rightsIn(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if f, err := syscall.ParseUnixRights(&m); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}
