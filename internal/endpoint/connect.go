package endpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/slipway-net/slipway/link"
)

// Redial timing: the first attempt after a link ends is immediate, then
// waits double from 100ms to 5s while the VMM is away.
const (
	redialMin   = 100 * time.Millisecond
	redialMax   = 5 * time.Second
	dialTimeout = 5 * time.Second
)

// ErrCannotConnect marks a kind that has no client side.
var ErrCannotConnect = errors.New("endpoint kind cannot be connected to; use --listen")

// Connect returns a Listener that dials spec instead of listening: its
// Accept yields a link once connected and, after that link ends (QEMU
// with server=on restarted, say), dials again with backoff. The network
// therefore outlives the VMM's restarts; leases and forwards stay.
func Connect(spec Spec, log *slog.Logger) (Listener, error) {
	switch spec.Kind {
	case Stream, Seqpacket, VhostUser:
	default:
		return nil, fmt.Errorf("%s: %w", spec, ErrCannotConnect)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &dialer{spec: spec, log: log, ctx: ctx, cancel: cancel}, nil
}

type dialer struct {
	spec   Spec
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	// through, if set, makes each connection (ConnectThrough).
	through func(context.Context) (net.Conn, error)

	mu   sync.Mutex
	prev <-chan struct{} // closed when the last link handed out ended
}

// Accept waits for the previous link to end, then dials until it
// connects or the dialer is closed.
func (d *dialer) Accept() (link.Link, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.prev != nil {
		select {
		case <-d.prev:
		case <-d.ctx.Done():
			return nil, net.ErrClosed
		}
	}
	wait := redialMin
	failing := false
	for {
		l, err := d.dial()
		if err == nil {
			if failing {
				d.log.Info("connected", "endpoint", d.spec.String())
			}
			w, done := Watch(l)
			d.prev = done
			return w, nil
		}
		if d.ctx.Err() != nil {
			return nil, net.ErrClosed
		}
		if !failing {
			d.log.Warn("cannot connect, retrying until the VMM listens", "endpoint", d.spec.String(), "err", err)
			failing = true
		} else {
			d.log.Debug("cannot connect", "endpoint", d.spec.String(), "err", err, "retry-in", wait)
		}
		select {
		case <-time.After(wait):
		case <-d.ctx.Done():
			return nil, net.ErrClosed
		}
		wait = min(2*wait, redialMax)
	}
}

func (d *dialer) dial() (link.Link, error) {
	dial := d.through
	if dial == nil {
		dial = func(ctx context.Context) (net.Conn, error) { return Dial(ctx, d.spec) }
	}
	c, err := dial(d.ctx)
	if err != nil {
		return nil, err
	}
	return adopt(c, d.spec.Kind, d.spec.String(), VhostOptions{Queues: d.spec.Queues, MTU: d.spec.MTU, Log: d.log})
}

// Close stops dialing; a link already handed out is closed by its owner.
func (d *dialer) Close() error {
	d.cancel()
	return nil
}

func (d *dialer) Spec() Spec { return d.spec }

func (d *dialer) String() string { return d.spec.String() }
