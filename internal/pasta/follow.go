package pasta

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/network"
)

// FollowInterval is how often the namespace's listening sockets are read
// for automatic forwards (pasta reads them every second too).
const FollowInterval = time.Second

// maxTable bounds one read of a /proc/net table.
const maxTable = 4 << 20

// Publisher is the part of a network the follower drives.
type Publisher interface {
	Publish(config.PublishRule) (network.Forward, error)
	Unpublish(id uint64) (network.Forward, error)
}

// Follower keeps automatic forwards in step with the ports bound in the
// namespace: a port bound there is published on the host, and withdrawn
// once nothing is bound to it.
type Follower struct {
	plan   *Plan
	pub    Publisher
	tables []*os.File // tcp, tcp6, udp, udp6 of the namespace
	log    *slog.Logger
	// active maps a forwarded (proto, host address, port) to its forward.
	active map[autoKey]uint64
	// failed remembers host ports that would not bind, logged once.
	failed map[autoKey]bool
	buf    []byte
}

type autoKey struct {
	proto config.Proto
	host  netip.Addr
	port  uint16
}

// NewFollower follows plan's automatic forwards through the namespace's
// /proc/net tables (nsrun.ProcNetFiles, in order).
func NewFollower(plan *Plan, pub Publisher, tables []*os.File, log *slog.Logger) *Follower {
	return &Follower{plan: plan, pub: pub, tables: tables, log: log,
		active: map[autoKey]uint64{}, failed: map[autoKey]bool{}}
}

// Run syncs now and then every FollowInterval until ctx ends.
func (f *Follower) Run(ctx context.Context) {
	t := time.NewTicker(FollowInterval)
	defer t.Stop()
	for {
		f.Sync()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sync reads the tables once and publishes or withdraws what changed.
func (f *Follower) Sync() {
	bound := map[config.Proto]map[uint16]bool{config.TCP: {}, config.UDP: {}}
	for i, t := range f.tables {
		proto := config.TCP
		if i >= 2 {
			proto = config.UDP
		}
		data, err := f.read(t)
		if err != nil {
			f.log.Debug("cannot read the namespace's sockets", "table", t.Name(), "err", err)
			return // keep what is published rather than act on half a picture
		}
		BoundPorts(data, proto == config.UDP, f.plan.HostLoToNsLo, bound[proto])
	}
	// -T's and -U's own sockets in the namespace are not the namespace's
	// servers: forwarding them back would make a loop (pasta leaves them
	// out too).
	for _, fw := range f.plan.NSForwards {
		delete(bound[fw.Proto], fw.Listen.Port())
	}
	want := map[autoKey]uint16{}
	for _, a := range f.plan.Auto {
		// Host port → namespace port; forwarded while the latter is
		// bound. With auto alone they are equal.
		for port, to := range a.Ports {
			if to == 0 || !bound[a.Proto][to] {
				continue
			}
			for _, h := range a.HostAddrs {
				want[autoKey{a.Proto, h, uint16(port)}] = to
			}
		}
	}
	for k, id := range f.active {
		if _, ok := want[k]; !ok {
			if _, err := f.pub.Unpublish(id); err != nil {
				f.log.Debug("withdraw automatic forward", "port", k.port, "err", err)
			}
			delete(f.active, k)
			f.log.Info("automatic forward withdrawn", "proto", k.proto, "host", k.host, "port", k.port)
		}
	}
	for k := range f.failed {
		if _, ok := want[k]; !ok {
			delete(f.failed, k)
		}
	}
	for k, to := range want {
		if _, ok := f.active[k]; ok || f.failed[k] {
			continue
		}
		fw, err := f.pub.Publish(f.plan.Rule(k.proto, k.host, PortRange{First: k.port, Last: k.port, To: to}))
		if err != nil {
			// Taken on the host, most likely: as pasta, skip it.
			f.failed[k] = true
			f.log.Info("automatic forward not possible", "proto", k.proto, "host", k.host, "port", k.port, "err", err)
			continue
		}
		f.active[k] = fw.ID
		f.log.Info("automatic forward", "proto", k.proto, "host", k.host, "port", k.port)
	}
}

// read reads a whole table from its start (a seq file re-reads afresh).
func (f *Follower) read(t *os.File) ([]byte, error) {
	if f.buf == nil {
		f.buf = make([]byte, 64<<10)
	}
	n := 0
	for {
		if n == len(f.buf) {
			if len(f.buf) >= maxTable {
				return f.buf[:n], nil
			}
			f.buf = append(f.buf, make([]byte, len(f.buf))...)
		}
		k, err := t.ReadAt(f.buf[n:], int64(n))
		n += k
		if err == io.EOF || k == 0 && err == nil {
			return f.buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
}
