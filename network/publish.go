package network

import (
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
		if _, err := n.Publish(r); err != nil {
			return err
		}
	}
	return nil
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
