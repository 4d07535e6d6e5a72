// Package cfgcheck holds the checks the services' Config validation
// shares, so that the same mistake gets the same error from each service.
package cfgcheck

import (
	"fmt"
	"net/netip"

	"github.com/slipway-net/slipway/services/internal/dnsname"
)

// OrDefault returns v, or def when v is zero (unset). A negative v is
// refused with an error naming field and value; the caller adds which
// service it is.
func OrDefault[T ~int | ~int64](field string, v, def T) (T, error) {
	switch {
	case v < 0:
		return v, fmt.Errorf("%s %v is negative", field, v)
	case v == 0:
		return def, nil
	}
	return v, nil
}

// IsIPv6 reports whether a is a plain IPv6 address: not IPv4, not
// IPv4-mapped, no zone. Guests are told such addresses on the wire, where
// a zone means nothing and a mapped address is not IPv6.
func IsIPv6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && a.Zone() == ""
}

// IPv6Unicast checks that each of addrs (DNS servers, say, as field names
// them) is an IPv6 unicast address a guest can be told to use.
func IPv6Unicast(field string, addrs []netip.Addr) error {
	for _, a := range addrs {
		if !IsIPv6(a) || a.IsUnspecified() || a.IsMulticast() {
			return fmt.Errorf("%s %v is not an IPv6 unicast address", field, a)
		}
	}
	return nil
}

// Names checks each of names (a search list, say) as a domain name; the
// error names field.
func Names(field string, names []string) error {
	for _, n := range names {
		if err := dnsname.Check(n); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	return nil
}
