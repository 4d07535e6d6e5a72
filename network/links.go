package network

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slipway-net/slipway/internal/counters"
	"github.com/slipway-net/slipway/internal/vswitch"
)

// ErrNoLink is returned for a port number no link has.
var ErrNoLink = errors.New("no such link")

// port finds the link port numbered id (ErrNoLink: none).
func (n *Network) port(id int) (*vswitch.Port, error) {
	for _, p := range n.sw.Ports() {
		if p.ID() == id {
			return p, nil
		}
	}
	return nil, fmt.Errorf("link %d: %w", id, ErrNoLink)
}

// Link describes the link on port id.
func (n *Network) Link(id int) (LinkInfo, error) {
	p, err := n.port(id)
	if err != nil {
		return LinkInfo{}, err
	}
	return linkInfo(p), nil
}

// Detach removes the link on port id and closes it, as if its VM had gone:
// the guest's flows end after the reconnect grace unless its MAC shows up
// again on another link. It returns the link as it was.
func (n *Network) Detach(id int) (LinkInfo, error) {
	p, err := n.port(id)
	if err != nil {
		return LinkInfo{}, err
	}
	li := linkInfo(p)
	n.sw.Remove(p)
	return li, nil
}

func linkInfo(p *vswitch.Port) LinkInfo {
	cs := fromValues(counters.Walk(&p.Stats))
	if c := p.LinkCounters(); c != nil {
		cs = append(cs, fromValues(counters.Walk(c))...)
	}
	return LinkInfo{Port: p.ID(), Name: p.Name(), Since: p.Since, Up: p.Up(), Counters: cs}
}

// Drain prepares a graceful stop: from now on no new link is attached
// (a VM that connects is closed at once), and Drain waits for the open
// flows to end, until ctx is done. It returns how many flows were still
// open. The listeners stay bound, so a front-end serving them does not
// take their end for the end of the network; Close ends everything.
func (n *Network) Drain(ctx context.Context) int {
	n.mu.Lock()
	n.draining = true
	n.mu.Unlock()
	// Flows end at their own pace (a download finishing); looking four
	// times a second is cheap and bounded by ctx.
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		left := n.flows.Len()
		if left == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return left
		case <-t.C:
		}
	}
}
