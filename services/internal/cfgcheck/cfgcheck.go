// Package cfgcheck holds the checks the services' Config validation
// shares, so that the same mistake gets the same error from each service.
package cfgcheck

import (
	"fmt"
	"net/netip"
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
