package gvproxy

import (
	"fmt"
	"net"
	"net/url"

	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/internal/hostnet"
)

// listenURL opens an API endpoint: unix://PATH (a stale socket file is
// replaced), tcp://HOST:PORT, vsock://[CID]:PORT (Linux).
func listenURL(u *url.URL) (net.Listener, error) {
	switch u.Scheme {
	case "unix":
		path := urlPath(u)
		if err := endpoint.ClaimSocketPath(path); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return hostnet.Listen("unix", path)
	case "tcp":
		return hostnet.Listen("tcp", u.Host)
	case "vsock":
		return listenVsock(u)
	}
	return nil, fmt.Errorf("scheme %q: want unix, tcp or vsock", u.Scheme)
}
