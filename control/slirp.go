package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/slipway-net/slipway/config"
)

// slirp4netns's API: one JSON request per connection, one JSON answer,
// then the connection closes. rootlesskit's slirp4netns port driver (and so
// podman and rootless docker) publishes ports this way:
//
//	{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}}
//	-> {"return":{"id":1}}
//	{"execute":"list_hostfwd"} -> {"return":{"entries":[{"id":1,...}]}}
//	{"execute":"remove_hostfwd","arguments":{"id":1}} -> {"return":{}}
//	errors -> {"error":{"desc":"..."}}

// slirpCommand is a parsed, valid request.
type slirpCommand struct {
	op   string // add_hostfwd, list_hostfwd, remove_hostfwd
	rule config.PublishRule
	id   uint64
}

// parseSlirpRequest parses one request. Empty host_addr and guest_addr
// (rootlesskit sends them when it knows none) take the defaults of
// --publish.
func parseSlirpRequest(b []byte) (slirpCommand, error) {
	var req SlirpRequest
	if err := decodeJSON(bytes.NewReader(b), &req); err != nil {
		return slirpCommand{}, fmt.Errorf("bad request: %w", err)
	}
	cmd := slirpCommand{op: req.Execute}
	args := func(v any) error {
		if len(req.Arguments) == 0 {
			return fmt.Errorf("bad request: %s: missing arguments", req.Execute)
		}
		if err := decodeJSON(bytes.NewReader(req.Arguments), v); err != nil {
			return fmt.Errorf("bad request: %s: bad arguments: %w", req.Execute, err)
		}
		return nil
	}
	switch req.Execute {
	case "list_hostfwd":
		return cmd, nil
	case "remove_hostfwd":
		var a slirpRemove
		if err := args(&a); err != nil {
			return cmd, err
		}
		if a.ID == 0 {
			return cmd, errors.New("bad request: remove_hostfwd: bad arguments.id")
		}
		cmd.id = a.ID
		return cmd, nil
	case "add_hostfwd":
		var a SlirpHostfwd
		if err := args(&a); err != nil {
			return cmd, err
		}
		r, err := slirpRule(a)
		if err != nil {
			return cmd, fmt.Errorf("bad request: add_hostfwd: %w", err)
		}
		cmd.rule = r
		return cmd, nil
	case "":
		return cmd, errors.New("bad request: no execute found")
	}
	return cmd, fmt.Errorf("bad request: unknown execute %q", req.Execute)
}

func slirpRule(a SlirpHostfwd) (config.PublishRule, error) {
	var r config.PublishRule
	switch a.Proto {
	case "tcp", "tcp4":
		r.Proto = config.TCP
	case "udp", "udp4":
		r.Proto = config.UDP
	default:
		return r, fmt.Errorf("bad arguments.proto %q: want tcp or udp", a.Proto)
	}
	if a.ID != 0 || a.HostPortEnd != 0 || a.GuestPortEnd != 0 {
		return r, errors.New("bad arguments: id, host_port_end and guest_port_end are not arguments of add_hostfwd")
	}
	var err error
	if a.HostAddr != "" {
		if r.HostAddr, err = netip.ParseAddr(a.HostAddr); err != nil {
			return r, fmt.Errorf("bad arguments.host_addr %q", a.HostAddr)
		}
	}
	if a.GuestAddr != "" {
		if r.GuestAddr, err = netip.ParseAddr(a.GuestAddr); err != nil {
			return r, fmt.Errorf("bad arguments.guest_addr %q", a.GuestAddr)
		}
	}
	if a.HostPort < 1 || a.HostPort > 65535 {
		return r, fmt.Errorf("bad arguments.host_port %d", a.HostPort)
	}
	if a.GuestPort < 1 || a.GuestPort > 65535 {
		return r, fmt.Errorf("bad arguments.guest_port %d", a.GuestPort)
	}
	r.HostPort, r.GuestPort = uint16(a.HostPort), uint16(a.GuestPort)
	return r, nil
}

// serveSlirp answers one slirp4netns request read from br (its first byte
// already seen) and returns; the caller closes the connection.
func (s *Server) serveSlirp(c net.Conn, br *bufio.Reader) {
	c.SetDeadline(time.Now().Add(firstByteTimeout))
	var reply slirpReply
	raw, err := readOneJSON(br)
	var cmd slirpCommand
	if err == nil {
		cmd, err = parseSlirpRequest(raw)
	}
	if err == nil {
		reply.Return, err = s.slirpExecute(cmd)
	}
	if err != nil {
		reply = slirpReply{Error: &slirpError{Desc: err.Error()}}
		s.log.Debug("api: slirp4netns request failed", "err", err)
	}
	json.NewEncoder(c).Encode(reply)
}

// readOneJSON reads one JSON value of at most MaxBody bytes. The client
// may or may not shut down its side after the request; the value's end is
// found either way.
func readOneJSON(br *bufio.Reader) ([]byte, error) {
	var raw json.RawMessage
	lr := &io.LimitedReader{R: br, N: MaxBody + 1}
	if err := json.NewDecoder(lr).Decode(&raw); err != nil {
		if lr.N <= 0 {
			return nil, fmt.Errorf("bad request: larger than %d bytes", MaxBody)
		}
		return nil, fmt.Errorf("bad request: cannot parse JSON: %w", err)
	}
	return raw, nil
}

func (s *Server) slirpExecute(cmd slirpCommand) (any, error) {
	switch cmd.op {
	case "add_hostfwd":
		fw, err := s.n.Publish(cmd.rule)
		if err != nil {
			return nil, fmt.Errorf("add_hostfwd: %w", err)
		}
		return map[string]uint64{"id": fw.ID}, nil
	case "remove_hostfwd":
		if _, err := s.n.Unpublish(cmd.id); err != nil {
			return nil, fmt.Errorf("remove_hostfwd: %w", err)
		}
		return struct{}{}, nil
	}
	entries := []SlirpHostfwd{}
	for _, f := range s.n.Forwards() {
		e := SlirpHostfwd{
			ID: f.ID, Proto: string(f.Proto), HostAddr: f.HostAddr.String(), HostPort: int(f.HostPort),
			GuestAddr: f.GuestAddr.String(), GuestPort: int(f.GuestPort),
		}
		if f.HostPorts() > 1 {
			e.HostPortEnd, e.GuestPortEnd = int(f.LastHostPort()), int(f.GuestPort)+f.GuestPorts()-1
		}
		entries = append(entries, e)
	}
	return map[string]any{"entries": entries}, nil
}
