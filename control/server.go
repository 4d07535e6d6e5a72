// Package control serves slipway's control API on a unix socket: the
// HTTP/JSON API under /v1 (published ports, leases, links, flows,
// statistics, events), Prometheus metrics, gvproxy's forwarder API, and
// slirp4netns's JSON API on the same socket, told apart by the first byte a
// client sends.
package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-net/slipway/internal/accept"
	"github.com/slipway-net/slipway/network"
)

// Bounds on what clients of the socket can hold.
const (
	// MaxConns bounds connections served at once; more are closed on
	// arrival.
	MaxConns = 64
	// MaxBody bounds a request body (HTTP) or request (slirp4netns).
	MaxBody = 64 << 10
	// firstByteTimeout bounds how long a new connection may stay silent,
	// and how long a slirp4netns request may take to arrive.
	firstByteTimeout = 10 * time.Second
)

// Server is a running control API.
type Server struct {
	n    *network.Network
	log  *slog.Logger
	path string
	// remove: Close removes the socket file (Listen made it).
	remove bool
	// usage, if set, answers /metrics' process_* metrics instead of
	// this process's /proc.
	usage ProcessUsageFunc
	ln    *net.UnixListener
	http  *http.Server
	// httpConns carries the connections that speak HTTP to http.
	httpConns *connQueue
	slots     chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	// onShutdown ends the process after POST /v1/shutdown (OnShutdown);
	// shuttingDown is set once one was accepted.
	onShutdown   atomic.Pointer[func()]
	shuttingDown atomic.Bool
}

// Listen creates the API socket at path, mode 0600, and returns a server
// for n; Serve runs it. A stale socket left by a dead process is replaced;
// one that a live process answers on is an error.
func Listen(path string, n *network.Network, log *slog.Logger) (*Server, error) {
	ln, err := ListenSocket(path)
	if err != nil {
		return nil, err
	}
	s := NewServer(ln, path, n, log, nil)
	s.remove = true
	return s, nil
}

// ListenSocket creates the API socket at path as Listen does, for a
// launcher that hands it to a sandboxed engine (NewServer); the launcher
// removes the file.
func ListenSocket(path string) (*net.UnixListener, error) {
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("--api-socket %s: %w", path, err)
	}
	return ln, nil
}

// NewServer serves n's API on ln, the socket ListenSocket made at path;
// Close leaves its file alone. usage, if not nil, answers the process_*
// metrics: a sandboxed engine has no /proc to read them from.
func NewServer(ln *net.UnixListener, path string, n *network.Network, log *slog.Logger, usage ProcessUsageFunc) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		n: n, log: log, path: path, ln: ln, usage: usage,
		httpConns: newConnQueue(ln.Addr()),
		slots:     make(chan struct{}, MaxConns),
	}
	s.http = &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: firstByteTimeout,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*peekedConn); ok {
				return context.WithValue(ctx, fdConnKey{}, pc.fdConn)
			}
			return ctx
		},
	}
	return s
}

// listenPrivate binds the socket where nobody else can reach it yet (a
// fresh directory of mode 0700 beside path), sets its mode to 0600 and
// renames it into place, so it is never reachable with wider permissions
// and the process umask is left alone.
func listenPrivate(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, errors.New("exists and is not a socket")
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, errors.New("another process is serving on it")
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sw")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The file moves; Close must not unlink by the old name. Server.Close
	// removes it.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve accepts clients until Close; it returns nil after Close.
func (s *Server) Serve() error {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.http.Serve(s.httpConns)
	}()
	return accept.Loop(context.Background(), s.log, "api "+s.path, s.ln.AcceptUnix, func(c *net.UnixConn) {
		select {
		case s.slots <- struct{}{}:
		default:
			s.log.Warn("api: too many connections; closing a new one", "max", MaxConns)
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.route(c)
		}()
	})
}

// route reads the first byte: '{' is a slirp4netns request, anything else
// is HTTP.
func (s *Server) route(c *net.UnixConn) {
	release := sync.OnceFunc(func() { <-s.slots })
	fc := newFDConn(c)
	br := bufio.NewReaderSize(fc, 4096)
	c.SetReadDeadline(time.Now().Add(firstByteTimeout))
	first, err := br.Peek(1)
	if err != nil {
		fc.Close()
		release()
		return
	}
	if first[0] == '{' {
		s.serveSlirp(c, br)
		fc.Close()
		release()
		return
	}
	c.SetReadDeadline(time.Time{})
	if !s.httpConns.put(&peekedConn{fdConn: fc, r: br, release: release}) {
		fc.Close()
		release()
	}
}

// Close stops the server: the socket, every connection (event streams
// included), and removes the socket file.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.ln.Close()
		s.http.Close()
		s.httpConns.Close()
		if s.remove {
			os.Remove(s.path)
		}
	})
	s.wg.Wait()
	return nil
}

// peekedConn is a connection whose first bytes were read ahead for
// routing; it gives its slot back when closed.
type peekedConn struct {
	*fdConn
	r       *bufio.Reader
	release func()
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (c *peekedConn) Close() error {
	c.release()
	return c.fdConn.Close()
}

// connQueue is a net.Listener fed with connections already accepted.
type connQueue struct {
	addr   net.Addr
	c      chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, c: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) put(c net.Conn) bool {
	select {
	case q.c <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.c:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closed.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
