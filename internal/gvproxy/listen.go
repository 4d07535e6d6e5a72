package gvproxy

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"time"
)

// listenURL opens an API endpoint: unix://PATH (a stale socket file is
// replaced), tcp://HOST:PORT, vsock://[CID]:PORT (Linux).
func listenURL(u *url.URL) (net.Listener, error) {
	switch u.Scheme {
	case "unix":
		path := urlPath(u)
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("%s: another process is serving on it", path)
			}
			os.Remove(path)
		}
		return net.Listen("unix", path)
	case "tcp":
		return net.Listen("tcp", u.Host)
	case "vsock":
		return listenVsock(u)
	}
	return nil, fmt.Errorf("scheme %q: want unix, tcp or vsock", u.Scheme)
}
