package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// AddLink hands the connected socket fd to slipway as a new link of kind
// (KindStream, KindDgram, KindSeqpacket) called name, and returns it. The
// request goes on a connection of its own, its bytes and fd in one sendmsg
// (see "Passing a file descriptor" in docs/api.md); fd stays the caller's
// to close, slipway holds its own copy.
func (c *Client) AddLink(ctx context.Context, fd int, kind, name string) (Link, error) {
	return c.AddLinkWith(ctx, fd, LinkRequest{Kind: kind, Name: name})
}

// AddLinkWith is AddLink with every field of the request (a vhost-user
// link's queues).
func (c *Client) AddLinkWith(ctx context.Context, fd int, req LinkRequest) (Link, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Link{}, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return Link{}, err
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	// End the connection's reads and writes when ctx ends (its deadline
	// or a cancel), so neither blocks past it.
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	raw := linkRequestBytes(body)
	n, _, err := uc.WriteMsgUnix(raw, unix.UnixRights(fd), nil)
	if err != nil {
		return Link{}, fmt.Errorf("POST /v1/links: send: %w", err)
	}
	if n < len(raw) {
		// The rest of the request, without a descriptor.
		if _, err := uc.Write(raw[n:]); err != nil {
			return Link{}, fmt.Errorf("POST /v1/links: send: %w", err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(uc), nil)
	if err != nil {
		return Link{}, fmt.Errorf("POST /v1/links: %w", err)
	}
	var l Link
	err = decodeAnswer(resp, http.MethodPost, "/v1/links", &l)
	return l, err
}

// linkRequestBytes is the whole HTTP request of POST /v1/links.
func linkRequestBytes(body []byte) []byte {
	var b bytes.Buffer
	b.WriteString("POST /v1/links HTTP/1.1\r\nHost: slipway\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteString("\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}

// RemoveLink detaches the link on port.
func (c *Client) RemoveLink(ctx context.Context, port int) (Link, error) {
	var l Link
	err := c.Do(ctx, http.MethodDelete, "/v1/links/"+strconv.Itoa(port), nil, &l)
	return l, err
}

// SetLinkDown sets the link on port down or up.
func (c *Client) SetLinkDown(ctx context.Context, port int, down bool) (Link, error) {
	state := "up"
	if down {
		state = "down"
	}
	var l Link
	err := c.Do(ctx, http.MethodPost, "/v1/links/"+strconv.Itoa(port)+"/"+state, nil, &l)
	return l, err
}
