package control

import (
	"time"

	"github.com/slipway-net/slipway/network"
)

// What the API shows of a network, built from its public snapshot.

// traffic is the field of l for the link counter called name, nil for
// every other one of a link's counters: those are drops.
func (l *Link) traffic(name string) *uint64 {
	switch name {
	case "rx_frames":
		return &l.RxFrames
	case "rx_bytes":
		return &l.RxBytes
	case "tx_frames":
		return &l.TxFrames
	case "tx_bytes":
		return &l.TxBytes
	}
	return nil
}

func linkView(li network.LinkInfo) Link {
	l := Link{Port: li.Port, Name: li.Name, Since: li.Since, Up: li.Up, Drops: map[string]uint64{}}
	for _, c := range li.Counters {
		if field := l.traffic(c.Name); field != nil {
			*field = c.Value
		} else {
			l.Drops[c.Name] += c.Value
		}
	}
	return l
}

func links(n *network.Network) []Link {
	ls := n.Links()
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		out = append(out, linkView(l))
	}
	return out
}

func flowView(f network.FlowInfo, now time.Time) Flow {
	dir := "outbound"
	if f.Forward != 0 {
		dir = "published"
	}
	return Flow{
		ID: f.ID, Proto: string(f.Proto), Direction: dir, Forward: f.Forward,
		Guest: f.Guest.String(), Remote: f.Remote.String(), Host: f.Host.String(),
		State: f.State, ToHostBytes: f.ToHost, ToGuestBytes: f.ToGuest,
		Started: f.Started, AgeSeconds: now.Sub(f.Started).Seconds(),
	}
}

func flows(n *network.Network) []Flow {
	now := time.Now()
	list := n.Flows()
	out := make([]Flow, 0, len(list))
	for _, f := range list {
		out = append(out, flowView(f, now))
	}
	return out
}

// stats shows every section of the network's counters: a counter by its
// name, a count kept by reason as an object by reason.
func stats(n *network.Network) Stats {
	st := Stats{
		UptimeSeconds: time.Since(n.Started()).Seconds(),
		Links:         len(n.Links()),
		Sections:      map[string]map[string]any{},
	}
	for _, sec := range n.Counters() {
		m := map[string]any{}
		for _, c := range sec.Counters {
			if !c.Map {
				m[c.Name] = c.Value
				continue
			}
			byKey, _ := m[c.Name].(map[string]uint64)
			if byKey == nil {
				byKey = map[string]uint64{}
				m[c.Name] = byKey
			}
			if c.Key != "" {
				byKey[c.Key] = c.Value
			}
		}
		st.Sections[sec.Name] = m
	}
	return st
}
