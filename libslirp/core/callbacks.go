package main

/*
#include "core.h"

// The host's state stream callbacks, called from Go only inside the
// host's own slirp_state_save/slirp_state_load call, on its thread.
static ssize_t call_write(slipway_write_cb cb, const void *buf, size_t len, void *opaque)
{
    return cb(buf, len, opaque);
}

static ssize_t call_read(slipway_read_cb cb, void *buf, size_t len, void *opaque)
{
    return cb(buf, len, opaque);
}
*/
import "C"

import (
	"errors"
	"io"
	"unsafe"
)

var errHostIO = errors.New("the host's state callback failed")

// hostWriter is the host's write_cb as an io.Writer.
type hostWriter struct {
	cb     C.slipway_write_cb
	opaque unsafe.Pointer
}

func (w *hostWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := C.call_write(w.cb, unsafe.Pointer(&p[0]), C.size_t(len(p)), w.opaque)
	if n < 0 || int(n) != len(p) {
		return max(int(n), 0), errHostIO
	}
	return len(p), nil
}

// hostReader is the host's read_cb as an io.Reader. A host returns less
// than asked only at the end of its stream (QEMU's qemu_get_buffer).
type hostReader struct {
	cb     C.slipway_read_cb
	opaque unsafe.Pointer
}

func (r *hostReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := C.call_read(r.cb, unsafe.Pointer(&p[0]), C.size_t(len(p)), r.opaque)
	switch {
	case n < 0:
		return 0, errHostIO
	case n == 0:
		return 0, io.EOF
	}
	return int(n), nil
}
