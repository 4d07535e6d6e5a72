// Package accept is the accept loop every listener of slipway runs: the VM
// endpoints, the published ports, DNS over TCP and the control API. It
// keeps a listener serving through failures that pass (out of file
// descriptors, say) instead of ending or spinning on them.
package accept

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// Backoff bounds: after a failure that passes, the loop waits first
// backoffMin, doubling with each further failure up to backoffMax.
const (
	backoffMin = 5 * time.Millisecond
	backoffMax = time.Second
)

// Loop calls accept until it reports that its listener closed
// (net.ErrClosed), ctx ends, or it fails for good; every connection goes
// to handle, which must not block for long (it starts the connection's own
// goroutine). Loop returns nil when the listener closed or ctx ended, and
// the error otherwise. A failure that passes (see Temporary) pauses it
// with a backoff and is logged once per run of failures, naming what.
func Loop[C any](ctx context.Context, log *slog.Logger, what string, accept func() (C, error), handle func(C)) error {
	var backoff time.Duration
	for {
		c, err := accept()
		if err == nil {
			if backoff > 0 {
				log.Info("accepting again", "listener", what)
			}
			backoff = 0
			handle(c)
			continue
		}
		if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
			return nil
		}
		if !Temporary(err) {
			return err
		}
		if backoff == 0 {
			log.Warn("accept failed; retrying with a backoff", "listener", what, "err", err)
		}
		backoff = min(max(2*backoff, backoffMin), backoffMax)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// Temporary reports accept failures that pass: descriptors or memory
// running out, a connection aborted before it was accepted, a timeout.
func Temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS, syscall.ENOMEM, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
