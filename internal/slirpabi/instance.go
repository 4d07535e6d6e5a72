package slirpabi

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/dgram"
	"github.com/slipway-net/slipway/link/pipe"
	"github.com/slipway-net/slipway/network"
)

// hostQueue is how many frames may wait for the host each way: the host
// takes frames only on its main loop's turns, and a TCP window (2 MiB)
// of MTU-sized frames must fit, or the stack's bursts are dropped.
const hostQueue = 4096

// Stats counts the host's frames that never reached the network.
type Stats struct {
	// InRunt: shorter than an Ethernet header.
	InRunt atomic.Uint64 `counter:"in_runt"`
	// InTooLarge: longer than the MTU (or MRU) allows.
	InTooLarge atomic.Uint64 `counter:"in_too_large"`
	// InQueueFull: the network had not taken the earlier frames yet.
	InQueueFull atomic.Uint64 `counter:"in_queue_full"`
	// InClosed: input after the instance was closed.
	InClosed atomic.Uint64 `counter:"in_closed"`
	// GuestFwdDropped: bytes the host gave a guest forward beyond the
	// room it was told of, or with no guest connected.
	GuestFwdDropped atomic.Uint64 `counter:"guestfwd_dropped"`
}

// Instance is one libslirp instance (one Slirp*): a slipway network with
// the host as its one guest link.
type Instance struct {
	cfg  config.Config
	net  *network.Network
	host *pipe.End // the host's end; the network has the other (nil: NewOnSocket's)
	log  *slog.Logger

	maxFrame int
	stats    Stats
	notify   func()
	gfwd     guestFwds

	mu    sync.Mutex // input: the frame slot below
	hdr   [link.VnetHdrLen]byte
	seg   [1][]byte
	frame [1]link.Frame

	// Listening host sockets (hostsock.go): the one the host bound for
	// the forward being added, whether the instance may bind its own,
	// and the embedder's way to bind them, if any.
	sockMu        sync.Mutex
	grant         granted
	noOwnBinds    bool
	hostListenTCP func(netip.AddrPort) (*net.TCPListener, error)
	hostListenUDP func(netip.AddrPort) (*net.UDPConn, error)
}

// New starts an instance on the host's settings over base. notify is
// called (on one of the network's goroutines, never on the host's thread)
// when frames start waiting for Take, or guest-forward bytes for
// TakeGuestForward; it must not block.
func New(s Settings, base config.Config, notify func(), log *slog.Logger) (*Instance, error) {
	return NewWithHost(s, base, notify, log, network.Host{})
}

// NewWithHost is New with what host provides in place of the host's own
// files and sockets (network.NewWithHost): the sandboxed server's
// resolv.conf and TFTP files come from the shim. Published ports'
// sockets are the instance's to open (hostsock.go); host's ListenTCP and
// ListenUDP, if set, are how.
func NewWithHost(s Settings, base config.Config, notify func(), log *slog.Logger, host network.Host) (*Instance, error) {
	return start(s, base, notify, log, host, nil)
}

// NewOnSocket is NewWithHost for a host whose frames come and go on
// frames, a SOCK_SEQPACKET socket, one bare frame a message (the process
// shape's): the socket is the network's link to the host, as any
// seqpacket VM's is, so Input and Take are not used; notify is for
// guest-forward bytes only.
func NewOnSocket(s Settings, base config.Config, frames *net.UnixConn, notify func(), log *slog.Logger, host network.Host) (*Instance, error) {
	if frames == nil {
		return nil, errors.New("slirp_new: no frames socket")
	}
	return start(s, base, notify, log, host, frames)
}

func start(s Settings, base config.Config, notify func(), log *slog.Logger, host network.Host, frames *net.UnixConn) (*Instance, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, notes, err := s.Config(base)
	if err != nil {
		return nil, fmt.Errorf("slirp_new: %w", err)
	}
	for _, n := range notes {
		log.Warn(n)
	}
	i := &Instance{log: log, notify: notify, hostListenTCP: host.ListenTCP, hostListenUDP: host.ListenUDP}
	host.ListenTCP, host.ListenUDP = i.listenTCP, i.listenUDP
	n, err := network.NewWithHost(cfg, log, host)
	if err != nil {
		return nil, fmt.Errorf("slirp_new: %w", err)
	}
	mru := s.MRU
	if mru < cfg.MTU {
		mru = cfg.MTU
	}
	i.cfg, i.net, i.maxFrame = n.Config(), n, link.EthHdrLen+mru
	if frames != nil {
		l, err := dgram.NewConn(frames, dgram.Options{Name: "libslirp", MaxRxFrame: i.maxFrame})
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("slirp_new: %w", err)
		}
		n.Attach(l)
	} else {
		vm, end := pipe.NewDepth("libslirp", false, hostQueue)
		end.OnReadable(notify)
		i.host = end
		n.Attach(vm)
	}
	log.Debug("slirp_new", "config-version", s.Version, "cidr", cfg.CIDR, "ipv6", !cfg.NoIPv6, "mtu", cfg.MTU)
	return i, nil
}

// Network is the instance's network (tests and the control API look at it).
func (i *Instance) Network() *network.Network { return i.net }

// Stats are the instance's own drops.
func (i *Instance) Stats() *Stats { return &i.stats }

// Input takes one frame from the host (slirp_input). It copies the frame:
// pkt is the host's again when Input returns. A frame that cannot be a
// guest's is dropped and counted.
func (i *Instance) Input(pkt []byte) {
	switch {
	case i.host == nil: // NewOnSocket's: the socket carries frames
		i.stats.InClosed.Add(1)
		return
	case len(pkt) < link.EthHdrLen:
		i.stats.InRunt.Add(1)
		return
	case len(pkt) > i.maxFrame:
		i.stats.InTooLarge.Add(1)
		return
	}
	i.mu.Lock()
	i.seg[0] = pkt
	i.frame[0] = link.Frame{Hdr: i.hdr[:], Segs: i.seg[:]}
	n, err := i.host.Write(i.frame[:])
	i.seg[0] = nil
	i.mu.Unlock()
	switch {
	case err != nil && n == 0 && err != link.ErrQueueFull:
		i.stats.InClosed.Add(1)
	case n == 0:
		i.stats.InQueueFull.Add(1)
	}
}

// Take moves frames waiting for the host into bufs (each header+frame, as
// link.Link's Read lays them out) without blocking, and returns how many.
func (i *Instance) Take(bufs [][]byte, sizes []int) int {
	if i.host == nil {
		return 0
	}
	n, _ := i.host.TryRead(bufs, sizes)
	return n
}

// Close stops the network and every goroutine of the instance; notify is
// not called after Close returns.
func (i *Instance) Close() {
	i.closeGuestForwards()
	if i.host != nil {
		i.host.OnReadable(nil)
		i.host.Close()
	}
	i.net.Close()
}

// Config is the instance's network configuration, completed.
func (i *Instance) Config() config.Config { return i.cfg }

// Logger is the instance's logger.
func (i *Instance) Logger() *slog.Logger { return i.log }
