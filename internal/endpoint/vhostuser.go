package endpoint

import (
	"log/slog"
	"net"

	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/link/vhostuser"
)

// vhostUserListener serves vhost-user front-ends that connect to a socket
// slipway owns (QEMU -chardev socket,path=...,reconnect=1,
// cloud-hypervisor vhost_mode=client): each connection is one VM's
// network device.
type vhostUserListener struct {
	spec Spec
	l    *net.UnixListener
	log  *slog.Logger
}

func listenVhostUser(spec Spec, log *slog.Logger) (Listener, error) {
	l, err := listenUnix(spec, "unix")
	if err != nil {
		return nil, err
	}
	return &vhostUserListener{spec: spec, l: l, log: log}, nil
}

func (v *vhostUserListener) Accept() (link.Link, error) {
	c, err := v.l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	return vhostuser.New(c, vhostuser.Options{Name: v.spec.String(), Logger: v.log, Queues: v.spec.Queues, MTU: v.spec.MTU}), nil
}

func (v *vhostUserListener) Close() error { return v.l.Close() }
func (v *vhostUserListener) Spec() Spec   { return v.spec }

func (v *vhostUserListener) String() string { return v.spec.String() }
