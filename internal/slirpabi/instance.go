package slirpabi

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/link"
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
	host *pipe.End // the host's end; the network has the other
	log  *slog.Logger

	maxFrame int
	stats    Stats
	notify   func()
	gfwd     guestFwds

	mu    sync.Mutex // input: the frame slot below
	hdr   [link.VnetHdrLen]byte
	seg   [1][]byte
	frame [1]link.Frame
}

// New starts an instance on the host's settings over base. notify is
// called (on one of the network's goroutines, never on the host's thread)
// when frames start waiting for Take, or guest-forward bytes for
// TakeGuestForward; it must not block.
func New(s Settings, base config.Config, notify func(), log *slog.Logger) (*Instance, error) {
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
	n, err := network.New(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("slirp_new: %w", err)
	}
	mru := s.MRU
	if mru < cfg.MTU {
		mru = cfg.MTU
	}
	i := &Instance{cfg: n.Config(), net: n, log: log, maxFrame: link.EthHdrLen + mru, notify: notify}
	vm, host := pipe.NewDepth("libslirp", false, hostQueue)
	host.OnReadable(notify)
	i.host = host
	n.Attach(vm)
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
	n, _ := i.host.TryRead(bufs, sizes)
	return n
}

// Close stops the network and every goroutine of the instance; notify is
// not called after Close returns.
func (i *Instance) Close() {
	i.closeGuestForwards()
	i.host.OnReadable(nil)
	i.host.Close()
	i.net.Close()
}

// Logger is the instance's logger.
func (i *Instance) Logger() *slog.Logger { return i.log }
