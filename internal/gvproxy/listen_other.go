//go:build !linux

package gvproxy

import (
	"errors"
	"net"
	"net/url"
)

// listenVsock: AF_VSOCK listeners are built for Linux only.
func listenVsock(u *url.URL) (net.Listener, error) {
	return nil, errors.New("vsock: only on Linux")
}
