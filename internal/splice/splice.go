// Package splice joins two connections into one path: what a forwarder
// does once it holds both ends (gvproxy's forwards and tunnels, pasta's
// -T, the published ports pasta's --host-lo-to-ns-lo carries).
package splice

import (
	"context"
	"io"
	"net"
)

// Conns copies a and b into each other until both directions end, and
// closes both. The end of one direction is passed on as a half-close
// where the connection has one (TCP, unix), else by closing it; ctx
// ending closes both at once.
func Conns(ctx context.Context, a, b net.Conn) { Counted(ctx, a, b, nil, nil) }

// Counted is Conns that reports the bytes copied each way as they go:
// aToB(n) for n bytes written from a to b, bToA(n) for the other way,
// after each write; nil reports nothing. A direction that reports copies
// through a buffer, not with splice(2), which tells nothing until it is
// done.
func Counted(ctx context.Context, a, b net.Conn, aToB, bToA func(n int64)) {
	defer a.Close()
	defer b.Close()
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	half := func(dst, src net.Conn, report func(int64)) {
		copyCounted(dst, src, report)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go half(b, a, aToB)
	go half(a, b, bToA)
	<-done
	<-done
}

// copyCounted copies src to dst until src ends or either fails.
func copyCounted(dst io.Writer, src io.Reader, report func(int64)) {
	if report == nil {
		io.Copy(dst, src)
		return
	}
	io.Copy(countingWriter{dst, report}, src)
}

// countingWriter reports what each Write wrote.
type countingWriter struct {
	w      io.Writer
	report func(int64)
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	if n > 0 {
		c.report(int64(n))
	}
	return n, err
}
