package control

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"unicode"

	"github.com/slipway-net/slipway/internal/endpoint"
	"github.com/slipway-net/slipway/link/vhostuser"
	"github.com/slipway-net/slipway/network"
)

// Link kinds POST /v1/links takes.
const (
	KindStream    = "stream"
	KindDgram     = "dgram"
	KindSeqpacket = "seqpacket"
	KindVhostUser = "vhost-user"
)

// maxLinkName bounds a link's name, which shows in logs and listings.
const maxLinkName = 64

// addLink attaches the socket that came with the request (SCM_RIGHTS) as a
// new link. Every refusal closes what was received and changes nothing.
func (s *Server) addLink(w http.ResponseWriter, r *http.Request) {
	fc := connFDs(r.Context())
	var req LinkRequest
	if !decodeBody(w, r, &req) {
		return
	}
	// The body is read: the descriptor sent with it has arrived.
	var fds []int
	var fdErr error
	if fc != nil {
		fds, fdErr = fc.take()
	}
	port, status, err := s.attachFDs(req, fds, fdErr)
	if err != nil {
		writeError(w, status, err)
		return
	}
	writeJSON(w, http.StatusCreated, linkView(s.linkInfo(port)))
}

// attachFDs checks the request and its descriptors and attaches the link;
// it returns the new port, or an HTTP status and error. It owns fds.
func (s *Server) attachFDs(req LinkRequest, fds []int, fdErr error) (port, status int, err error) {
	kind, err := linkKind(req.Kind)
	if err == nil {
		err = checkQueues(kind, req.Queues)
	}
	if err != nil {
		closeFDs(fds)
		return 0, http.StatusBadRequest, err
	}
	if err := checkLinkName(req.Name); err != nil {
		closeFDs(fds)
		return 0, http.StatusBadRequest, err
	}
	switch {
	case fdErr != nil:
		closeFDs(fds)
		return 0, http.StatusBadRequest, fmt.Errorf("%w; send exactly one", fdErr)
	case len(fds) == 0:
		return 0, http.StatusBadRequest, errors.New("no file descriptor came with the request: send the link's socket as SCM_RIGHTS in the same sendmsg as the request (see docs/api.md)")
	case len(fds) > 1:
		closeFDs(fds)
		return 0, http.StatusBadRequest, fmt.Errorf("%d file descriptors came with the request; send exactly one", len(fds))
	}
	name := req.Name
	if name == "" {
		name = "api:" + req.Kind
	}
	spec := endpoint.FDSpec{FD: fds[0], Kind: kind}
	if kind == endpoint.VhostUser {
		spec.Queues, spec.MTU = max(req.Queues, 1), s.n.Config().MTU
	}
	l, err := endpoint.AdoptFDNamed(spec, name)
	if err != nil {
		return 0, http.StatusBadRequest, fmt.Errorf("the descriptor sent: %w", err)
	}
	if port = s.n.Attach(l); port == 0 {
		return 0, http.StatusServiceUnavailable, errors.New("the network is shutting down")
	}
	s.log.Info("api: link attached", "port", port, "link", name, "kind", req.Kind)
	return port, http.StatusCreated, nil
}

// linkInfo is the link on port; the port was just attached, but may have
// gone already (its peer hung up), and then shows as it started.
func (s *Server) linkInfo(port int) network.LinkInfo {
	li, err := s.n.Link(port)
	if err != nil {
		li.Port = port
	}
	return li
}

func linkKind(k string) (endpoint.Kind, error) {
	switch k {
	case KindStream:
		return endpoint.Stream, nil
	case KindDgram:
		return endpoint.Dgram, nil
	case KindSeqpacket:
		return endpoint.Seqpacket, nil
	case KindVhostUser:
		return endpoint.VhostUser, nil
	case "":
		return "", errors.New("missing kind: want stream, dgram, seqpacket or vhost-user")
	}
	return "", fmt.Errorf("unknown link kind %q: want stream, dgram, seqpacket or vhost-user", k)
}

// checkQueues allows queues for a vhost-user link only, within the
// device's bound.
func checkQueues(kind endpoint.Kind, queues int) error {
	switch {
	case queues == 0:
		return nil
	case kind != endpoint.VhostUser:
		return fmt.Errorf("queues is for vhost-user links, not %s", kind)
	case queues < 1 || queues > vhostuser.MaxQueues:
		return fmt.Errorf("queues %d: want 1 to %d", queues, vhostuser.MaxQueues)
	}
	return nil
}

func checkLinkName(name string) error {
	if len(name) > maxLinkName {
		return fmt.Errorf("link name longer than %d bytes", maxLinkName)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("link name %q: only printable characters, no spaces", name)
		}
	}
	return nil
}

func (s *Server) removeLink(w http.ResponseWriter, r *http.Request) {
	port, ok := linkPort(w, r)
	if !ok {
		return
	}
	li, err := s.n.Detach(port)
	writeResult(w, http.StatusOK, linkView(li), err)
}

func linkPort(w http.ResponseWriter, r *http.Request) (int, bool) {
	port, err := strconv.Atoi(r.PathValue("port"))
	if err != nil || port <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("link port %q is not a port number", r.PathValue("port")))
		return 0, false
	}
	return port, true
}
