// Package splice joins two connections into one path: what a forwarder
// does once it holds both ends (gvproxy's forwards and tunnels, pasta's
// -T).
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
func Conns(ctx context.Context, a, b net.Conn) {
	defer a.Close()
	defer b.Close()
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	half := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go half(a, b)
	go half(b, a)
	<-done
	<-done
}
