package network

import (
	"errors"
	"net/netip"
	"syscall"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/publish"
)

// startPublish creates the publisher and publishes the configured rules;
// the first port that cannot be bound fails the start, naming its rule.
func (n *Network) startPublish() error {
	cfg := n.cfg
	n.pub = publish.New(publish.Options{
		Stack:              n.st,
		Flows:              n.flows,
		KeepSource:         cfg.PublishSource != config.PublishSourceGateway,
		Gateway:            cfg.Gateway,
		Subnet:             cfg.CIDR,
		Gateway6:           cfg.IPv6Gateway,
		Subnet6:            cfg.IPv6Prefix,
		MaxPorts:           cfg.Limits.MaxPublishedPorts,
		MaxPendingConnects: cfg.Limits.MaxPendingConnects,
		ConnectTimeout:     cfg.Limits.ConnectTimeout,
		UDPIdleTimeout:     cfg.Limits.UDPIdleTimeout,
		ListenTCP:          n.host.ListenTCP,
		ListenUDP:          n.host.ListenUDP,
		DialLoopback:       n.host.DialGuestLoopback,
		OnChange: func(f publish.Forward, added bool) {
			typ := EventForwardRemoved
			if added {
				typ = EventForwardAdded
			}
			fw := forwardOf(f)
			n.events.emit(Event{Type: typ, Forward: &fw})
			n.stateChanged()
		},
		Logger: n.log.With("service", "publish"),
	})
	for _, r := range cfg.Publish {
		if _, err := n.PublishAll(r); err != nil {
			return err
		}
	}
	return nil
}

// PublishAll is Publish, except that a rule without a host address is
// published on all of the host's IPv4 addresses and all of its IPv6 ones
// (where the host has IPv6), as docker's -p 8080:80 is, so that
// localhost:8080 works whether localhost is 127.0.0.1 or ::1. A rule
// with 0.0.0.0 stays IPv4 only. On failure nothing stays published.
func (n *Network) PublishAll(r config.PublishRule) ([]Forward, error) {
	f, err := n.Publish(r)
	if err != nil || r.HostAddr.IsValid() {
		return []Forward{f}, err
	}
	r6 := r
	r6.HostAddr = netip.IPv6Unspecified()
	f6, err := n.Publish(r6)
	switch {
	case err == nil:
		return []Forward{f, f6}, nil
	case errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL):
		n.log.Debug("no IPv6 on the host: published on IPv4 only", "rule", r.String())
		return []Forward{f}, nil
	}
	n.Unpublish(f.ID)
	return nil, err
}

// Publish publishes host ports into a guest at run time. The rule is
// completed and validated as --publish is; a port already published or
// that cannot be bound is an error, and nothing changes.
func (n *Network) Publish(r config.PublishRule) (Forward, error) {
	rr, err := n.cfg.Resolve(r)
	if err != nil {
		return Forward{}, err
	}
	f, err := n.pub.Add(rr)
	return forwardOf(f), err
}

// Unpublish removes forward id, closing its ports and their connections.
func (n *Network) Unpublish(id uint64) (Forward, error) {
	f, err := n.pub.Remove(id)
	return forwardOf(f), err
}

// Forwards lists the published ports.
func (n *Network) Forwards() []Forward {
	list := n.pub.List()
	out := make([]Forward, len(list))
	for i, f := range list {
		out[i] = forwardOf(f)
	}
	return out
}
