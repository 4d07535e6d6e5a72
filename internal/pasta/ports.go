package pasta

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PortSpec is one -t/-u/-T/-U argument: none, or ports on an optional
// address, each maybe mapped to other ports, some excluded, some only
// while something listens on them (auto).
type PortSpec struct {
	None bool
	// Addr, if valid, is the one address to bind; Iface its %IFACE.
	Addr  netip.Addr
	Iface string
	// All includes every non-ephemeral port (pasta's "all", or a list of
	// exclusions only).
	All bool
	// Auto forwards only the ports bound on the other side.
	Auto     bool
	Include  []PortRange
	Excludes []PortRange
}

// PortRange is First..Last mapped to To..To+(Last-First).
type PortRange struct {
	First, Last, To uint16
}

// ParsePortSpec parses pasta's port specification:
// none | [ADDR[%IFACE]/]ITEM[,ITEM...], where ITEM is all, auto,
// PORT[-PORT][:PORT[-PORT]] or ~PORT[-PORT].
func ParsePortSpec(s string) (PortSpec, error) {
	var p PortSpec
	if s == "none" {
		p.None = true
		return p, nil
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		addr := s[:i]
		s = s[i+1:]
		if a, ifc, ok := strings.Cut(addr, "%"); ok {
			if ifc == "" {
				return p, errors.New("empty interface name")
			}
			addr, p.Iface = a, ifc
		}
		addr = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
		if addr != "" {
			a, err := netip.ParseAddr(addr)
			if err != nil {
				return p, fmt.Errorf("address %q: %w", addr, err)
			}
			p.Addr = a.Unmap()
		}
	}
	if s == "" {
		return p, errors.New("no ports")
	}
	for _, item := range strings.Split(s, ",") {
		switch {
		case item == "all":
			p.All = true
		case item == "auto":
			p.Auto = true
		case strings.HasPrefix(item, "~"):
			first, last, err := portRange(item[1:])
			if err != nil {
				return p, err
			}
			p.Excludes = append(p.Excludes, PortRange{First: first, Last: last, To: first})
		default:
			from, to, mapped := strings.Cut(item, ":")
			first, last, err := portRange(from)
			if err != nil {
				return p, err
			}
			r := PortRange{First: first, Last: last, To: first}
			if mapped {
				tf, tl, err := portRange(to)
				if err != nil {
					return p, err
				}
				if tl-tf != last-first {
					return p, fmt.Errorf("%s: ranges of different sizes", item)
				}
				r.To = tf
			}
			p.Include = append(p.Include, r)
		}
	}
	if len(p.Include) == 0 && !p.Auto && len(p.Excludes) > 0 {
		p.All = true
	}
	return p, nil
}

func portRange(s string) (first, last uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	first, err = port(a)
	if err != nil {
		return 0, 0, err
	}
	last = first
	if isRange {
		if last, err = port(b); err != nil {
			return 0, 0, err
		}
		if last < first {
			return 0, 0, fmt.Errorf("%s: range ends before it starts", s)
		}
	}
	return first, last, nil
}

func port(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(n), nil
}

// PortMap is a set of forwarded ports: for each port, the port it leads
// to on the other side, 0 when it is not forwarded.
type PortMap [65536]uint16

// Map resolves the spec to the ports it forwards. ephemeral is the first
// ephemeral port (ports from it on are not part of "all"). With Auto and
// nothing else given, every port is a candidate.
func (p PortSpec) Map(ephemeral uint16) *PortMap {
	var m PortMap
	if p.None {
		return &m
	}
	if p.All || p.Auto && len(p.Include) == 0 {
		end := 65535
		if p.All {
			end = int(ephemeral) - 1
		}
		for i := 1; i <= end; i++ {
			m[i] = uint16(i)
		}
	}
	for _, r := range p.Include {
		for i := int(r.First); i <= int(r.Last); i++ {
			m[i] = r.To + uint16(i-int(r.First))
		}
	}
	for _, r := range p.Excludes {
		for i := int(r.First); i <= int(r.Last); i++ {
			m[i] = 0
		}
	}
	return &m
}

// Runs turns the forwarded ports of m for which keep says true (nil keeps
// all) into ranges that map port for port.
func (m *PortMap) Runs(keep func(port uint16) bool) []PortRange {
	var out []PortRange
	for i := 1; i < len(m); i++ {
		to := m[i]
		if to == 0 || keep != nil && !keep(uint16(i)) {
			continue
		}
		if n := len(out); n > 0 {
			r := &out[n-1]
			if int(r.Last)+1 == i && int(r.To)+int(r.Last-r.First)+1 == int(to) {
				r.Last = uint16(i)
				continue
			}
		}
		out = append(out, PortRange{First: uint16(i), Last: uint16(i), To: to})
	}
	return out
}

// Count is how many ports m forwards.
func (m *PortMap) Count() int {
	n := 0
	for _, to := range m[1:] {
		if to != 0 {
			n++
		}
	}
	return n
}

// MarshalJSON writes m as its runs ([[first, last, to], ...]): a plan goes
// to the engine as JSON, and 65536 numbers per forward would be most of
// it.
func (m *PortMap) MarshalJSON() ([]byte, error) {
	runs := [][3]uint16{}
	for _, r := range m.Runs(nil) {
		runs = append(runs, [3]uint16{r.First, r.Last, r.To})
	}
	return json.Marshal(runs)
}

// UnmarshalJSON reads what MarshalJSON wrote; a run that is not a range of
// ports, or maps past port 65535, is an error.
func (m *PortMap) UnmarshalJSON(b []byte) error {
	var runs [][3]uint16
	if err := json.Unmarshal(b, &runs); err != nil {
		return err
	}
	*m = PortMap{}
	for _, r := range runs {
		first, last, to := r[0], r[1], r[2]
		if first == 0 || last < first || to == 0 || int(to)+int(last-first) > 65535 {
			return fmt.Errorf("port map: bad run %v", r)
		}
		for i := int(first); i <= int(last); i++ {
			m[i] = to + uint16(i-int(first))
		}
	}
	return nil
}
