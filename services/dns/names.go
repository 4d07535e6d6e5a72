package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Bounds on the names the forwarder is told at run time (the API adds
// them): each is a lookup on every query.
const (
	MaxZones   = 256
	MaxRecords = 4096
	// maxRegexp bounds a record's pattern; RE2 matches in linear time.
	maxRegexp = 1024
)

// ErrTooManyNames is the error for a name or zone past MaxRecords.
var ErrTooManyNames = errors.New("dns: too many names")

// Zone is a domain the forwarder answers itself, as gvproxy's DNS zones
// are: a name under it gets the first record matching it (by Name, the
// part before the zone, or by Regexp over that part), else DefaultIP,
// else NXDOMAIN. The zone's own name is not in it. JSON is gvproxy's.
type Zone struct {
	Name      string     `json:"name"`
	Records   []Record   `json:"records"`
	DefaultIP netip.Addr `json:"defaultIP,omitzero"`
}

// Record is one name of a Zone.
type Record struct {
	Name   string     `json:"name,omitempty"`
	IP     netip.Addr `json:"ip"`
	Regexp string     `json:"regexp,omitempty"`
}

// names is what the forwarder answers itself: exact names (Config.Local
// and those added since) and zones. It is replaced whole on a change.
type names struct {
	local map[string][]netip.Addr
	zones []zone
}

type zone struct {
	Zone
	suffix string    // "." + canonical name, the form queries end in
	match  []matcher // Records[i]'s is match[i]
}

// matcher is how a record is matched, prepared once rather than on each
// query: its name lower-cased (queries are), its pattern compiled.
type matcher struct {
	name string // "" if the record has none
	re   *regexp.Regexp
}

// lookup finds a local answer for a canonical name: the addresses, or
// nxdomain, or ok false when the name is not slipway's to answer.
func (n *names) lookup(name string) (addrs []netip.Addr, nxdomain, ok bool) {
	if a, ok := n.local[name]; ok {
		return a, false, true
	}
	for _, z := range n.zones {
		if !strings.HasSuffix(name, z.suffix) {
			continue
		}
		rel := strings.TrimSuffix(name, z.suffix)
		for i, m := range z.match {
			if m.name != "" && m.name == rel || m.re != nil && m.re.MatchString(rel) {
				return []netip.Addr{z.Records[i].IP}, false, true
			}
		}
		if z.DefaultIP.IsValid() {
			return []netip.Addr{z.DefaultIP}, false, true
		}
		return nil, true, true
	}
	return nil, false, false
}

func (n *names) count() int {
	c := len(n.local)
	for _, z := range n.zones {
		c += len(z.Records)
	}
	return c
}

// compile checks a zone and prepares it for lookups.
func compileZone(z Zone) (zone, error) {
	key, err := canonicalName(z.Name)
	if err != nil {
		return zone{}, fmt.Errorf("dns: zone %q: %w", z.Name, err)
	}
	c := zone{Zone: z, suffix: "." + key}
	c.Name = key
	c.Records = slices.Clone(z.Records)
	c.DefaultIP = z.DefaultIP.WithZone("").Unmap()
	for i, r := range c.Records {
		var re *regexp.Regexp
		switch {
		case !r.IP.IsValid():
			return zone{}, fmt.Errorf("dns: zone %s: record %q has no valid ip", key, r.Name)
		case r.Name == "" && r.Regexp == "":
			return zone{}, fmt.Errorf("dns: zone %s: a record needs a name or a regexp", key)
		case len(r.Regexp) > maxRegexp:
			return zone{}, fmt.Errorf("dns: zone %s: regexp longer than %d bytes", key, maxRegexp)
		case r.Regexp != "":
			if re, err = regexp.Compile(r.Regexp); err != nil {
				return zone{}, fmt.Errorf("dns: zone %s: %w", key, err)
			}
		}
		if r.Name != "" {
			if err := checkLabelPath(r.Name); err != nil {
				return zone{}, fmt.Errorf("dns: zone %s: record %q: %w", key, r.Name, err)
			}
		}
		c.Records[i].IP = r.IP.WithZone("").Unmap()
		c.match = append(c.match, matcher{name: lowerASCII(r.Name), re: re})
	}
	return c, nil
}

// checkLabelPath accepts a name relative to a zone: dot-separated labels.
func checkLabelPath(s string) error {
	if strings.HasSuffix(s, ".") {
		return errors.New("a record's name is relative to its zone: no trailing dot")
	}
	_, err := canonicalName(s)
	return err
}

// AddZone merges z into the zone of its name, as gvproxy's
// /services/dns/add does: z's records go first (they win over the zone's
// older ones) and its DefaultIP replaces the zone's; a new name makes a
// new zone.
func (f *Forwarder) AddZone(z Zone) error {
	c, err := compileZone(z)
	if err != nil {
		return err
	}
	f.namesMu.Lock()
	defer f.namesMu.Unlock()
	old := f.names.Load()
	next := &names{local: old.local, zones: slices.Clone(old.zones)}
	i := slices.IndexFunc(next.zones, func(o zone) bool { return o.Name == c.Name })
	if i >= 0 {
		merged := c
		merged.Records = append(slices.Clone(c.Records), next.zones[i].Records...)
		merged.match = append(slices.Clone(c.match), next.zones[i].match...)
		next.zones[i] = merged
	} else {
		if len(next.zones) >= MaxZones {
			return fmt.Errorf("dns: more than %d zones", MaxZones)
		}
		next.zones = append(next.zones, c)
	}
	if next.count() > MaxRecords {
		return fmt.Errorf("%w (more than %d)", ErrTooManyNames, MaxRecords)
	}
	f.names.Store(next)
	return nil
}

// Zones lists the zones, in the order they are looked at.
func (f *Forwarder) Zones() []Zone {
	n := f.names.Load()
	out := make([]Zone, 0, len(n.zones))
	for _, z := range n.zones {
		out = append(out, Zone{Name: z.Name, Records: slices.Clone(z.Records), DefaultIP: z.DefaultIP})
	}
	return out
}

// AddRecord adds addresses to an exact name (A and AAAA answers), the
// name created if new.
func (f *Forwarder) AddRecord(name string, addrs ...netip.Addr) error {
	key, err := canonicalName(name)
	if err != nil {
		return fmt.Errorf("dns: name: %w", err)
	}
	for _, a := range addrs {
		if !a.IsValid() {
			return fmt.Errorf("dns: name %q: invalid address", name)
		}
	}
	f.namesMu.Lock()
	defer f.namesMu.Unlock()
	old := f.names.Load()
	next := &names{local: make(map[string][]netip.Addr, len(old.local)+1), zones: old.zones}
	for k, v := range old.local {
		next.local[k] = v
	}
	merged := slices.Clone(next.local[key])
	for _, a := range addrs {
		if a = a.WithZone("").Unmap(); !slices.Contains(merged, a) {
			merged = append(merged, a)
		}
	}
	next.local[key] = merged
	if next.count() > MaxRecords {
		return fmt.Errorf("%w (more than %d)", ErrTooManyNames, MaxRecords)
	}
	f.names.Store(next)
	return nil
}

// Records lists the exact names and their addresses.
func (f *Forwarder) Records() map[string][]netip.Addr {
	n := f.names.Load()
	out := make(map[string][]netip.Addr, len(n.local))
	for k, v := range n.local {
		out[k] = slices.Clone(v)
	}
	return out
}

// SetUpstreams replaces the upstreams (the host's resolvers changed);
// queries already on their way finish with the old ones.
func (f *Forwarder) SetUpstreams(ups []netip.AddrPort) error {
	for _, up := range ups {
		if !up.IsValid() || up.Port() == 0 || up.Addr().IsUnspecified() {
			return fmt.Errorf("dns: upstream %v is not an address and port", up)
		}
	}
	c := slices.Clone(ups)
	f.upstreams.Store(&c)
	return nil
}

// Upstreams are the resolvers queries go to now.
func (f *Forwarder) Upstreams() []netip.AddrPort { return slices.Clone(*f.upstreams.Load()) }
