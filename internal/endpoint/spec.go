// Package endpoint turns endpoint specifications such as
// "stream:unix:/run/vm.sock" into listeners that yield guest links.
package endpoint

import (
	"fmt"
	"strings"
)

// Kind is a frame transport.
type Kind string

// Transports slipway speaks.
const (
	// Stream frames each Ethernet frame with a 4-byte big-endian length
	// (QEMU -netdev stream/socket, libkrun unixstream, socket_vmnet).
	Stream Kind = "stream"
	// Dgram carries one frame per datagram (QEMU -netdev dgram, vfkit).
	Dgram Kind = "dgram"
	// Seqpacket carries one frame per message (UML bess, bhyve).
	Seqpacket Kind = "seqpacket"
	// VhostUser hands the guest's virtqueues over a unix socket (QEMU,
	// cloud-hypervisor and crosvm -netdev vhost-user); frames travel in
	// the VM's shared memory.
	VhostUser Kind = "vhost-user"
)

// Spec is a parsed KIND:NETWORK:ADDRESS endpoint.
type Spec struct {
	Kind    Kind
	Network string // "unix" or "tcp"
	Address string // a path, or HOST:PORT
	// Queues is how many queue pairs a vhost-user device offers (1 if
	// 0); other kinds ignore it.
	Queues int
	// MTU is the network's MTU, which a vhost-user device reports
	// (VIRTIO_NET_F_MTU) if set; other kinds ignore it.
	MTU int
}

func (s Spec) String() string {
	if s.Kind == VhostUser {
		return fmt.Sprintf("%s:%s", s.Kind, s.Address)
	}
	return fmt.Sprintf("%s:%s:%s", s.Kind, s.Network, s.Address)
}

// Networks each kind may use.
var kindNetworks = map[Kind][]string{
	Stream:    {"unix", "tcp"},
	Dgram:     {"unix"},
	Seqpacket: {"unix"},
	VhostUser: {"unix"},
}

// Parse reads KIND:NETWORK:ADDRESS. The address may itself contain colons
// (tcp host:port, IPv6 literals in brackets). vhost-user, which runs over
// unix sockets only, is vhost-user:PATH (vhost-user:unix:PATH too).
func Parse(s string) (Spec, error) {
	if path, ok := strings.CutPrefix(s, string(VhostUser)+":"); ok {
		path = strings.TrimPrefix(path, "unix:")
		if path == "" {
			return Spec{}, fmt.Errorf("endpoint %q: want vhost-user:PATH, e.g. vhost-user:/run/vm.sock", s)
		}
		return Spec{Kind: VhostUser, Network: "unix", Address: path}, nil
	}
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || parts[2] == "" {
		return Spec{}, fmt.Errorf("endpoint %q: want KIND:NETWORK:ADDRESS, e.g. stream:unix:/run/vm.sock", s)
	}
	spec := Spec{Kind: Kind(parts[0]), Network: parts[1], Address: parts[2]}
	nets, ok := kindNetworks[spec.Kind]
	if !ok {
		return Spec{}, fmt.Errorf("endpoint %q: unknown kind %q (want stream, dgram, seqpacket or vhost-user)", s, parts[0])
	}
	for _, n := range nets {
		if n == spec.Network {
			return spec, nil
		}
	}
	return Spec{}, fmt.Errorf("endpoint %q: kind %s does not run over %q (want %s)", s, spec.Kind, spec.Network, strings.Join(nets, " or "))
}
