//go:build !linux

package pasta

import "errors"

// ReadHostNet needs netlink: pasta's mode is Linux-only.
func ReadHostNet(ifname string) (HostNet, error) {
	return HostNet{}, errors.New("pasta: network namespaces are Linux-only")
}
