package network

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/services/dhcp4"
	"github.com/slipway-net/slipway/services/dhcp6"
)

// StateVersion is the version of the State format this slipway writes
// and the newest it reads.
const StateVersion = 1

// Bounds on a State read from outside (a file, PUT /v1/state).
const (
	// MaxStateBytes bounds an encoded State.
	MaxStateBytes = 8 << 20
	maxStateItems = 1 << 16
)

// State is what a network knows that should survive a restart: its DHCP
// leases and the ports published at run time. Flows are not in it: their
// host sockets die with the process. Forwards of the configuration
// (--publish) are not either; the configuration publishes them again.
type State struct {
	// Version is StateVersion when written.
	Version int       `json:"version"`
	Saved   time.Time `json:"saved"`
	// DHCP4 are the DHCPv4 leases: static bindings and every lease
	// granted, expired ones included (they give a client its old
	// address back).
	DHCP4 []StateLease4 `json:"dhcp4_leases"`
	// DHCP6 are the DHCPv6 IA_NA leases.
	DHCP6 []StateLease6 `json:"dhcp6_leases"`
	// Forwards are the rules published at run time (the APIs).
	Forwards []config.PublishRule `json:"forwards"`
	// DNSRecords are the names and addresses added at run time (POST
	// /v1/dns/records); those of the configuration are not in it.
	DNSRecords []StateDNSRecord `json:"dns_records,omitempty"`
}

// StateDNSRecord is a name slipway's DNS answers and the addresses added
// to it at run time.
type StateDNSRecord struct {
	Name string       `json:"name"`
	IPs  []netip.Addr `json:"ips"`
}

// StateLease4 is a saved DHCPv4 lease.
type StateLease4 struct {
	MAC      string     `json:"mac"`
	Addr     netip.Addr `json:"addr"`
	Hostname string     `json:"hostname,omitempty"`
	Expires  time.Time  `json:"expires,omitzero"`
	Static   bool       `json:"static,omitempty"`
}

// StateLease6 is a saved DHCPv6 lease of one IA_NA.
type StateLease6 struct {
	DUID    string     `json:"duid"`
	IAID    uint32     `json:"iaid"`
	Addr    netip.Addr `json:"addr"`
	Expires time.Time  `json:"expires"`
}

// ErrStateVersion is a State written by a newer slipway, or with no
// version.
var ErrStateVersion = errors.New("unsupported state format version")

// ErrStateCorrupt is a State that does not decode or is inconsistent.
var ErrStateCorrupt = errors.New("corrupt state")

// DecodeState reads an encoded State strictly: a version this slipway
// reads, no unknown fields, nothing after it, every value well-formed.
func DecodeState(b []byte) (State, error) {
	if len(b) > MaxStateBytes {
		return State{}, fmt.Errorf("%w: larger than %d bytes", ErrStateCorrupt, MaxStateBytes)
	}
	// The version first, loosely, so a newer format is named as such
	// rather than as unknown fields.
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrStateCorrupt, err)
	}
	switch {
	case v.Version == nil:
		return State{}, fmt.Errorf("%w: no version field", ErrStateVersion)
	case *v.Version > StateVersion:
		return State{}, fmt.Errorf("%w: %d, written by a newer slipway (this one reads up to %d)", ErrStateVersion, *v.Version, StateVersion)
	case *v.Version < 1:
		return State{}, fmt.Errorf("%w: %d", ErrStateVersion, *v.Version)
	}
	var st State
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrStateCorrupt, err)
	}
	if dec.More() {
		return State{}, fmt.Errorf("%w: data after the object", ErrStateCorrupt)
	}
	if err := st.check(); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrStateCorrupt, err)
	}
	return st, nil
}

// check validates what decoding cannot: counts and address families.
func (st *State) check() error {
	if len(st.DHCP4)+len(st.DHCP6)+len(st.Forwards)+len(st.DNSRecords) > maxStateItems {
		return fmt.Errorf("more than %d entries", maxStateItems)
	}
	for _, l := range st.DHCP4 {
		if mac, err := net.ParseMAC(l.MAC); err != nil || len(mac) != 6 {
			return fmt.Errorf("dhcp4 lease %v: bad MAC %q", l.Addr, l.MAC)
		}
		if !l.Addr.Is4() {
			return fmt.Errorf("dhcp4 lease of %s: %v is not an IPv4 address", l.MAC, l.Addr)
		}
	}
	for _, l := range st.DHCP6 {
		if !l.Addr.Is6() || l.Addr.Is4In6() || l.Addr.Zone() != "" {
			return fmt.Errorf("dhcp6 lease of %s: %v is not an IPv6 address", l.DUID, l.Addr)
		}
	}
	for _, r := range st.Forwards {
		if _, err := config.ParsePublish(r.String()); err != nil {
			return fmt.Errorf("forward %s: %v", r, err)
		}
	}
	for _, r := range st.DNSRecords {
		if len(r.IPs) == 0 {
			return fmt.Errorf("dns record %q: no addresses", r.Name)
		}
		for _, a := range r.IPs {
			// The rules of --dns-record, so a restore cannot fail on a
			// name half-way through.
			if _, err := config.ParseDNSRecord(r.Name + "=" + a.String()); err != nil || a.Zone() != "" {
				return fmt.Errorf("dns record %q: %v: %v", r.Name, a, err)
			}
		}
	}
	return nil
}

// Encode writes st as indented JSON, the format DecodeState reads.
func (st State) Encode() ([]byte, error) {
	st.Version = StateVersion
	if st.DHCP4 == nil {
		st.DHCP4 = []StateLease4{}
	}
	if st.DHCP6 == nil {
		st.DHCP6 = []StateLease6{}
	}
	if st.Forwards == nil {
		st.Forwards = []config.PublishRule{}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	return append(b, '\n'), err
}

// State returns what the network would need to start again as it is.
func (n *Network) State() State {
	st := State{Version: StateVersion, Saved: time.Now().UTC(),
		DHCP4: []StateLease4{}, DHCP6: []StateLease6{}, Forwards: []config.PublishRule{}}
	for _, l := range n.svc.dhcp.Saved() {
		st.DHCP4 = append(st.DHCP4, StateLease4{MAC: l.MAC, Addr: l.Addr, Hostname: l.Hostname, Expires: l.Expires, Static: l.Static})
	}
	if n.svc.dhcp6 != nil {
		for _, l := range n.svc.dhcp6.Saved() {
			st.DHCP6 = append(st.DHCP6, StateLease6{DUID: l.DUID, IAID: l.IAID, Addr: l.Addr, Expires: l.Expires})
		}
	}
	configured := n.configuredRules()
	for _, f := range n.Forwards() {
		if !configured[f.PublishRule] {
			st.Forwards = append(st.Forwards, f.PublishRule)
		}
	}
	st.DNSRecords = n.addedRecords()
	return st
}

// addedRecords are the DNS names and addresses beyond those of the
// configuration, sorted by name.
func (n *Network) addedRecords() []StateDNSRecord {
	own := localNames(n.cfg)
	var out []StateDNSRecord
	for name, ips := range n.svc.dns.Records() {
		var added []netip.Addr
		for _, a := range ips {
			if !slices.Contains(own[name], a) {
				added = append(added, a)
			}
		}
		if len(added) > 0 {
			out = append(out, StateDNSRecord{Name: strings.TrimSuffix(name, "."), IPs: added})
		}
	}
	slices.SortFunc(out, func(a, b StateDNSRecord) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// AddDNSRecord adds addresses to a name slipway's DNS answers (see
// dns.Forwarder.AddRecord), a change of State.
func (n *Network) AddDNSRecord(name string, ips ...netip.Addr) error {
	if err := n.svc.dns.AddRecord(name, ips...); err != nil {
		return err
	}
	n.stateChanged()
	return nil
}

// configuredRules are the --publish rules, completed as Publish does.
func (n *Network) configuredRules() map[config.PublishRule]bool {
	m := map[config.PublishRule]bool{}
	for _, r := range n.cfg.Publish {
		if rr, err := n.cfg.Resolve(r); err == nil {
			m[rr] = true
		}
	}
	return m
}

// Restore takes a saved State into the network, all or none: the leases
// (each client gets its old address again), then the forwards (published
// again; one already published as it is, by the configuration, is left
// alone). A lease that clashes with the network's own, a forward that
// cannot be bound: an error, and nothing changed.
func (n *Network) Restore(st State) error {
	if err := st.check(); err != nil {
		return fmt.Errorf("%w: %v", ErrStateCorrupt, err)
	}
	if len(st.DHCP6) > 0 && n.svc.dhcp6 == nil {
		return fmt.Errorf("restore: %w: the state has DHCPv6 leases and IPv6 is off", ErrRestoreConflict)
	}
	// Forwards first: they are the part that can be undone.
	published := map[config.PublishRule]bool{}
	for _, f := range n.Forwards() {
		published[f.PublishRule] = true
	}
	var added []uint64
	undo := func() {
		for _, id := range added {
			n.Unpublish(id)
		}
	}
	for _, r := range st.Forwards {
		rr, err := n.cfg.Resolve(r)
		if err != nil {
			undo()
			return fmt.Errorf("restore forward %s: %w", r, err)
		}
		if published[rr] {
			continue
		}
		fw, err := n.Publish(r)
		if err != nil {
			undo()
			return fmt.Errorf("restore: %w", err)
		}
		added = append(added, fw.ID)
	}
	l4 := make([]dhcp4.Lease, 0, len(st.DHCP4))
	for _, l := range st.DHCP4 {
		l4 = append(l4, dhcp4.Lease{MAC: l.MAC, Addr: l.Addr, Hostname: l.Hostname, Expires: l.Expires, Static: l.Static})
	}
	l6 := make([]dhcp6.Lease, 0, len(st.DHCP6))
	for _, l := range st.DHCP6 {
		l6 = append(l6, dhcp6.Lease{DUID: l.DUID, IAID: l.IAID, Addr: l.Addr, Expires: l.Expires})
	}
	// Both tables are checked before either changes; a lease granted in
	// between (a fresh network has no guests yet) fails the second
	// check, and the v6 leases restored stay.
	if err := n.svc.dhcp.Restore(l4, false); err != nil {
		undo()
		return fmt.Errorf("restore: %w", err)
	}
	if n.svc.dhcp6 != nil {
		if err := n.svc.dhcp6.Restore(l6, true); err != nil {
			undo()
			return fmt.Errorf("restore: %w", err)
		}
	}
	if err := n.svc.dhcp.Restore(l4, true); err != nil {
		undo()
		return fmt.Errorf("restore: %w", err)
	}
	// Last: a name is only ever added to, and merging is idempotent.
	for _, r := range st.DNSRecords {
		if err := n.svc.dns.AddRecord(r.Name, r.IPs...); err != nil {
			return fmt.Errorf("restore dns record %q: %w", r.Name, err)
		}
	}
	n.stateChanged()
	return nil
}

// OnStateChange sets a function called (outside any lock, on the goroutine
// that made the change) whenever what State returns changed: a lease
// granted or renewed, a forward added or removed, a restore. It should
// only note that a save is due. nil removes it.
func (n *Network) OnStateChange(fn func()) {
	if fn == nil {
		n.stateHook.Store(nil)
		return
	}
	n.stateHook.Store(&fn)
}

func (n *Network) stateChanged() {
	if fn := n.stateHook.Load(); fn != nil {
		(*fn)()
	}
}

type stateHook = atomic.Pointer[func()]

// ErrRestoreConflict is a saved lease that clashes with one the network
// holds.
var ErrRestoreConflict = dhcp4.ErrRestore
