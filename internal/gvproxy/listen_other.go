//go:build !linux

package gvproxy

import (
	"errors"
	"net"
	"net/url"
	"os"
)

// listenVsock: AF_VSOCK listeners are built for Linux only.
func listenVsock(u *url.URL) (net.Listener, error) {
	return nil, errors.New("vsock: only on Linux")
}

func vsockFile(ln net.Listener) (*os.File, error) {
	return nil, errors.New("vsock: only on Linux")
}

func vsockFromFile(*os.File) (net.Listener, error) {
	return nil, errors.New("vsock: only on Linux")
}
