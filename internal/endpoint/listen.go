package endpoint

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/slipway-net/slipway/internal/hostnet"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/stream"
)

// Listener accepts guests; each Accept returns the link of one new guest.
// String names it as its Spec does.
type Listener interface {
	Accept() (link.Link, error)
	Close() error
	Spec() Spec
	String() string
}

// ErrNotImplemented marks a kind parsed but not served by this build.
var ErrNotImplemented = errors.New("transport not implemented yet")

// Listen opens a listening endpoint.
func Listen(spec Spec) (Listener, error) {
	return ListenLogged(spec, nil)
}

// ListenLogged opens a listening endpoint whose transport logs to log
// (datagram sockets report peers that come and go).
func ListenLogged(spec Spec, log *slog.Logger) (Listener, error) {
	switch spec.Kind {
	case Stream:
		return listenStream(spec)
	case Dgram:
		return listenDgram(spec, log)
	case Seqpacket:
		return listenSeqpacket(spec)
	case VhostUser:
		return listenVhostUser(spec, log)
	default:
		return nil, fmt.Errorf("%s: %w", spec, ErrNotImplemented)
	}
}

type streamListener struct {
	spec Spec
	l    net.Listener
}

func listenStream(spec Spec) (Listener, error) {
	if spec.Network == "unix" {
		if err := ClaimSocketPath(spec.Address); err != nil {
			return nil, fmt.Errorf("%s: %w", spec, err)
		}
	}
	l, err := hostnet.Listen(spec.Network, spec.Address)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	if ul, ok := l.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
	}
	return &streamListener{spec: spec, l: l}, nil
}

func (s *streamListener) Accept() (link.Link, error) {
	c, err := s.l.Accept()
	if err != nil {
		return nil, err
	}
	desc := fmt.Sprintf("%s (peer %s)", s.spec, c.RemoteAddr())
	if s.spec.Network == "unix" {
		desc = s.spec.String()
	}
	return stream.New(c, desc), nil
}

func (s *streamListener) Close() error { return s.l.Close() }
func (s *streamListener) Spec() Spec   { return s.spec }

func (s *streamListener) String() string { return s.spec.String() }

// ErrSocketInUse reports a socket path another process is serving.
var ErrSocketInUse = errors.New("socket path is in use by another process")

// ClaimSocketPath makes path free for a new socket: a stale socket left by a
// dead process is removed; a live one, or anything that is not a socket, is
// an error.
func ClaimSocketPath(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	for _, network := range []string{"unix", "unixgram", "unixpacket"} {
		c, err := net.DialTimeout(network, path, time.Second)
		if err == nil {
			c.Close()
			return ErrSocketInUse
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EPROTOTYPE) {
			break
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}
