// Package vswitch is slipway's virtual Ethernet segment: a MAC-learning
// switch whose ports are the guest links and the stack. Frames between
// guests go from link to link without touching the stack; frames for the
// gateway, broadcasts and unknown destinations reach the stack.
//
// The per-frame path takes no lock: the MAC table is an immutable map
// swapped atomically when a port learns a new address (rare), and each
// port's counters belong to that port.
package vswitch

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-net/slipway/internal/frame"
	"github.com/slipway-net/slipway/internal/gso"
	"github.com/slipway-net/slipway/internal/pcap"
	"github.com/slipway-net/slipway/link"
)

// MAC is an Ethernet address usable as a map key.
type MAC [6]byte

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// DefaultMaxMACsPerPort bounds how many source addresses one port may
// teach the switch, so a guest spraying random MACs cannot grow the table.
const DefaultMaxMACsPerPort = 64

// Options configures a Switch.
type Options struct {
	Logger *slog.Logger
	// PCAP, if set, records every frame on the guest side once: frames
	// from links as they enter, frames from the stack as they leave it.
	PCAP *pcap.Writer
	// MaxMACsPerPort bounds learning per port (DefaultMaxMACsPerPort if 0).
	MaxMACsPerPort int
	// OnPort is told when a link port comes up or goes down.
	// macs are the addresses the port had learned (on the way down).
	OnPort func(p *Port, up bool, macs []MAC)
}

// Switch connects ports on one L2 segment.
type Switch struct {
	log    *slog.Logger
	pcap   *pcap.Writer
	maxMAC int
	onPort func(*Port, bool, []MAC)

	mu     sync.Mutex // serialises learning and port changes
	macs   atomic.Pointer[map[MAC]*Port]
	links  atomic.Pointer[[]*Port] // link ports, for flooding
	stack  *Port
	nextID int
	// segmenters cut super-frames for links without offloads.
	segmenters sync.Pool
}

// New returns an empty switch.
func New(o Options) *Switch {
	s := &Switch{log: o.Logger, pcap: o.PCAP, maxMAC: o.MaxMACsPerPort, onPort: o.OnPort}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxMAC <= 0 {
		s.maxMAC = DefaultMaxMACsPerPort
	}
	s.segmenters.New = func() any { return gso.NewSegmenter() }
	empty := map[MAC]*Port{}
	s.macs.Store(&empty)
	s.links.Store(&[]*Port{})
	return s
}

// Port is one attachment to the switch: a guest link or the stack.
type Port struct {
	sw   *Switch
	id   int
	name string
	link link.Link // nil for the stack
	// deliver is the stack's input; nil for link ports.
	deliver func(views []frame.View)
	nmacs   int // learned addresses; guarded by sw.mu
	closed  atomic.Bool
	// down is set while the link is administratively down (SetUp).
	down atomic.Bool
	// errLogged keeps a failing link from logging every frame.
	errLogged atomic.Bool
	// uplink marks a port to a real LAN (AddUplink): it shares the
	// guests' L2 but not the stack, and never reaches another uplink.
	uplink bool
	Stats  PortStats
	Since  time.Time
}

// ID is the port's number, unique within its switch.
func (p *Port) ID() int { return p.id }

// Name describes the port (the link's description).
func (p *Port) Name() string { return p.name }

// LinkCounters are the drops the port's link counts itself (frames the
// switch never saw or handed over but the peer did not take); nil for the
// stack.
func (p *Port) LinkCounters() *link.Counters {
	if p.link == nil {
		return nil
	}
	return p.link.Counters()
}

// PortStats counts a port's traffic; rx is from the guest, tx to it.
type PortStats struct {
	RxFrames atomic.Uint64 `counter:"rx_frames"`
	RxBytes  atomic.Uint64 `counter:"rx_bytes"`
	TxFrames atomic.Uint64 `counter:"tx_frames"`
	TxBytes  atomic.Uint64 `counter:"tx_bytes"`
	// Drops by reason.
	DropRunt     atomic.Uint64 `counter:"runt"`      // shorter than an Ethernet header
	DropBadSrc   atomic.Uint64 `counter:"bad_src"`   // source address multicast or the gateway's
	DropHairpin  atomic.Uint64 `counter:"hairpin"`   // addressed to a MAC learned on the same port
	DropNoGSO    atomic.Uint64 `counter:"no_gso"`    // GSO frame for a link without offloads that could not be segmented
	DropChecksum atomic.Uint64 `counter:"checksum"`  // partial checksum with bad offsets
	DropTxError  atomic.Uint64 `counter:"tx_error"`  // the link failed to write
	DropRouter   atomic.Uint64 `counter:"router"`    // router advertisement or redirect from a guest
	DropTxFull   atomic.Uint64 `counter:"tx_full"`   // the peer was not reading (paused VM)
	DropLinkDown atomic.Uint64 `counter:"link_down"` // the link was set down (control API), either way
	DropUplink   atomic.Uint64 `counter:"uplink"`    // from an uplink to the stack or to another uplink
}

// SetUp takes the link down (frames from it and to it are dropped and
// counted) or up again, and tells the peer if the link can
// (link.Carrier: a vhost-user device's status).
func (p *Port) SetUp(up bool) {
	p.down.Store(!up)
	if c, ok := p.link.(link.Carrier); ok {
		c.SetCarrier(up)
	}
}

// Up reports whether the link is up (not set down by SetUp).
func (p *Port) Up() bool { return !p.down.Load() }

// SetStack attaches the stack as the port that owns mac and receives
// broadcasts and frames for unknown destinations, as the views the switch
// parsed them into.
func (s *Switch) SetStack(mac net.HardwareAddr, deliver func(views []frame.View)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &Port{sw: s, id: 0, name: "stack", deliver: deliver, Since: time.Now()}
	s.stack = p
	var m MAC
	copy(m[:], mac)
	s.storeMAC(m, p)
}

// AddLink attaches a guest link as a new port. Run reads from it.
func (s *Switch) AddLink(l link.Link) *Port { return s.add(l, false) }

// AddUplink attaches a link to a real LAN (a host TAP device the
// administrator bridged): guests and the LAN share one L2, but frames from
// the LAN never reach the stack (slipway's DHCP, DNS, gateway and NAT serve
// the guests only, never become a rogue server on the LAN) and the stack
// never sends to it; frames between two uplinks are dropped, so two
// bridges to one LAN cannot make a loop through slipway.
func (s *Switch) AddUplink(l link.Link) *Port { return s.add(l, true) }

func (s *Switch) add(l link.Link, uplink bool) *Port {
	s.mu.Lock()
	s.nextID++
	p := &Port{sw: s, id: s.nextID, name: l.String(), link: l, uplink: uplink, Since: time.Now()}
	links := append(append([]*Port(nil), *s.links.Load()...), p)
	s.links.Store(&links)
	s.mu.Unlock()
	s.log.Info("link up", "port", p.id, "link", p.name)
	if s.onPort != nil {
		s.onPort(p, true, nil)
	}
	return p
}

// Has reports whether a port has learned mac.
func (s *Switch) Has(mac MAC) bool {
	_, ok := (*s.macs.Load())[mac]
	return ok
}

// MACTable is the learned addresses and the port each is on.
func (s *Switch) MACTable() map[MAC]int {
	m := *s.macs.Load()
	out := make(map[MAC]int, len(m))
	for mac, p := range m {
		out[mac] = p.id
	}
	return out
}

// Ports returns the link ports attached now.
func (s *Switch) Ports() []*Port { return *s.links.Load() }

// Run reads frames from the port's link until it fails or is closed, then
// detaches the port and closes the link. The returned error says why the
// link ended (nil if it was closed by Remove).
//
// A multi-queue link (link.MultiQueue) gets a reader goroutine per queue;
// the link ends when the first of them fails (the others fail with it:
// a link's end ends all its queues).
func (p *Port) Run() error {
	var err error
	if mq, ok := p.link.(link.MultiQueue); ok && mq.Queues() > 1 {
		errs := make(chan error, mq.Queues())
		for i := range mq.Queues() {
			go func() {
				errs <- p.read(func(bufs [][]byte, sizes []int) (int, error) { return mq.ReadQueue(i, bufs, sizes) })
			}()
		}
		err = <-errs
		p.link.Close()
		for range mq.Queues() - 1 {
			<-errs
		}
	} else {
		err = p.read(p.link.Read)
	}
	// A port closed by Remove (network shutdown) ends without error.
	wasClosed := p.closed.Load()
	p.sw.Remove(p)
	if wasClosed {
		return nil
	}
	return err
}

// read passes frames from one of the link's queues to the switch until
// the link fails.
func (p *Port) read(readFn func(bufs [][]byte, sizes []int) (int, error)) error {
	bufs, sizes := link.NewBuffers(p.link.BatchSize())
	b := newBatcher(len(bufs))
	for {
		n, err := readFn(bufs, sizes)
		if n > 0 {
			p.sw.input(p, bufs[:n], sizes[:n], b)
		}
		if err != nil {
			return err
		}
	}
}

// Remove detaches a link port, forgets its MACs and closes its link.
func (s *Switch) Remove(p *Port) {
	if p.closed.Swap(true) {
		return
	}
	s.mu.Lock()
	var links []*Port
	for _, q := range *s.links.Load() {
		if q != p {
			links = append(links, q)
		}
	}
	s.links.Store(&links)
	old := *s.macs.Load()
	macs := make(map[MAC]*Port, len(old))
	var gone []MAC
	for m, q := range old {
		if q != p {
			macs[m] = q
		} else {
			gone = append(gone, m)
		}
	}
	s.macs.Store(&macs)
	s.mu.Unlock()
	p.link.Close()
	s.log.Info("link down", "port", p.id, "link", p.name)
	if s.onPort != nil {
		s.onPort(p, false, gone)
	}
}

// storeMAC maps m to p; s.mu must be held.
func (s *Switch) storeMAC(m MAC, p *Port) {
	old := *s.macs.Load()
	macs := make(map[MAC]*Port, len(old)+1)
	for k, v := range old {
		macs[k] = v
	}
	if prev := macs[m]; prev != nil && prev != p {
		prev.nmacs--
	}
	macs[m] = p
	p.nmacs++
	s.macs.Store(&macs)
}

// learn records that src was seen on port p. Called only when the table
// does not already say so.
func (s *Switch) learn(p *Port, src MAC) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.closed.Load() {
		return
	}
	cur := (*s.macs.Load())[src]
	if cur == p || cur == s.stack && cur != nil {
		return
	}
	if p.nmacs >= s.maxMAC {
		return // keep forwarding its frames, just stop learning
	}
	s.storeMAC(src, p)
	s.log.Debug("learned MAC", "mac", src, "port", p.id)
}

// batcher collects consecutive frames bound for the same port so a run of
// frames leaves in one Write call. Each reader goroutine owns one; its
// scratch (the one-piece frames of the batch being read) is reused, so
// switching allocates nothing.
type batcher struct {
	to     *Port
	frames []link.Frame // for a link port
	views  []frame.View // for the stack
	segs   [][1][]byte  // piece lists of the frames read, by buffer
	one    [1]link.Frame
	oneV   [1]frame.View
}

func newBatcher(n int) *batcher {
	return &batcher{frames: make([]link.Frame, 0, n), views: make([]frame.View, 0, n), segs: make([][1][]byte, n)}
}

func (b *batcher) add(to *Port, f link.Frame, v *frame.View) {
	if b.to != to {
		b.flush()
		b.to = to
	}
	if to.deliver != nil {
		b.views = append(b.views, *v)
	} else {
		b.frames = append(b.frames, f)
	}
}

func (b *batcher) flush() {
	switch {
	case b.to == nil:
	case b.to.deliver != nil && len(b.views) > 0:
		b.to.deliver(b.views)
	case len(b.frames) > 0:
		b.to.write(b.frames)
	}
	clear(b.frames)
	clear(b.views)
	b.frames, b.views = b.frames[:0], b.views[:0]
	b.to = nil
}

// input switches a batch of frames read from link port src.
func (s *Switch) input(src *Port, bufs [][]byte, sizes []int, b *batcher) {
	if src.down.Load() {
		src.Stats.DropLinkDown.Add(uint64(len(sizes)))
		return
	}
	macs := *s.macs.Load()
	for i, size := range sizes {
		if size < link.EthHdrLen {
			src.Stats.DropRunt.Add(1)
			continue
		}
		buf := bufs[i][:link.VnetHdrLen+size]
		src.Stats.RxFrames.Add(1)
		src.Stats.RxBytes.Add(uint64(size))
		eth := buf[link.VnetHdrLen:]
		if s.pcap != nil {
			s.pcap.WriteFrame(eth)
		}
		var dst, from MAC
		copy(dst[:], eth[0:6])
		copy(from[:], eth[6:12])
		if from[0]&1 != 0 || macs[from] == s.stack && s.stack != nil {
			src.Stats.DropBadSrc.Add(1)
			continue
		}
		if macs[from] != src {
			s.learn(src, from)
			macs = *s.macs.Load()
		}
		// Parsed once here; the stack reads the same view.
		v := frame.Parse(buf[:link.VnetHdrLen], eth)
		// RA guard (RFC 6105): router advertisements and redirects are
		// slipway's to send, so one guest cannot become another's router.
		if v.IsRouterMessage() {
			src.Stats.DropRouter.Add(1)
			continue
		}
		f := link.OnePiece(buf, &b.segs[i])
		to := macs[dst]
		switch {
		case dst[0]&1 != 0 || to == nil: // broadcast, multicast, unknown
			b.flush()
			s.flood(src, f, &v, b)
		case to == src:
			src.Stats.DropHairpin.Add(1)
		case src.uplink && (to == s.stack || to.uplink):
			src.Stats.DropUplink.Add(1)
		default:
			b.add(to, f, &v)
		}
	}
	b.flush()
}

// flood sends one frame to every port but its source, the stack included
// (from an uplink: to the guests only).
func (s *Switch) flood(src *Port, f link.Frame, v *frame.View, b *batcher) {
	b.one[0] = f
	for _, p := range *s.links.Load() {
		if p != src && !(src.uplink && p.uplink) {
			p.write(b.one[:])
		}
	}
	if s.stack != nil && src != s.stack && !src.uplink {
		b.oneV[0] = *v
		s.stack.deliver(b.oneV[:])
	}
	b.one[0], b.oneV[0] = link.Frame{}, frame.View{}
}

// AllLinksOffload reports whether the switch has guest links and every
// one of them takes offloaded frames: then the stack may send TCP
// super-frames (GSO) that the links' peers segment themselves. Uplinks do
// not count: the stack never sends to them.
func (s *Switch) AllLinksOffload() bool {
	n := 0
	for _, p := range *s.links.Load() {
		if p.uplink {
			continue
		}
		if !p.link.Offloads() {
			return false
		}
		n++
	}
	return n > 0
}

// countTxError counts frames a link failed to send.
func (p *Port) countTxError(frames int, err error) {
	if err == nil {
		return
	}
	if errors.Is(err, link.ErrQueueFull) {
		p.Stats.DropTxFull.Add(uint64(frames))
		return
	}
	p.Stats.DropTxError.Add(uint64(frames))
	// Once the link is closed every write fails the same way: say so
	// once, not per frame.
	if !p.closed.Load() && p.errLogged.CompareAndSwap(false, true) {
		p.sw.log.Debug("link write failed", "port", p.id, "err", err)
	}
}

// FromStack switches frames the stack sends (and frames slipway builds
// itself); their pieces are the caller's again when it returns. Runs of
// frames for the same port leave in one write. Safe for concurrent use.
func (s *Switch) FromStack(frames []link.Frame) {
	macs := *s.macs.Load()
	if s.pcap != nil {
		for i := range frames {
			s.pcap.WriteFrame(frames[i].Segs...)
		}
	}
	// next is the route of frames[i] once the loop looked ahead to it:
	// each frame is routed once.
	var next *Port
	routed := false
	for i := 0; i < len(frames); {
		to := next
		if !routed {
			to = route(macs, s.stack, &frames[i])
		}
		j := i + 1
		routed = false
		for to != nil && j < len(frames) {
			if next, routed = route(macs, s.stack, &frames[j]), true; next != to {
				break
			}
			j++
			routed = false
		}
		switch {
		case to == nil:
			for _, p := range *s.links.Load() {
				if !p.uplink {
					p.write(frames[i:j])
				}
			}
		case to.uplink:
			to.Stats.DropUplink.Add(uint64(j - i))
		default:
			to.write(frames[i:j])
		}
		i = j
	}
}

// route is the link port a frame from the stack goes to, nil to flood it
// (broadcast, multicast, or an address no link has shown).
func route(macs map[MAC]*Port, stack *Port, f *link.Frame) *Port {
	var dst MAC
	copy(dst[:], f.Segs[0])
	if dst[0]&1 != 0 {
		return nil
	}
	if to := macs[dst]; to != stack {
		return to
	}
	return nil
}

// write sends frames out of a link port. Links without offloads get
// complete checksums, and TCP super-frames (GSO) cut into segments, as the
// host kernel would for a device that cannot take them (a guest that
// offloads can talk to one that does not); a super-frame that cannot be
// cut is dropped and counted. It compacts frames in place (the caller's
// scratch).
func (p *Port) write(frames []link.Frame) {
	if p.closed.Load() {
		return
	}
	if p.down.Load() {
		p.Stats.DropLinkDown.Add(uint64(len(frames)))
		return
	}
	if p.link.Offloads() {
		p.send(frames)
		return
	}
	k := 0
	for i := range frames {
		f := &frames[i]
		if f.GSO() {
			p.send(frames[:k])
			k = 0
			p.segment(f)
			continue
		}
		if err := f.FinishChecksum(); err != nil {
			p.Stats.DropChecksum.Add(1)
			continue
		}
		frames[k] = *f
		k++
	}
	p.send(frames[:k])
}

// segment writes a super-frame as the segments it stands for.
func (p *Port) segment(f *link.Frame) {
	s := p.sw.segmenters.Get().(*gso.Segmenter)
	defer p.sw.segmenters.Put(s)
	if err := s.Segment(f, p.send); err != nil {
		p.Stats.DropNoGSO.Add(1)
	}
}

// send hands frames to the link and counts what it took.
func (p *Port) send(frames []link.Frame) {
	if len(frames) == 0 {
		return
	}
	n, err := p.link.Write(frames)
	var bytes uint64
	for i := range frames[:n] {
		bytes += uint64(frames[i].Len())
	}
	p.Stats.TxFrames.Add(uint64(n))
	p.Stats.TxBytes.Add(bytes)
	p.countTxError(len(frames)-n, err)
}

// String describes the switch for logs.
func (s *Switch) String() string {
	return fmt.Sprintf("switch(%d links)", len(*s.links.Load()))
}
