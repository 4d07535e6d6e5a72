// Package dhcp4 is slipway's DHCPv4 server (RFC 2131, options from RFC
// 2132, 3396 and 3397). It hands the guest its address, router, DNS
// servers and names. The message logic (Handle) is pure and separate from
// I/O (Serve), which runs on any net.PacketConn, so the same server works on
// the netstack's gateway address and on host sockets in tests.
package dhcp4

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/slipway-net/slipway/services/internal/leases"
)

const (
	clientPort = 68
	// maxHostnameLen bounds the client-supplied name kept in a lease.
	maxHostnameLen = 63
)

// broadcastDst is the limited broadcast on the client port, where replies
// go for clients that have no address yet.
func broadcastDst() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), clientPort)
}

// Lease is one client's binding, as reported by Leases and OnLease.
type Lease struct {
	MAC      string
	Addr     netip.Addr
	Hostname string // what the client called itself (option 12), sanitised
	Expires  time.Time
	Static   bool
}

// Stats counts what the server did with the messages it was given.
// Received = Replied + the sum of Dropped.
type Stats struct {
	Received uint64 `counter:"received"`
	Replied  uint64 `counter:"replied"`
	// Dropped counts messages that got no reply, by reason: malformed
	// ("short", "bad-cookie", "bad-options", ...) or deliberately ignored
	// ("other-server", "pool-exhausted", "no-reply-needed" for RELEASE and
	// DECLINE).
	Dropped map[string]uint64 `counter:"dropped"`
}

// Server is a DHCPv4 server for one subnet. It is safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	search []byte // option 119 data, encoded once
	plan   plan

	mu      sync.Mutex
	table   *table
	stats   Stats
	onLease func(Lease)
	// poolFullLogged is set once "pool is full" was logged, until an
	// address is handed out again.
	poolFullLogged bool
}

// New validates cfg and returns a server for it. A nil log discards.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := newPlan(cfg.Subnet)
	s := &Server{
		cfg:   cfg,
		log:   log,
		plan:  p,
		table: newTable(cfg, p),
		stats: Stats{Dropped: make(map[string]uint64)},
	}
	if len(cfg.Search) > 0 {
		s.search = encodeSearchList(cfg.Search)
	}
	return s, nil
}

// OnLease sets a function called each time a lease is granted or renewed.
// It runs outside the server's lock but on the serving goroutine, so it
// should return quickly. nil removes it.
func (s *Server) OnLease(fn func(Lease)) {
	s.mu.Lock()
	s.onLease = fn
	s.mu.Unlock()
}

// Reserve binds mac to addr for good. Static bindings ignore RangeStart and
// MaxLeases but must be host addresses of the subnet that the network does
// not use itself, and not held by another client's current lease.
func (s *Server) Reserve(mac net.HardwareAddr, addr netip.Addr) error {
	if len(mac) != hlenEthernet {
		return fmt.Errorf("dhcp4: reserve: %q is not an Ethernet MAC address", mac)
	}
	if !s.plan.isHost(addr) {
		return fmt.Errorf("dhcp4: reserve %v for %v: %w", addr, mac, errNotInSubnet)
	}
	if s.table.IsReserved(addr) {
		return fmt.Errorf("dhcp4: reserve %v for %v: address is reserved", addr, mac)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.table.Pin(mac.String(), addr, s.cfg.Now()); e != nil {
		return fmt.Errorf("dhcp4: reserve %v for %v: address is leased to %s", addr, mac, e.Key)
	}
	return nil
}

// Leases returns the current leases (acknowledged and unexpired, plus all
// static bindings), ordered by address.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return leases.Current(s.table, s.cfg.Now(), toLease)
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Dropped = maps.Clone(st.Dropped)
	return st
}

// Handle processes one datagram received on port 67 and returns the reply
// and where to send it. ok is false when no reply is due (malformed or
// ignored input, RELEASE, DECLINE); the reason is counted in Stats.
func (s *Server) Handle(req []byte) (reply []byte, dst netip.AddrPort, ok bool) {
	s.mu.Lock()
	s.stats.Received++
	m, err := parseMessage(req)
	if err != nil {
		var pe *parseError
		reason := "malformed"
		if errors.As(err, &pe) {
			reason = pe.reason
		}
		s.dropLocked(reason, nil)
		s.mu.Unlock()
		return nil, netip.AddrPort{}, false
	}
	var granted *Lease
	reply, dst, granted, ok = s.handleLocked(m)
	if ok {
		s.stats.Replied++
	}
	fn := s.onLease
	s.mu.Unlock()
	if granted != nil && fn != nil {
		fn(*granted)
	}
	return reply, dst, ok
}

// dropLocked counts a message that gets no reply and logs why at debug
// level (guest input must not be able to flood the log).
func (s *Server) dropLocked(reason string, m *message) {
	s.stats.Dropped[reason]++
	if m != nil {
		s.log.Debug("dhcp4: no reply", "reason", reason, "type", m.mtype, "mac", m.mac())
	} else {
		s.log.Debug("dhcp4: dropped message", "reason", reason)
	}
}

func (m *message) mac() string { return net.HardwareAddr(m.chaddr[:hlenEthernet]).String() }

func (s *Server) handleLocked(m *message) ([]byte, netip.AddrPort, *Lease, bool) {
	if m.chaddr == [16]byte{} {
		s.dropLocked(dropBadChaddr, m)
		return nil, netip.AddrPort{}, nil, false
	}
	now := s.cfg.Now()
	switch m.mtype {
	case msgDiscover:
		return s.discover(m, now)
	case msgRequest:
		return s.request(m, now)
	case msgInform:
		return s.inform(m)
	case msgRelease:
		s.release(m, now)
	case msgDecline:
		s.decline(m, now)
	default:
		s.dropLocked(dropUnsupported, m)
		return nil, netip.AddrPort{}, nil, false
	}
	s.dropLocked(dropNoReply, m)
	return nil, netip.AddrPort{}, nil, false
}

// ourServerID reports whether the message names no server or this one. A
// message for another server is none of our business.
func (s *Server) ourServerID(m *message) bool {
	sid, ok := m.optAddr(optServerID)
	return !ok || sid == s.cfg.ServerIP
}

func (s *Server) discover(m *message, now time.Time) ([]byte, netip.AddrPort, *Lease, bool) {
	mac := m.mac()
	hint, _ := m.optAddr(optRequestedIP)
	e := s.table.Get(mac)
	if e == nil {
		if !s.known(m) {
			s.dropLocked(dropUnknownClient, m)
			return nil, netip.AddrPort{}, nil, false
		}
		var ok bool
		if e, ok = s.table.Allocate(mac, []netip.Addr{hint}, now, offerHold); !ok {
			// Warn once per episode: a guest cycling MAC addresses must
			// not be able to flood the log.
			if !s.poolFullLogged {
				s.log.Warn("dhcp4: no address to offer: lease pool is full", "mac", mac, "max_leases", s.cfg.MaxLeases)
				s.poolFullLogged = true
			}
			s.dropLocked(dropPoolExhausted, m)
			return nil, netip.AddrPort{}, nil, false
		}
		s.poolFullLogged = false
	} else {
		e.Reoffer(now, offerHold)
	}
	return s.reply(m, msgOffer, e.Addr, true), s.dst(m), nil, true
}

func (s *Server) request(m *message, now time.Time) ([]byte, netip.AddrPort, *Lease, bool) {
	mac := m.mac()
	if !s.ourServerID(m) {
		// The client chose another server's offer; free ours at once.
		if e := s.table.Get(mac); e != nil && !e.Bound && !e.Static {
			s.table.Remove(e)
		}
		s.dropLocked(dropOtherServer, m)
		return nil, netip.AddrPort{}, nil, false
	}
	_, selecting := m.optAddr(optServerID)
	want, ok := m.optAddr(optRequestedIP)
	if m.ciaddr.IsUnspecified() {
		if !ok {
			s.dropLocked(dropMissingAddr, m)
			return nil, netip.AddrPort{}, nil, false
		}
	} else {
		// RENEWING or REBINDING: the client is using ciaddr already.
		want = m.ciaddr
	}

	e := s.table.Get(mac)
	switch {
	case e != nil && e.Addr == want:
		// Offered, leased, expired but still ours, or static: grant.
	case e != nil || selecting:
		// The client asks for something other than what we gave it.
		return s.nak(m, "requested address is not the one offered or leased")
	case !s.plan.isHost(want):
		return s.nak(m, "requested address is not on this network")
	case !s.table.FreeFor(mac, want, now):
		return s.nak(m, "requested address is not available")
	case !s.known(m):
		s.dropLocked(dropUnknownClient, m)
		return nil, netip.AddrPort{}, nil, false
	default:
		// INIT-REBOOT or renewal from a client we have no record of (say,
		// slipway restarted): let it keep a free address.
		var ok bool
		if e, ok = s.table.Allocate(mac, []netip.Addr{want}, now, offerHold); !ok || e.Addr != want {
			if ok {
				s.table.Remove(e)
			}
			return s.nak(m, "requested address is not available")
		}
	}
	renewal := e.Grant(now, s.cfg.LeaseTime)
	if h, ok := m.opts[optHostname]; ok {
		e.Hostname = sanitizeHostname(h)
	}
	l := toLease(e)
	// Renewals are routine and the guest controls their rate: debug only.
	level := slog.LevelInfo
	if renewal {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "dhcp4: lease granted", "mac", mac, "addr", e.Addr, "hostname", e.Hostname, "renewal", renewal)
	return s.reply(m, msgAck, e.Addr, true), s.dst(m), &l, true
}

// known applies Config.Known to the client of m, which the table has no
// entry for.
func (s *Server) known(m *message) bool {
	return s.cfg.Known == nil || s.cfg.Known(net.HardwareAddr(m.chaddr[:hlenEthernet]))
}

func (s *Server) nak(m *message, why string) ([]byte, netip.AddrPort, *Lease, bool) {
	s.log.Debug("dhcp4: NAK", "mac", m.mac(), "reason", why)
	rb := newReply(m, msgNak, netip.Addr{})
	rb.add(optServerID, s.cfg.ServerIP.AsSlice())
	rb.add(optMessage, []byte(why))
	// A NAK is broadcast: the client may no longer hold its address.
	return rb.finish(), broadcastDst(), nil, true
}

func (s *Server) release(m *message, now time.Time) {
	if !s.ourServerID(m) {
		return
	}
	e := s.table.Get(m.mac())
	switch {
	case e == nil || e.Addr != m.ciaddr:
	case e.Static:
		// The binding stays, but the client no longer holds it: the
		// lease list must not go on showing the expiry of a lease
		// given back.
		e.Expires = time.Time{}
		e.Bound = false
	default:
		e.Release(now)
	}
}

func (s *Server) decline(m *message, now time.Time) {
	if !s.ourServerID(m) {
		return
	}
	want, ok := m.optAddr(optRequestedIP)
	e := s.table.Get(m.mac())
	if !ok || e == nil || e.Static || e.Addr != want {
		return
	}
	s.log.Debug("dhcp4: client declined address, holding it back", "mac", e.Key, "addr", e.Addr, "for", declineHold)
	s.table.Decline(e, now.Add(declineHold))
}

func (s *Server) inform(m *message) ([]byte, netip.AddrPort, *Lease, bool) {
	return s.reply(m, msgAck, netip.Addr{}, false), s.dst(m), nil, true
}

// dst is where a reply goes: a client that has an address (renewing,
// INFORM) gets unicast, any other client the limited broadcast, since it
// cannot receive unicast before it has configured its address.
func (s *Server) dst(m *message) netip.AddrPort {
	if !m.ciaddr.IsUnspecified() {
		return netip.AddrPortFrom(m.ciaddr, clientPort)
	}
	return broadcastDst()
}

// reply builds an OFFER or ACK. The essentials go first so they always fit
// the client's size limit; then whatever else the client asked for (option
// 55), or all we have when it did not say.
func (s *Server) reply(m *message, mtype byte, yiaddr netip.Addr, withLease bool) []byte {
	rb := newReply(m, mtype, yiaddr)
	rb.add(optServerID, s.cfg.ServerIP.AsSlice())
	if withLease {
		lt := s.cfg.LeaseTime
		rb.add(optLeaseTime, seconds(lt))
		rb.add(optRenewalTime, seconds(lt/2))
		rb.add(optRebindingTime, seconds(lt*7/8))
	}
	rb.add(optSubnetMask, s.plan.mask[:])
	if s.cfg.Router.IsValid() {
		rb.add(optRouter, s.cfg.Router.AsSlice())
	}
	if len(s.cfg.DNS) > 0 {
		var dns []byte
		for _, a := range s.cfg.DNS {
			dns = append(dns, a.AsSlice()...)
		}
		rb.add(optDNS, dns)
	}
	if s.cfg.MTU != 0 {
		rb.add(optInterfaceMTU, binary.BigEndian.AppendUint16(nil, uint16(s.cfg.MTU)))
	}

	if s.cfg.BootFile != "" {
		putAddr(rb.buf, offSiaddr, s.cfg.ServerIP)
		copy(rb.buf[offFile:offFile+127], s.cfg.BootFile)
	}
	extra := []byte{optDomainName, optDomainSearch, optHostname, optBroadcast, optTFTPServerName, optBootFileName}
	if prl, ok := m.opts[optParamRequest]; ok {
		extra = slices.DeleteFunc(slices.Clone(prl), func(c byte) bool { return !slices.Contains(extra, c) })
	}
	sent := make(map[byte]bool)
	for _, code := range extra {
		if sent[code] {
			continue
		}
		sent[code] = true
		if data := s.optional(code); data != nil {
			if err := rb.add(code, data); err != nil {
				s.log.Debug("dhcp4: option left out of reply", "option", code, "err", err)
			}
		}
	}
	return rb.finish()
}

// optional returns the data of an option sent only when configured and
// wanted, or nil.
func (s *Server) optional(code byte) []byte {
	switch code {
	case optDomainName:
		if s.cfg.Domain != "" {
			return []byte(s.cfg.Domain)
		}
	case optDomainSearch:
		return s.search
	case optHostname:
		if s.cfg.Hostname != "" {
			return []byte(s.cfg.Hostname)
		}
	case optBroadcast:
		return uintToAddr(s.plan.broadcast).AsSlice()
	case optTFTPServerName:
		if s.cfg.TFTPServerName != "" {
			return []byte(s.cfg.TFTPServerName)
		}
	case optBootFileName:
		if s.cfg.BootFile != "" {
			return []byte(s.cfg.BootFile)
		}
	}
	return nil
}

// sanitizeHostname keeps the characters of a hostname that are safe in
// logs and JSON, bounded in length.
func sanitizeHostname(b []byte) string {
	out := make([]byte, 0, min(len(b), maxHostnameLen))
	for _, c := range b {
		if len(out) == maxHostnameLen {
			break
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			out = append(out, c)
		}
	}
	return string(out)
}
