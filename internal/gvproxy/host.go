package gvproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"

	"golang.org/x/sys/unix"
)

// Host is what the personality needs of the host beyond the network's own
// sockets, opened before it serves: by slipway's launcher, for an engine
// that can open no file and bind no socket (Open, then Adopt).
type Host struct {
	// APIs are the -listen endpoints (with /connect), then -services'.
	APIs []APIListener
	// SSH are the -forward-sock sockets and keys, one per
	// Plan.SSHForwards entry.
	SSH []SSHSocket
	// Stdin and Stdout carry -listen-stdio's VM.
	Stdin  io.ReadCloser
	Stdout io.Writer
	// DialNotification connects to the -notification socket.
	DialNotification func(ctx context.Context) (net.Conn, error)
	// HostFiles lets a unix forward added through the API at run time
	// make its socket and read its key on the host's file system. A
	// sandboxed engine has none: such a forward is refused, and named.
	HostFiles bool
}

// APIListener is one API endpoint's listener.
type APIListener struct {
	net.Listener
	URL     string
	Connect bool // /connect is served (-listen, not -services)
}

// SSHSocket is one -forward-sock: its host socket and the key read from
// its -forward-identity.
type SSHSocket struct {
	Listener net.Listener
	Key      []byte
}

// Handover describes the descriptors Open opened, for Adopt in the
// engine (it travels as JSON, the descriptors beside it in this order:
// one per APIs entry, one per SSH entry, then stdin and stdout if Stdio).
type Handover struct {
	APIs  []HandedAPI `json:"apis"`
	SSH   []HandedSSH `json:"ssh"`
	Stdio bool        `json:"stdio"`
}

// HandedAPI is an API endpoint's descriptor.
type HandedAPI struct {
	URL     string `json:"url"`
	Connect bool   `json:"connect"`
}

// HandedSSH is a -forward-sock's descriptor and the key.
type HandedSSH struct {
	Key []byte `json:"key"`
}

// Files is how many descriptors come with h.
func (h Handover) Files() int {
	n := len(h.APIs) + len(h.SSH)
	if h.Stdio {
		n += 2
	}
	return n
}

// maxKey bounds a -forward-identity file read.
const maxKey = 1 << 20

// Open opens, on the host, what the plan needs beyond the network's own
// sockets: the API endpoints' listeners (-listen, -services), the
// -forward-sock sockets (a file at the path is replaced, as gvproxy
// does), their keys, stdin and stdout for -listen-stdio. The VM endpoints
// (Plan.Endpoints) are the caller's, like any endpoint's. remove deletes
// the socket files made here, if they are still the ones made.
func Open(plan *Plan) (h Handover, files []*os.File, remove func(), err error) {
	var removes []func()
	remove = func() {
		for _, r := range removes {
			r()
		}
	}
	fail := func(err error) (Handover, []*os.File, func(), error) {
		for _, f := range files {
			f.Close()
		}
		remove()
		return Handover{}, nil, nil, err
	}
	apis := make([]HandedAPI, 0, len(plan.Listen)+1)
	urls := append([]*url.URL(nil), plan.Listen...)
	for _, u := range plan.Listen {
		apis = append(apis, HandedAPI{URL: u.String(), Connect: true})
	}
	if plan.Services != nil {
		urls = append(urls, plan.Services)
		apis = append(apis, HandedAPI{URL: plan.Services.String()})
	}
	for i, u := range urls {
		flag := "-listen"
		if !apis[i].Connect {
			flag = "-services"
		}
		ln, err := listenURL(u)
		if err != nil {
			return fail(fmt.Errorf("%s %s: %w", flag, u, err))
		}
		f, err := listenerFile(ln)
		if err != nil {
			return fail(fmt.Errorf("%s %s: %w", flag, u, err))
		}
		files = append(files, f)
		if u.Scheme == "unix" {
			removes = append(removes, removeIfSame(urlPath(u)))
		}
	}
	h.APIs = apis
	for _, s := range plan.SSHForwards {
		key, err := readKey(s.Identity)
		if err != nil {
			return fail(fmt.Errorf("-forward-sock %s: %w", s.Socket, err))
		}
		if err := os.Remove(s.Socket); err != nil && !os.IsNotExist(err) {
			return fail(fmt.Errorf("-forward-sock %s: %w", s.Socket, err))
		}
		ln, err := net.Listen("unix", s.Socket)
		if err != nil {
			return fail(fmt.Errorf("-forward-sock %s: %w", s.Socket, err))
		}
		f, err := listenerFile(ln)
		if err != nil {
			return fail(fmt.Errorf("-forward-sock %s: %w", s.Socket, err))
		}
		files = append(files, f)
		removes = append(removes, removeIfSame(s.Socket))
		h.SSH = append(h.SSH, HandedSSH{Key: key})
	}
	if plan.Stdio {
		for _, std := range []*os.File{os.Stdin, os.Stdout} {
			fd, err := unix.FcntlInt(std.Fd(), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				return fail(fmt.Errorf("-listen-stdio: %w", err))
			}
			files = append(files, os.NewFile(uintptr(fd), std.Name()))
		}
		h.Stdio = true
	}
	return h, files, remove, nil
}

// readKey reads a -forward-identity file, as gvproxy words its failure.
func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity file %q can't be loaded: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKey+1))
	if err == nil && len(b) > maxKey {
		err = fmt.Errorf("larger than %d bytes", maxKey)
	}
	if err != nil {
		return nil, fmt.Errorf("identity file %q can't be loaded: %w", path, err)
	}
	return b, nil
}

// listenerFile hands a listener's socket over as a file and closes the
// listener, leaving its socket file in place.
func listenerFile(ln net.Listener) (*os.File, error) {
	defer ln.Close()
	switch l := ln.(type) {
	case *net.UnixListener:
		l.SetUnlinkOnClose(false)
		return l.File()
	case *net.TCPListener:
		return l.File()
	}
	return vsockFile(ln)
}

// removeIfSame removes the socket file at path if it is still the one
// there now.
func removeIfSame(path string) func() {
	self, serr := os.Lstat(path)
	return func() {
		if cur, err := os.Lstat(path); serr == nil && err == nil && os.SameFile(cur, self) {
			os.Remove(path)
		}
	}
}

// Adopt makes the Host of a Handover and its descriptors, in the engine.
// It takes the files over; HostFiles and DialNotification are the
// caller's to set.
func Adopt(h Handover, files []*os.File) (Host, error) {
	var host Host
	if len(files) != h.Files() {
		return host, fmt.Errorf("gvproxy: %d descriptors for %d", len(files), h.Files())
	}
	fail := func(err error) (Host, error) {
		for _, f := range files {
			f.Close()
		}
		for _, a := range host.APIs {
			a.Close()
		}
		for _, s := range host.SSH {
			s.Listener.Close()
		}
		return Host{}, err
	}
	next := func() *os.File {
		f := files[0]
		files = files[1:]
		return f
	}
	for _, a := range h.APIs {
		u, err := url.Parse(a.URL)
		if err != nil {
			return fail(err)
		}
		ln, err := fileListener(u.Scheme, next())
		if err != nil {
			return fail(fmt.Errorf("API %s: %w", a.URL, err))
		}
		host.APIs = append(host.APIs, APIListener{Listener: ln, URL: a.URL, Connect: a.Connect})
	}
	for _, s := range h.SSH {
		ln, err := fileListener("unix", next())
		if err != nil {
			return fail(fmt.Errorf("-forward-sock: %w", err))
		}
		host.SSH = append(host.SSH, SSHSocket{Listener: ln, Key: s.Key})
	}
	if h.Stdio {
		host.Stdin, host.Stdout = next(), next()
	}
	return host, nil
}

// fileListener is the listener of a socket handed over as f.
func fileListener(scheme string, f *os.File) (net.Listener, error) {
	defer f.Close()
	if scheme == "vsock" {
		return vsockFromFile(f)
	}
	return net.FileListener(f)
}

// errNoHostFiles refuses what needs the host's file system in a
// sandboxed engine.
var errNoHostFiles = errors.New("the sandboxed engine has no file system to make a socket in or read a key from: give unix forwards at start (-forward-sock), or run with -sandbox=off")
