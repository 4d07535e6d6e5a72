package endpoint

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/slipway-net/slipway/internal/hostnet"
	"github.com/slipway-net/slipway/link"
)

// A launcher opens the endpoints and hands their sockets to a sandboxed
// engine, which cannot open a path or bind a port itself.

// fileListener is a bound socket whose descriptor can be duplicated.
type fileListener interface {
	File() (*os.File, error)
	Close() error
}

// Open binds a listening endpoint's socket, serving nothing on it, to
// hand over to the engine (FromFile). remove deletes the socket's file,
// if it has one and it is still the one bound here: the engine cannot.
func Open(spec Spec) (f *os.File, remove func(), err error) {
	remove = func() {}
	var l fileListener
	switch spec.Kind {
	case Stream:
		if spec.Network == "unix" {
			if err := ClaimSocketPath(spec.Address); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", spec, err)
			}
		}
		nl, err := hostnet.Listen(spec.Network, spec.Address)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", spec, err)
		}
		if ul, ok := nl.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
		l = nl.(fileListener) // *net.TCPListener or *net.UnixListener
	case Seqpacket, VhostUser:
		network := "unix"
		if spec.Kind == Seqpacket {
			network = "unixpacket"
		}
		ul, err := listenUnix(spec, network)
		if err != nil {
			return nil, nil, err
		}
		ul.SetUnlinkOnClose(false)
		l = ul
	case Dgram:
		if err := ClaimSocketPath(spec.Address); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", spec, err)
		}
		uc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: spec.Address, Net: "unixgram"})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", spec, err)
		}
		l = uc
	default:
		return nil, nil, fmt.Errorf("%s: %w", spec, ErrNotImplemented)
	}
	defer l.Close() // the duplicate in f stays
	if f, err = l.File(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", spec, err)
	}
	if spec.Network == "unix" {
		self, serr := os.Lstat(spec.Address)
		remove = func() {
			if cur, err := os.Lstat(spec.Address); serr == nil && err == nil && os.SameFile(cur, self) {
				os.Remove(spec.Address)
			}
		}
	}
	return f, remove, nil
}

// FromFile makes the listener of spec from its socket, as File handed it
// over. Closing it leaves the socket's file alone.
func FromFile(spec Spec, f *os.File, log *slog.Logger) (Listener, error) {
	defer f.Close()
	switch spec.Kind {
	case Stream, Seqpacket, VhostUser:
		l, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec, err)
		}
		if spec.Kind == Stream {
			return &streamListener{spec: spec, l: l}, nil
		}
		ul, ok := l.(*net.UnixListener)
		if !ok {
			l.Close()
			return nil, fmt.Errorf("%s: not a unix socket", spec)
		}
		if spec.Kind == VhostUser {
			return &vhostUserListener{spec: spec, l: ul, log: log}, nil
		}
		return &seqpacketListener{spec: spec, l: ul}, nil
	case Dgram:
		c, err := net.FilePacketConn(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec, err)
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			return nil, fmt.Errorf("%s: not a unix socket", spec)
		}
		return serveDgram(spec, uc, log)
	}
	return nil, fmt.Errorf("%s: %w", spec, ErrNotImplemented)
}

// ConnectThrough is Connect with the dial done by dial: a sandboxed
// engine asks its launcher for each connection.
func ConnectThrough(spec Spec, log *slog.Logger, dial func(context.Context) (net.Conn, error)) (Listener, error) {
	l, err := Connect(spec, log)
	if err != nil {
		return nil, err
	}
	l.(*dialer).through = dial
	return l, nil
}

// Dial makes one connection to a --connect endpoint: what a launcher does
// for its engine.
func Dial(ctx context.Context, spec Spec) (net.Conn, error) {
	var nd net.Dialer
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	switch spec.Kind {
	case Stream:
		return nd.DialContext(ctx, spec.Network, spec.Address)
	case Seqpacket:
		return nd.DialContext(ctx, "unixpacket", spec.Address)
	case VhostUser:
		return nd.DialContext(ctx, "unix", spec.Address)
	}
	return nil, fmt.Errorf("%s: %w", spec, ErrCannotConnect)
}

// AdoptFile makes the link of a connected socket handed over as f, one
// that OpenFD checked in the launcher; name is the link's name there
// (fd:N:KIND with the launcher's N).
func AdoptFile(kind Kind, f *os.File, name string, vo VhostOptions) (link.Link, error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return adopt(c, kind, name, vo)
}
