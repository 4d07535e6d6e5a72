package control

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/network"
)

// The API's wire types, every one of them: slipway's own JSON API (which
// `slipway ctl` and the Go Client decode with these same types),
// gvproxy's forwarder API and slirp4netns's JSON API.

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// ForwardRequest is the body of POST /v1/forwards: either Spec, in the
// syntax of --publish, or the rule's fields.
type ForwardRequest struct {
	Spec string `json:"spec,omitempty"`
	config.PublishRule
}

// Forward is a published rule: the answer of POST /v1/forwards and
// DELETE /v1/forwards/{id}, an entry of GET /v1/forwards.
type Forward = network.Forward

// LinkRequest is the body of POST /v1/links; the link's socket comes with
// it as SCM_RIGHTS.
type LinkRequest struct {
	// Kind is stream, dgram, seqpacket or vhost-user.
	Kind string `json:"kind"`
	// Name shows in listings and logs (default "api:KIND").
	Name string `json:"name,omitempty"`
	// Queues is how many queue pairs a vhost-user device offers
	// (1..16, default 1); only for vhost-user.
	Queues int `json:"queues,omitempty"`
}

// RuleRequest is the body of POST /v1/rules: a rule in the syntax of
// --deny and --allow with the action in front ("deny 10.0.0.0/8:22"),
// inserted before the rule now at Index (0 is first; left out, last).
type RuleRequest struct {
	Rule  string `json:"rule"`
	Index *int   `json:"index,omitempty"`
}

// RulesRequest is the body of PUT /v1/rules: the whole new list, in order.
type RulesRequest struct {
	Rules []string `json:"rules"`
}

// EgressRule is an egress rule with its ID: an entry of GET /v1/rules,
// the answer of POST and DELETE.
type EgressRule = network.EgressRule

// Link is one guest link and its counters (rx is from the guest).
type Link struct {
	Port  int       `json:"port"`
	Name  string    `json:"name"`
	Since time.Time `json:"since"`
	// Up is false while the link was set down (POST /v1/links/{port}/down).
	Up       bool              `json:"up"`
	RxFrames uint64            `json:"rx_frames"`
	RxBytes  uint64            `json:"rx_bytes"`
	TxFrames uint64            `json:"tx_frames"`
	TxBytes  uint64            `json:"tx_bytes"`
	Drops    map[string]uint64 `json:"drops"`
}

// Flow is one flow between a guest and the host.
type Flow struct {
	ID    uint64 `json:"id"`
	Proto string `json:"proto"`
	// Direction is "outbound" (the guest opened it) or "published" (a
	// host client came in through forward Forward).
	Direction string `json:"direction"`
	Forward   uint64 `json:"forward,omitempty"`
	// Guest is the guest's end. Remote is the peer as the guest sees it;
	// Host is the host socket's far end (the outbound destination or the
	// published port's client).
	Guest        string    `json:"guest"`
	Remote       string    `json:"remote"`
	Host         string    `json:"host"`
	State        string    `json:"state"`
	ToHostBytes  uint64    `json:"to_host_bytes"`
	ToGuestBytes uint64    `json:"to_guest_bytes"`
	Started      time.Time `json:"started"`
	AgeSeconds   float64   `json:"age_seconds"`
}

// Stats is the body of GET /v1/stats: the uptime, the number of links,
// and one object per section of the network's counters (network.Counters):
// in it a counter is a number, and a count kept by reason an object of
// numbers by reason. Sections are top-level keys of the JSON object.
type Stats struct {
	UptimeSeconds float64
	Links         int
	Sections      map[string]map[string]any
}

// MarshalJSON writes the sections beside the uptime and link count.
func (s Stats) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(s.Sections)+2)
	for k, v := range s.Sections {
		m[k] = v
	}
	m["uptime_seconds"] = s.UptimeSeconds
	m["links"] = s.Links
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Stats) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*s = Stats{Sections: map[string]map[string]any{}}
	for k, raw := range m {
		var err error
		switch k {
		case "uptime_seconds":
			err = json.Unmarshal(raw, &s.UptimeSeconds)
		case "links":
			err = json.Unmarshal(raw, &s.Links)
		default:
			var sec map[string]any
			err = json.Unmarshal(raw, &sec)
			s.Sections[k] = sec
		}
		if err != nil {
			return fmt.Errorf("stats: %s: %w", k, err)
		}
	}
	return nil
}

// Counter is a counter's value in a section (0 if there is none); with a
// reason, the count kept for that reason.
func (s Stats) Counter(section, name string, reason ...string) uint64 {
	v := s.Sections[section][name]
	if len(reason) > 0 {
		switch m := v.(type) {
		case map[string]any:
			v = m[reason[0]]
		case map[string]uint64:
			v = m[reason[0]]
		}
	}
	switch n := v.(type) {
	case float64:
		return uint64(n)
	case uint64:
		return n
	}
	return 0
}

// Health is the body of GET /v1/health.
type Health struct {
	Status        string  `json:"status"`
	UptimeSeconds float64 `json:"uptime_seconds"`
}

// DNSRecord is a name slipway's DNS answers itself and its addresses (A
// for IPv4, AAAA for IPv6): an entry of GET /v1/dns/records, the body
// and answer of POST /v1/dns/records (the addresses are added to the
// name's). --host-name and --dns-record names are among them.
type DNSRecord struct {
	Name string       `json:"name"`
	IPs  []netip.Addr `json:"ips"`
}

// GvproxyExpose is the body of POST /services/forwarder/expose.
type GvproxyExpose struct {
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	Protocol string `json:"protocol,omitempty"`
}

// GvproxyUnexpose is the body of POST /services/forwarder/unexpose.
type GvproxyUnexpose struct {
	Local    string `json:"local"`
	Protocol string `json:"protocol,omitempty"`
}

// slirp4netns's API: one JSON request per connection (rootlesskit's and
// podman's port drivers speak it).

// SlirpRequest is one slirp4netns API request.
type SlirpRequest struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// SlirpHostfwd is add_hostfwd's arguments and a list_hostfwd entry.
type SlirpHostfwd struct {
	ID        uint64 `json:"id,omitempty"`
	Proto     string `json:"proto"`
	HostAddr  string `json:"host_addr"`
	HostPort  int    `json:"host_port"`
	GuestAddr string `json:"guest_addr"`
	GuestPort int    `json:"guest_port"`
	// Ends of port ranges published by other means; slirp4netns itself
	// has no ranges, and its clients ignore fields they do not know.
	HostPortEnd  int `json:"host_port_end,omitempty"`
	GuestPortEnd int `json:"guest_port_end,omitempty"`
}

type slirpRemove struct {
	ID uint64 `json:"id"`
}

type slirpReply struct {
	Return any         `json:"return,omitempty"`
	Error  *slirpError `json:"error,omitempty"`
}

type slirpError struct {
	Desc string `json:"desc"`
}
