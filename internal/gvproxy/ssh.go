package gvproxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshTimeout bounds the SSH handshake with the guest.
const sshTimeout = 15 * time.Second

// guestDialer opens TCP connections into the guests (the network's
// DialGuest).
type guestDialer func(ctx context.Context, to netip.AddrPort) (net.Conn, error)

// sshTunnel opens streams to a unix socket in the guest through one SSH
// connection (OpenSSH's direct-streamlocal), made on first use and made
// again after it breaks: how podman machine reaches podman's API socket
// in its VM (-forward-sock, or a unix expose with an ssh-tunnel:// remote).
type sshTunnel struct {
	dial   guestDialer
	addr   netip.AddrPort
	dest   string
	config *ssh.ClientConfig

	mu     sync.Mutex
	client *ssh.Client
}

// newSSHTunnel prepares the tunnel to user@addr, socket dest in the
// guest, with the key read from keyPath.
func newSSHTunnel(dial guestDialer, addr netip.AddrPort, user, keyPath string, pem []byte, passphrase, dest string) (*sshTunnel, error) {
	var signer ssh.Signer
	var err error
	if passphrase != "" {
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(passphrase))
	} else {
		signer, err = ssh.ParsePrivateKey(pem)
	}
	if err != nil {
		return nil, fmt.Errorf("identity file %q: %w", keyPath, err)
	}
	return &sshTunnel{dial: dial, addr: addr, dest: dest, config: &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		// The guest's host key is new with every VM and known to no one;
		// the connection never leaves slipway's own virtual network.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         sshTimeout,
	}}, nil
}

// parseSSHTunnel reads gvproxy's ssh-tunnel://USER@IP[:PORT]/PATH?key=K
// [&passphrase=P] remote; readKey reads K.
func parseSSHTunnel(dial guestDialer, u *url.URL, readKey func(path string) ([]byte, error)) (*sshTunnel, error) {
	key := u.Query().Get("key")
	if key == "" {
		return nil, fmt.Errorf("key not provided for unix-ssh connection")
	}
	if u.Path == "" || u.Path == "/" {
		return nil, fmt.Errorf("remote uri must contain a path to a socket file")
	}
	port := 22
	if u.Port() != "" {
		p, err := strconv.Atoi(u.Port())
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("bad port %q", u.Port())
		}
		port = p
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return nil, fmt.Errorf("ssh-tunnel host %q: %w", u.Hostname(), err)
	}
	pem, err := readKey(key)
	if err != nil {
		return nil, err
	}
	return newSSHTunnel(dial, netip.AddrPortFrom(ip, uint16(port)), u.User.Username(), key, pem, u.Query().Get("passphrase"), u.Path)
}

// Dial opens one stream to the guest's socket.
func (t *sshTunnel) Dial(ctx context.Context) (net.Conn, error) {
	c, err := t.clientConn(ctx)
	if err != nil {
		return nil, err
	}
	s, err := c.Dial("unix", t.dest)
	if err == nil {
		return s, nil
	}
	// The connection may have broken (the VM restarted): once more afresh.
	t.drop(c)
	if c, err = t.clientConn(ctx); err != nil {
		return nil, err
	}
	return c.Dial("unix", t.dest)
}

func (t *sshTunnel) clientConn(ctx context.Context) (*ssh.Client, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client != nil {
		return t.client, nil
	}
	ctx, cancel := context.WithTimeout(ctx, sshTimeout)
	defer cancel()
	raw, err := t.dial(ctx, t.addr)
	if err != nil {
		return nil, fmt.Errorf("ssh to %s: %w", t.addr, err)
	}
	raw.SetDeadline(time.Now().Add(sshTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(raw, t.addr.String(), t.config)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("ssh to %s: %w", t.addr, err)
	}
	raw.SetDeadline(time.Time{})
	t.client = ssh.NewClient(cc, chans, reqs)
	return t.client, nil
}

func (t *sshTunnel) drop(c *ssh.Client) {
	t.mu.Lock()
	if t.client == c {
		t.client = nil
	}
	t.mu.Unlock()
	c.Close()
}

// Close ends the SSH connection.
func (t *sshTunnel) Close() error {
	t.mu.Lock()
	c := t.client
	t.client = nil
	t.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}
