// Package dhcp6 is slipway's DHCPv6 server (RFC 8415; DNS options from RFC
// 3646). It answers stateless clients (INFORMATION-REQUEST: DNS servers
// and search list) and stateful ones (IA_NA addresses, distinct per client
// and stable per DUID and IAID), with Rapid Commit for clients that ask.
// The message logic (Handle) is pure and separate from I/O (Serve), which
// runs on any net.PacketConn, so the same server works on the netstack's
// gateway and on host sockets in tests.
//
// slipway is the only server on the guest's link, so relay messages are
// dropped, and prefix delegation (IA_PD) and temporary addresses (IA_TA)
// are declined with NoPrefixAvail and NoAddrsAvail. Messages sent to the
// server by unicast are served like multicast ones.
package dhcp6

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/slipway-net/slipway/services/internal/dnsname"
	"github.com/slipway-net/slipway/services/internal/leases"
)

// infoRefreshTime is what the server tells stateless clients that ask
// (option 32): RFC 8415's default of a day, since what they get (slipway's
// own DNS address and search list) does not change while it runs.
const infoRefreshTime = 24 * time.Hour

// Lease is one IA_NA's address, as reported by Leases.
type Lease struct {
	DUID    string // the client's DUID, in hex
	IAID    uint32
	Addr    netip.Addr
	Expires time.Time // end of the valid lifetime
}

// Stats counts what the server did with the messages it was given.
// Received = Replied + the sum of Dropped.
type Stats struct {
	Received uint64 `counter:"received"`
	Replied  uint64 `counter:"replied"`
	// Dropped counts messages that got no reply, by reason: malformed
	// ("short", "bad-options", "bad-ia", ...), not for this server
	// ("other-server", "relay-message") or missing what RFC 8415 section 16
	// requires ("no-client-id", "no-server-id", ...).
	Dropped map[string]uint64 `counter:"dropped"`
	// Evicted counts IA_NAs dropped because their client address made
	// more than maxPerSource of them (the message itself was answered).
	Evicted uint64 `counter:"evicted"`
}

// Server is a DHCPv6 server for one prefix. It is safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	dns    []byte // option 23 data, encoded once
	search []byte // option 24 data, encoded once

	mu    sync.Mutex
	table *table
	stats Stats
	// poolFullLogged is set once "pool is full" was logged, until an
	// address is handed out again.
	poolFullLogged bool
	onLease        func(Lease)
	granted        []Lease // by the message being handled, for onLease
	// bySource lists, oldest first, the IA_NAs each client source address
	// made entries for. A client is one address sending from one DUID, so
	// a guest cycling DUIDs and IAIDs from one address (fuzz_dhcps6,
	// dhcpig -6) replaces its own entries instead of filling the pool.
	// Keys whose entry is gone are pruned lazily.
	bySource map[netip.Addr][]key
}

// maxPerSource bounds the IA_NAs one client address holds: enough for a
// host with a few interfaces' worth of IA_NAs and a changed DUID or two.
const maxPerSource = 8

// OnLease sets a function called each time a lease is granted or renewed.
// It runs outside the server's lock but on the serving goroutine, so it
// should return quickly. nil removes it.
func (s *Server) OnLease(fn func(Lease)) {
	s.mu.Lock()
	s.onLease = fn
	s.mu.Unlock()
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
	s := &Server{
		cfg:    cfg,
		log:    log,
		table:  newTable(cfg),
		stats:  Stats{Dropped: make(map[string]uint64)},
		search: dnsname.Encode(cfg.Search),

		bySource: make(map[netip.Addr][]key),
	}
	for _, a := range cfg.DNS {
		s.dns = append(s.dns, a.AsSlice()...)
	}
	return s, nil
}

// Leases returns the addresses granted and not yet expired, ordered by
// address.
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

// Handle processes one datagram received on port 547 from a client (from,
// normally its link-local address and port 546, is used in logs only) and
// returns the reply, which goes back to from. ok is false when no reply is
// due (malformed, not for this server); the reason is counted in Stats.
func (s *Server) Handle(req []byte, from netip.AddrPort) (reply []byte, ok bool) {
	reply, ok = s.handle(req, from)
	s.mu.Lock()
	granted, fn := s.granted, s.onLease
	s.granted = nil
	s.mu.Unlock()
	if fn != nil {
		for _, l := range granted {
			fn(l)
		}
	}
	return reply, ok
}

func (s *Server) handle(req []byte, from netip.AddrPort) (reply []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Received++
	m, err := parseMessage(req)
	if err != nil {
		reason := "malformed"
		var pe *parseError
		if errors.As(err, &pe) {
			reason = pe.reason
		}
		s.dropLocked(reason, nil, from)
		return nil, false
	}
	if reason := s.check(m); reason != "" {
		s.dropLocked(reason, m, from)
		return nil, false
	}
	reply = s.handleLocked(m, from)
	if reply == nil {
		return nil, false
	}
	s.stats.Replied++
	return reply, true
}

// dropLocked counts a message that gets no reply and logs why at debug
// level (guest input must not be able to flood the log).
func (s *Server) dropLocked(reason string, m *message, from netip.AddrPort) {
	s.stats.Dropped[reason]++
	if m != nil {
		s.log.Debug("dhcp6: no reply", "reason", reason, "type", m.mtype, "from", from)
	} else {
		s.log.Debug("dhcp6: dropped message", "reason", reason, "from", from)
	}
}

// check applies RFC 8415 section 16: which messages must name this server,
// must name none, and must identify the client. It returns the drop
// reason, or "" when the message is to be answered.
func (s *Server) check(m *message) string {
	ours := bytes.Equal(m.serverID, s.cfg.ServerDUID)
	switch m.mtype {
	case msgSolicit, msgConfirm, msgRebind:
		// Sent to all servers: naming one is a client error.
		if m.hasServerID {
			return dropUnexpectedSID
		}
	case msgRequest, msgRenew, msgRelease, msgDecline:
		if !m.hasServerID {
			return dropNoServerID
		}
		if !ours {
			return dropOtherServer
		}
	case msgInformationRequest:
		if m.hasServerID && !ours {
			return dropOtherServer
		}
		if len(m.ias) > 0 {
			return dropIAInInfoReq
		}
		// The only message a client may send without identifying itself.
		return ""
	}
	if m.clientID == nil {
		return dropNoClientID
	}
	return ""
}

func (s *Server) handleLocked(m *message, from netip.AddrPort) []byte {
	now := s.cfg.Now()
	switch m.mtype {
	case msgSolicit:
		return s.solicit(m, from, now)
	case msgRequest:
		return s.assign(m, msgReply, true, from, now)
	case msgRenew, msgRebind:
		return s.assign(m, msgReply, true, from, now)
	case msgConfirm:
		return s.confirm(m, from)
	case msgRelease:
		return s.release(m, now)
	case msgDecline:
		return s.decline(m, now)
	case msgInformationRequest:
		w := s.header(m, msgReply)
		s.config(w, m)
		return w.b
	}
	return nil
}

// header starts a reply: the client's and the server's identifiers.
func (s *Server) header(m *message, mtype byte) *builder {
	w := newBuilder(mtype, m.xid)
	if m.clientID != nil {
		w.add(optClientID, m.clientID)
	}
	w.add(optServerID, s.cfg.ServerDUID)
	return w
}

// config appends the configuration options: those the client asked for in
// its Option Request option, or all there are when it sent none.
func (s *Server) config(w *builder, m *message) {
	want := func(code uint16) bool { return !m.hasORO || slices.Contains(m.oro, code) }
	if len(s.dns) > 0 && want(optDNSServers) {
		w.add(optDNSServers, s.dns)
	}
	if len(s.search) > 0 && want(optDomainList) {
		w.add(optDomainList, s.search)
	}
	// Only stateless clients use the refresh time, and only those that
	// ask (RFC 8415 section 21.23).
	if m.mtype == msgInformationRequest && m.hasORO && slices.Contains(m.oro, optInfoRefreshTime) {
		w.add(optInfoRefreshTime, binary.BigEndian.AppendUint32(nil, seconds(infoRefreshTime)))
	}
}

func (s *Server) solicit(m *message, from netip.AddrPort, now time.Time) []byte {
	if m.rapidCommit {
		// Two messages instead of four (RFC 8415 section 18.3.1): the
		// addresses are committed now.
		return s.assign(m, msgReply, true, from, now)
	}
	return s.assign(m, msgAdvertise, false, from, now)
}

// assign answers a SOLICIT, REQUEST, RENEW or REBIND: an address for each
// IA_NA (bound if commit), a refusal for the IA types the server does not
// serve, and the configuration options.
//
// A RENEW or REBIND extends the IA_NA's binding, or creates one (say,
// after slipway restarted) keeping the client's address when it is free,
// as RFC 8415 section 18.3.4 allows. Addresses the client listed that are
// not its binding go back with lifetimes of zero.
func (s *Server) assign(m *message, mtype byte, commit bool, from netip.AddrPort, now time.Time) []byte {
	w := s.header(m, mtype)
	if mtype == msgAdvertise {
		// With the highest preference a client takes this ADVERTISE at
		// once instead of waiting a second for others (RFC 8415 section
		// 18.2.9): slipway is the only server on the link.
		w.add(optPreference, []byte{255})
	}
	if m.mtype == msgSolicit && commit {
		w.add(optRapidCommit)
	}
	renewing := m.mtype == msgRenew || m.mtype == msgRebind
	for _, a := range m.ias {
		var e *entry
		if a.kind == optIANA {
			e = s.bind(m.clientID, a, commit, from, now)
		}
		if e == nil {
			code, text := refusal(a.kind, renewing)
			s.refuseIA(w, a, code, text)
			continue
		}
		var stale []netip.Addr
		if renewing {
			for _, old := range a.addrs {
				if old != e.Addr && !slices.Contains(stale, old) {
					stale = append(stale, old)
				}
			}
		}
		s.grantIA(w, a, e.Addr, stale)
	}
	s.config(w, m)
	return w.b
}

// refusal is the status of an IA the server does not grant (RFC 8415
// section 18.3): a renewal finds no binding; otherwise there is no
// address to give, or the IA's kind is not served.
func refusal(kind uint16, renewing bool) (code uint16, text string) {
	switch {
	case renewing:
		return statusNoBinding, "no binding for this IA"
	case kind == optIATA:
		return statusNoAddrsAvail, "temporary addresses are not served"
	case kind == optIAPD:
		return statusNoPrefixAvail, "prefix delegation is not served"
	}
	return statusNoAddrsAvail, "no addresses available"
}

// bind finds or creates the entry for an IA_NA and, if commit, grants it
// for a valid lifetime from now. It returns nil when the pool is full.
func (s *Server) bind(duid []byte, a ia, commit bool, from netip.AddrPort, now time.Time) *entry {
	k := key{duid: string(duid), iaid: a.iaid}
	e := s.table.Get(k)
	if e == nil {
		src := from.Addr().WithZone("") // one client address, whichever link-local zone
		s.makeRoomFor(src)
		var ok bool
		if e, ok = s.table.Allocate(k, a.addrs, now, advertiseHold); !ok {
			// Warn once per episode: a guest cycling DUIDs must not be
			// able to flood the log.
			if !s.poolFullLogged {
				s.log.Warn("dhcp6: no address to hand out: lease pool is full", "from", from, "max_leases", s.cfg.MaxLeases)
				s.poolFullLogged = true
			}
			return nil
		}
		s.poolFullLogged = false
		s.bySource[src] = append(s.bySource[src], k)
	}
	if !commit {
		e.Reoffer(now, advertiseHold)
		return e
	}
	renewal := e.Grant(now, s.cfg.ValidLifetime)
	s.granted = append(s.granted, toLease(e))
	// Renewals are routine and the guest controls their rate: debug only.
	level := slog.LevelInfo
	if renewal {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "dhcp6: lease granted", "duid", hex.EncodeToString(duid), "iaid", a.iaid, "addr", e.Addr, "from", from, "renewal", renewal)
	return e
}

// makeRoomFor keeps src below maxPerSource entries, dropping its oldest,
// and keeps bySource itself bounded by the table's size.
func (s *Server) makeRoomFor(src netip.Addr) {
	live := func(ks []key) []key {
		out := ks[:0]
		for _, k := range ks {
			if s.table.Get(k) != nil {
				out = append(out, k)
			}
		}
		return out
	}
	if len(s.bySource) > 2*s.cfg.MaxLeases {
		for a, ks := range s.bySource {
			if ks = live(ks); len(ks) == 0 {
				delete(s.bySource, a)
			} else {
				s.bySource[a] = ks
			}
		}
	}
	ks := live(s.bySource[src])
	for len(ks) >= maxPerSource {
		if e := s.table.Get(ks[0]); e != nil {
			s.table.Remove(e)
			s.stats.Evicted++
			s.log.Debug("dhcp6: client address holds too many IA_NAs: its oldest is dropped", "from", src, "addr", e.Addr)
		}
		ks = ks[1:]
	}
	s.bySource[src] = ks
}

// grantIA appends an IA_NA holding addr with the configured lifetimes,
// and, with lifetimes of zero, the addresses in stale: ones the client
// holds but may no longer use (RFC 8415 section 18.3.4).
func (s *Server) grantIA(w *builder, a ia, addr netip.Addr, stale []netip.Addr) {
	pref := s.cfg.PreferredLifetime
	at := w.begin(optIANA)
	w.u32(a.iaid)
	w.u32(seconds(pref / 2))
	w.u32(seconds(pref * 4 / 5))
	iaAddr(w, addr, seconds(pref), seconds(s.cfg.ValidLifetime))
	for _, old := range stale {
		iaAddr(w, old, 0, 0)
	}
	w.end(at)
}

func iaAddr(w *builder, addr netip.Addr, preferred, valid uint32) {
	at := w.begin(optIAAddr)
	w.b = append(w.b, addr.AsSlice()...)
	w.u32(preferred)
	w.u32(valid)
	w.end(at)
}

// refuseIA appends an IA of a's kind holding only a status code.
func (s *Server) refuseIA(w *builder, a ia, code uint16, text string) {
	at := w.begin(a.kind)
	w.u32(a.iaid)
	if a.kind != optIATA {
		w.u32(0) // T1
		w.u32(0) // T2
	}
	w.status(code, text)
	w.end(at)
}

// confirm answers whether the client's addresses are still on this link
// (RFC 8415 section 18.3.3). With no addresses to judge, no reply is due.
func (s *Server) confirm(m *message, from netip.AddrPort) []byte {
	seen, onLink := false, true
	for _, a := range m.ias {
		for _, addr := range a.addrs {
			seen = true
			if !s.cfg.Prefix.Contains(addr) {
				onLink = false
			}
		}
	}
	if !seen {
		s.dropLocked(dropNoAddresses, m, from)
		return nil
	}
	w := s.header(m, msgReply)
	if onLink {
		w.status(statusSuccess, "addresses are on link")
	} else {
		w.status(statusNotOnLink, "addresses are not on link")
	}
	return w.b
}

// release frees the addresses a client gives back. The binding stays, so
// the client gets the same address when it asks again, but it is the
// first to be reclaimed (RFC 8415 section 18.3.7).
func (s *Server) release(m *message, now time.Time) []byte {
	return s.giveBack(m, func(e *entry) { e.Release(now) })
}

// decline takes addresses the client found in use (DAD) out of the pool
// for a while (RFC 8415 section 18.3.8).
func (s *Server) decline(m *message, now time.Time) []byte {
	return s.giveBack(m, func(e *entry) {
		s.log.Debug("dhcp6: client declined address, holding it back", "addr", e.Addr, "for", declineHold)
		s.table.Decline(e, now.Add(declineHold))
	})
}

// giveBack applies fn to each IA_NA binding whose address the client
// listed and answers with Success, plus NoBinding for each IA it knows
// nothing of.
func (s *Server) giveBack(m *message, fn func(*entry)) []byte {
	w := s.header(m, msgReply)
	w.status(statusSuccess, "")
	for _, a := range m.ias {
		e := s.table.Get(key{duid: string(m.clientID), iaid: a.iaid})
		if a.kind == optIANA && e != nil && slices.Contains(a.addrs, e.Addr) {
			fn(e)
			continue
		}
		s.refuseIA(w, a, statusNoBinding, "no binding for this IA")
	}
	return w.b
}

// seconds encodes a duration as the 32-bit seconds of DHCPv6 lifetimes
// and times; Config keeps them below 0xffffffff, "infinity".
func seconds(d time.Duration) uint32 { return uint32(d / time.Second) }
