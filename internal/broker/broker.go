// Package broker carries a sandboxed engine's requests for host resources
// to its launcher, which holds the privileges and the file system the
// engine gave up: a listening socket for a port published at run time
// (below 1024 too, or any port Landlock keeps the engine from binding),
// a connection to a VMM that --connect redials, and the word that the
// engine serves (so the launcher can report ready). Requests and answers
// are one JSON message each on a SOCK_SEQPACKET socket pair; a
// descriptor comes back with SCM_RIGHTS.
//
// The launcher treats every request as hostile: the engine parses guest
// input and may be compromised. ParseRequest accepts only the few exact
// shapes below, and the launcher's Handler decides each on its own.
package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/network"
)

// MaxMessage bounds a request and an answer.
const MaxMessage = 512

// Operations.
const (
	OpListen = "listen" // Proto, Addr: a bound socket, listening for TCP
	OpDial   = "dial"   // Endpoint: a connection to that --connect endpoint
	OpReady  = "ready"  // no descriptor; the engine is serving
	OpUsage  = "usage"  // no descriptor; the engine's own /proc figures (Answer.Usage)
	OpResolv = "resolv" // no descriptor; the host's resolv.conf nameservers now (Answer.Servers)
	// Strict mode: the engine, in an empty network namespace, opens no
	// socket itself.
	OpConnect = "connect" // Proto, Addr: a TCP socket connecting (in progress) or a connected UDP socket
	OpPing    = "ping"    // Proto icmp or icmp6: an unprivileged ICMP echo socket
	// --state-file: the engine opens no file, and names none. The path is
	// the launcher's, fixed at start.
	OpStateLoad = "state-load" // the state file, open for reading (Answer.NotExist if there is none)
	OpStateSave = "state-save" // comes with a pipe's read end: its bytes (MaxState at most) replace the state file, atomically
)

// MaxState bounds what one OpStateSave writes: an encoded state's bound.
const MaxState = network.MaxStateBytes

// Ping socket protocols (OpPing's Proto).
const (
	ICMP4 config.Proto = "icmp"
	ICMP6 config.Proto = "icmp6"
)

// Request is one request of the engine.
type Request struct {
	Op string `json:"op"`
	// Proto and Addr are a published port's (OpListen).
	Proto config.Proto   `json:"proto,omitempty"`
	Addr  netip.AddrPort `json:"addr,omitzero"`
	// Endpoint is the index of a --connect endpoint (OpDial), in the
	// order the launcher passed them.
	Endpoint int `json:"endpoint,omitempty"`
}

// Answer is the launcher's reply; a descriptor comes with it on success.
type Answer struct {
	Error string `json:"error,omitempty"`
	// Usage answers OpUsage: the engine cannot read its /proc.
	Usage *control.ProcessUsage `json:"usage,omitempty"`
	// Servers answer OpResolv: the engine cannot read /etc/resolv.conf.
	Servers []netip.AddrPort `json:"servers,omitempty"`
	// NotExist answers OpStateLoad: there is no state file yet.
	NotExist bool `json:"not_exist,omitempty"`
}

// ParseRequest reads one request strictly: no unknown field, nothing
// after it, and only the fields its operation takes, each valid.
func ParseRequest(b []byte) (Request, error) {
	var r Request
	if len(b) > MaxMessage {
		return r, fmt.Errorf("request of %d bytes, more than %d", len(b), MaxMessage)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Request{}, fmt.Errorf("malformed request: %w", err)
	}
	if dec.More() {
		return Request{}, errors.New("malformed request: data after the object")
	}
	if err := r.validate(); err != nil {
		return Request{}, err
	}
	return r, nil
}

func (r Request) validate() error {
	switch r.Op {
	case OpListen:
		if r.Proto != config.TCP && r.Proto != config.UDP {
			return fmt.Errorf("listen: protocol %q: want tcp or udp", r.Proto)
		}
		a := r.Addr.Addr()
		if !a.IsValid() || r.Addr.Port() == 0 || a.Zone() != "" || a.IsMulticast() || a.Is4In6() {
			return fmt.Errorf("listen: address %v: want a unicast or unspecified ADDR:PORT, port not 0", r.Addr)
		}
		if r.Endpoint != 0 {
			return errors.New("listen: takes no endpoint")
		}
	case OpConnect:
		if r.Proto != config.TCP && r.Proto != config.UDP {
			return fmt.Errorf("connect: protocol %q: want tcp or udp", r.Proto)
		}
		a := r.Addr.Addr()
		if !a.IsValid() || r.Addr.Port() == 0 || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() || a.Is4In6() {
			return fmt.Errorf("connect: address %v: want a unicast ADDR:PORT, port not 0", r.Addr)
		}
		if r.Endpoint != 0 {
			return errors.New("connect: takes no endpoint")
		}
	case OpPing:
		if (r.Proto != ICMP4 && r.Proto != ICMP6) || r.Addr.IsValid() || r.Endpoint != 0 {
			return errors.New("ping: takes a protocol, icmp or icmp6, only")
		}
	case OpDial:
		if r.Endpoint < 0 || r.Proto != "" || r.Addr.IsValid() {
			return errors.New("dial: takes an endpoint index only")
		}
	case OpReady, OpUsage, OpResolv, OpStateLoad, OpStateSave:
		if r.Endpoint != 0 || r.Proto != "" || r.Addr.IsValid() {
			return fmt.Errorf("%s: takes nothing", r.Op)
		}
	default:
		return fmt.Errorf("unknown operation %q", r.Op)
	}
	return nil
}

// Encode writes a request (the engine's side).
func (r Request) Encode() []byte {
	b, _ := json.Marshal(r) // plain fields: cannot fail
	return b
}
