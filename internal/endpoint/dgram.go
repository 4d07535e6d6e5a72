package endpoint

import (
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/dgram"
)

// dgramListener serves QEMU -netdev dgram and vfkit/krunkit unixgram VMs
// on one datagram socket: every sender address is a VM of its own.
type dgramListener struct {
	spec Spec
	mux  *dgram.Mux
	self os.FileInfo // the socket file as bound, to remove only our own
}

func listenDgram(spec Spec, log *slog.Logger) (Listener, error) {
	if err := ClaimSocketPath(spec.Address); err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: spec.Address, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	self, _ := os.Lstat(spec.Address)
	l, err := serveDgram(spec, conn, log)
	if err != nil {
		os.Remove(spec.Address)
		return nil, err
	}
	l.self = self
	return l, nil
}

// serveDgram makes the listener of a bound datagram socket.
func serveDgram(spec Spec, conn *net.UnixConn, log *slog.Logger) (*dgramListener, error) {
	mux, err := dgram.NewMux(conn, dgram.MuxOptions{
		Options: dgram.Options{
			Name: spec.String(),
			// krunkit with offloading=on sends partial checksums
			// and no header to say so; the frames come from the
			// VM's own kernel, so they are not checked again.
			TrustChecksums: true,
		},
		Logger: log,
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	return &dgramListener{spec: spec, mux: mux}, nil
}

func (d *dgramListener) Accept() (link.Link, error) {
	p, err := d.mux.Accept()
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Close stops serving: every VM on the socket is disconnected and the
// socket file removed (unless another process has replaced it).
func (d *dgramListener) Close() error {
	err := d.mux.Close()
	// One made from an inherited socket (a sandboxed engine) leaves the
	// file to whoever bound it.
	if d.self == nil {
		return err
	}
	if cur, serr := os.Lstat(d.spec.Address); serr == nil && os.SameFile(cur, d.self) {
		os.Remove(d.spec.Address)
	}
	return err
}

func (d *dgramListener) Spec() Spec { return d.spec }

func (d *dgramListener) String() string { return d.spec.String() }

// Stats are the socket's own drop counters (datagrams no VM could take).
func (d *dgramListener) Stats() *dgram.MuxStats { return d.mux.Stats() }

// Counters are the datagrams the socket received that no VM could take
// (a *dgram.MuxStats).
func (d *dgramListener) Counters() any { return d.mux.Stats() }
