// Package bhyve is slipway's side of FreeBSD bhyve's slirp network
// backend. bhyve starts /usr/libexec/bhyve-slirp-helper -S FD with one end
// of a SOCK_SEQPACKET socketpair, sends the backend's configuration as a
// packed nvlist in the first message, then exchanges one Ethernet frame per
// message; the helper exits when bhyve hangs up. This package reads and
// checks that configuration; the slipway command does the rest.
package bhyve

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/nvlist"
)

// Config is what the helper honours of bhyve's configuration.
type Config struct {
	// VMName names the VM in logs.
	VMName string
	// Open lifts the restriction: by default the guest reaches nothing
	// but slipway's own services and its forwarded ports.
	Open bool
	// MTU of the guest network, 0 if bhyve did not say.
	MTU int
	// Forwards are the host ports forwarded into the guest.
	Forwards []Forward
}

// Forward is one hostfwd rule: connections or datagrams to Host reach
// Guest. Host's address may be unspecified (all addresses); Guest's may be
// the zero Addr, meaning the guest's first DHCP address, as in libslirp.
type Forward struct {
	Proto config.Proto // TCP or UDP
	Host  netip.AddrPort
	Guest netip.AddrPort
}

func (f Forward) String() string {
	guest := ""
	if f.Guest.Addr().IsValid() {
		guest = f.Guest.Addr().String()
	}
	return fmt.Sprintf("%s:%s:%d-%s:%d", f.Proto, f.Host.Addr(), f.Host.Port(), guest, f.Guest.Port())
}

// ErrConfig is wrapped by every error about a value in the configuration.
var ErrConfig = errors.New("bad bhyve slirp configuration")

// FromList takes the configuration out of bhyve's nvlist. bhyve's config
// tree stores every value as a string ("open" as "true"); booleans and
// numbers of libnv's own types are accepted too. Keys meant for bhyve
// itself (backend, mac, ...) are ignored.
func FromList(l *nvlist.List) (Config, error) {
	var c Config
	var err error
	if c.VMName, err = getString(l, "vmname"); err != nil {
		return c, err
	}
	if p, ok := l.Get("open"); ok {
		if c.Open, err = boolValue(p); err != nil {
			return c, err
		}
	}
	if p, ok := l.Get("mtu"); ok {
		if c.MTU, err = mtuValue(p); err != nil {
			return c, err
		}
	}
	rules, err := getString(l, "hostfwd")
	if err != nil {
		return c, err
	}
	if rules != "" {
		if c.Forwards, err = ParseHostfwd(rules); err != nil {
			return c, err
		}
	}
	return c, nil
}

func getString(l *nvlist.List, name string) (string, error) {
	p, ok := l.Get(name)
	if !ok {
		return "", nil
	}
	s, ok := p.Value.(string)
	if !ok {
		return "", fmt.Errorf("%w: %s is a %s, want a string", ErrConfig, name, p.Type)
	}
	return s, nil
}

// boolValue reads a boolean the way bhyve's config code does.
func boolValue(p nvlist.Pair) (bool, error) {
	switch v := p.Value.(type) {
	case bool:
		return v, nil
	case string:
		switch strings.ToLower(v) {
		case "true", "on", "yes", "1":
			return true, nil
		case "false", "off", "no", "0":
			return false, nil
		}
		return false, fmt.Errorf("%w: %s = %q, want true or false", ErrConfig, p.Name, v)
	}
	return false, fmt.Errorf("%w: %s is a %s, want a boolean", ErrConfig, p.Name, p.Type)
}

func mtuValue(p nvlist.Pair) (int, error) {
	var n uint64
	switch v := p.Value.(type) {
	case uint64:
		n = v
	case string:
		var err error
		if n, err = strconv.ParseUint(v, 10, 32); err != nil {
			return 0, fmt.Errorf("%w: mtu = %q is not a number", ErrConfig, v)
		}
	default:
		return 0, fmt.Errorf("%w: mtu is a %s, want a number", ErrConfig, p.Type)
	}
	if n == 0 || n > 65535 {
		return 0, fmt.Errorf("%w: mtu = %d is out of range", ErrConfig, n)
	}
	return int(n), nil
}

// ParseHostfwd reads bhyve's hostfwd value: rules
// proto:hostaddr:hostport-guestaddr:guestport separated by ';'. Addresses
// may be empty (any host address; the guest's first address). Empty rules
// (a trailing ';') are skipped.
func ParseHostfwd(s string) ([]Forward, error) {
	var out []Forward
	for _, rule := range strings.Split(s, ";") {
		if strings.TrimSpace(rule) == "" {
			continue
		}
		f, err := parseRule(rule)
		if err != nil {
			return nil, fmt.Errorf("%w: hostfwd rule %q: %v", ErrConfig, rule, err)
		}
		out = append(out, f)
	}
	return out, nil
}

func parseRule(rule string) (Forward, error) {
	proto, rest, ok := strings.Cut(rule, ":")
	if !ok {
		return Forward{}, errors.New("want proto:hostaddr:hostport-guestaddr:guestport")
	}
	if p := config.Proto(proto); p != config.TCP && p != config.UDP {
		return Forward{}, fmt.Errorf("protocol %q: want tcp or udp", proto)
	}
	host, guest, ok := strings.Cut(rest, "-")
	if !ok {
		return Forward{}, errors.New("no '-' between the host and the guest side")
	}
	f := Forward{Proto: config.Proto(proto)}
	var err error
	if f.Host, err = parseEnd(host, netip.IPv4Unspecified()); err != nil {
		return Forward{}, fmt.Errorf("host side %q: %w", host, err)
	}
	if f.Guest, err = parseEnd(guest, netip.Addr{}); err != nil {
		return Forward{}, fmt.Errorf("guest side %q: %w", guest, err)
	}
	return f, nil
}

// parseEnd reads [ADDR]:PORT with an IPv4 address (libslirp's hostfwd is
// IPv4 only); an empty address is def.
func parseEnd(s string, def netip.Addr) (netip.AddrPort, error) {
	addr, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, errors.New("want ADDR:PORT (ADDR may be empty)")
	}
	a := def
	if addr != "" {
		var err error
		if a, err = netip.ParseAddr(addr); err != nil || !a.Is4() {
			return netip.AddrPort{}, fmt.Errorf("%q is not an IPv4 address", addr)
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("port %q: want 1..65535", port)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}
