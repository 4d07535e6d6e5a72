package endpoint

import (
	"fmt"
	"net"

	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/dgram"
)

// seqpacketListener serves User Mode Linux (vec0:transport=bess,dst=PATH)
// and other SOCK_SEQPACKET peers: each connection is one VM, one frame a
// message.
type seqpacketListener struct {
	spec Spec
	l    *net.UnixListener
}

func listenSeqpacket(spec Spec) (Listener, error) {
	l, err := listenUnix(spec, "unixpacket")
	if err != nil {
		return nil, err
	}
	return &seqpacketListener{spec: spec, l: l}, nil
}

// listenUnix listens on spec's path (taking over a stale socket file),
// removing the file again on Close.
func listenUnix(spec Spec, network string) (*net.UnixListener, error) {
	if err := ClaimSocketPath(spec.Address); err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	l, err := net.ListenUnix(network, &net.UnixAddr{Name: spec.Address, Net: network})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	l.SetUnlinkOnClose(true)
	return l, nil
}

func (s *seqpacketListener) Accept() (link.Link, error) {
	c, err := s.l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	lk, err := dgram.NewConn(c, dgram.Options{Name: s.spec.String()})
	if err != nil {
		c.Close()
		return nil, err
	}
	return lk, nil
}

func (s *seqpacketListener) Close() error { return s.l.Close() }
func (s *seqpacketListener) Spec() Spec   { return s.spec }

func (s *seqpacketListener) String() string { return s.spec.String() }
