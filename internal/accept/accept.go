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
// (net.ErrClosed), ctx ends, or it fails for good (see Permanent); every
// connection goes to handle, which must not block for long (it starts the
// connection's own goroutine). Loop returns nil when the listener closed
// or ctx ended, and the error otherwise. Any other failure (out of
// descriptors, an error accept(2) passes up from the network, a
// connection aborted before it was accepted) pauses it with a backoff and
// is logged once per run of failures, naming what.
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
		if Permanent(err) {
			log.Error("accept failed for good; no longer accepting", "listener", what, "err", err)
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

// Permanent reports accept failures that no wait mends: the descriptor
// is not (or no longer) a listening socket. Everything else is worth
// trying again: accept(2) passes up errors of the network and of the
// connection being accepted, which its manual says to retry, and
// descriptors or memory may be free again a moment later.
func Permanent(err error) bool {
	for _, e := range []error{syscall.EBADF, syscall.EINVAL, syscall.ENOTSOCK, syscall.EOPNOTSUPP, syscall.EFAULT} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
