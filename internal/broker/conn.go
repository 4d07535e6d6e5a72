package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/control"
	"github.com/slipway-net/slipway/internal/hostnet"
)

// Pair returns a connected socket pair: the launcher's end and the
// engine's (to pass to it as a file).
func Pair() (launcher *net.UnixConn, engine *os.File, err error) {
	fds, err := seqpacketPair()
	if err != nil {
		return nil, nil, fmt.Errorf("broker socket: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "broker")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("broker socket: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "broker-engine"), nil
}

// Handler is the launcher's answer to each kind of request: a descriptor
// it hands over (and then closes its own copy of), or an error.
type Handler interface {
	Listen(proto config.Proto, addr netip.AddrPort) (*os.File, error)
	Dial(endpoint int) (*os.File, error)
	Ready()
	Usage() (control.ProcessUsage, error)
	Resolv() ([]netip.AddrPort, error)
	// Connect and Ping serve strict mode; they decide the destination
	// by the policy themselves.
	Connect(proto config.Proto, addr netip.AddrPort) (*os.File, error)
	Ping(v6 bool) (*os.File, error)
	// StateLoad opens the state file for reading; an error that is
	// fs.ErrNotExist says there is none yet. StateSave replaces it by
	// what the engine writes into data (a pipe), which it closes.
	StateLoad() (*os.File, error)
	StateSave(data *os.File) error
}

// Serve answers the engine's requests on c until the engine's end
// closes. Requests are served one at a time, in order.
func Serve(c *net.UnixConn, h Handler, log *slog.Logger) error {
	buf := make([]byte, MaxMessage+1)
	// Room for one descriptor: the kernel closes any more the engine
	// sends, and flags the message MSG_CTRUNC.
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			return err
		}
		in := receivedFile(oob[:oobn])
		if n == 0 {
			if in != nil {
				in.Close()
			}
			return nil // the engine closed its end (or exited)
		}
		var f *os.File
		var a Answer
		req, err := ParseRequest(buf[:n])
		switch {
		case flags&unix.MSG_TRUNC != 0:
			err = fmt.Errorf("request longer than %d bytes", MaxMessage)
		case flags&unix.MSG_CTRUNC != 0:
			err = errors.New("more than one descriptor with the request")
		case err == nil && (in != nil) != (req.Op == OpStateSave):
			err = fmt.Errorf("%s: a descriptor where none belongs, or none where one does", req.Op)
		}
		if err == nil {
			switch req.Op {
			case OpListen:
				f, err = h.Listen(req.Proto, req.Addr)
			case OpDial:
				f, err = h.Dial(req.Endpoint)
			case OpReady:
				h.Ready()
			case OpConnect:
				f, err = h.Connect(req.Proto, req.Addr)
			case OpPing:
				f, err = h.Ping(req.Proto == ICMP6)
			case OpResolv:
				a.Servers, err = h.Resolv()
			case OpUsage:
				var u control.ProcessUsage
				if u, err = h.Usage(); err == nil {
					a.Usage = &u
				}
			case OpStateLoad:
				f, err = h.StateLoad()
				if errors.Is(err, fs.ErrNotExist) {
					a.NotExist, err = true, nil
				}
			case OpStateSave:
				err = h.StateSave(in)
				in = nil
			}
		}
		if in != nil {
			in.Close()
		}
		var oob []byte
		if err != nil {
			log.Debug("broker: request refused", "op", req.Op, "err", err)
			a.Error = err.Error()
		} else if f != nil {
			oob = unix.UnixRights(int(f.Fd()))
		}
		b, _ := json.Marshal(a)
		_, _, werr := c.WriteMsgUnix(b, oob, nil)
		if f != nil {
			f.Close()
		}
		if werr != nil {
			return werr
		}
	}
}

// receivedFile is the descriptor that came with a request, if any.
func receivedFile(oob []byte) *os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var f *os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			if f == nil {
				f = os.NewFile(uintptr(fd), "broker-request")
			} else {
				unix.Close(fd)
			}
		}
	}
	return f
}

// Conns is how many socket pairs a launcher and its engine share: one
// request is in flight on each, so a strict engine opens that many host
// sockets at once.
const Conns = 4

// Pairs returns n socket pairs (Pair).
func Pairs(n int) (launcher []*net.UnixConn, engine []*os.File, err error) {
	for range n {
		l, e, err := Pair()
		if err != nil {
			for i := range launcher {
				launcher[i].Close()
				engine[i].Close()
			}
			return nil, nil, err
		}
		launcher, engine = append(launcher, l), append(engine, e)
	}
	return launcher, engine, nil
}

// Client is the engine's end: one request in flight per connection, each
// request on whichever connection is free.
type Client struct {
	conns chan *net.UnixConn
}

// NewClient takes the engine's ends of the pairs.
func NewClient(files ...*os.File) (*Client, error) {
	cl := &Client{conns: make(chan *net.UnixConn, len(files))}
	for _, f := range files {
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("broker socket: %w", err)
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			return nil, errors.New("broker socket: not a unix socket")
		}
		cl.conns <- uc
	}
	if len(files) == 0 {
		return nil, errors.New("broker: no socket")
	}
	return cl, nil
}

// ErrRefused wraps the launcher's refusal.
var ErrRefused = errors.New("refused by the launcher")

// Do sends r and returns the descriptor that came back (nil for none).
func (cl *Client) Do(r Request) (*os.File, error) {
	f, _, err := cl.do(r)
	return f, err
}

func (cl *Client) do(r Request) (*os.File, Answer, error) {
	return cl.doWith(r, -1, nil)
}

// doWith sends r with the descriptor fd (none if negative), then runs
// then, if given, while the launcher works on the request, and returns
// the answer.
func (cl *Client) doWith(r Request, fd int, then func()) (*os.File, Answer, error) {
	var a Answer
	c := <-cl.conns
	defer func() { cl.conns <- c }()
	var rights []byte
	if fd >= 0 {
		rights = unix.UnixRights(fd)
	}
	if _, _, err := c.WriteMsgUnix(r.Encode(), rights, nil); err != nil {
		return nil, a, fmt.Errorf("broker: %w", err)
	}
	if then != nil {
		then()
	}
	buf := make([]byte, MaxMessage)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, a, fmt.Errorf("broker: %w", err)
	}
	if n == 0 {
		return nil, a, errors.New("broker: the launcher went away")
	}
	fd = -1
	if oobn > 0 {
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
			if fds, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(fds) == 1 {
				fd = fds[0]
			}
		}
	}
	if err := json.Unmarshal(buf[:n], &a); err != nil || a.Error != "" {
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			return nil, Answer{}, fmt.Errorf("broker: bad answer: %w", err)
		}
		return nil, a, fmt.Errorf("%s (%w)", a.Error, ErrRefused)
	}
	if fd < 0 {
		return nil, a, nil
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "broker-"+r.Op), a, nil
}

// Resolv asks for the host's resolv.conf nameservers as they are now.
func (cl *Client) Resolv() ([]netip.AddrPort, error) {
	f, a, err := cl.do(Request{Op: OpResolv})
	if f != nil {
		f.Close()
	}
	return a.Servers, err
}

// Usage asks for the engine's own process figures.
func (cl *Client) Usage() (control.ProcessUsage, error) {
	f, a, err := cl.do(Request{Op: OpUsage})
	if f != nil {
		f.Close()
	}
	if err == nil && a.Usage == nil {
		err = errors.New("broker: no usage in the answer")
	}
	if err != nil {
		return control.ProcessUsage{}, err
	}
	return *a.Usage, nil
}

// ListenTCP asks for a TCP listener on addr.
func (cl *Client) ListenTCP(addr netip.AddrPort) (*net.TCPListener, error) {
	f, err := cl.fileFor(Request{Op: OpListen, Proto: config.TCP, Addr: addr})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return hostnet.FileTCPListener(f)
}

// ListenUDP asks for a UDP socket bound to addr.
func (cl *Client) ListenUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	return cl.udp(Request{Op: OpListen, Proto: config.UDP, Addr: addr})
}

// udp asks for a UDP socket.
func (cl *Client) udp(r Request) (*net.UDPConn, error) {
	f, err := cl.fileFor(r)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return hostnet.FileUDPConn(f)
}

// ConnectTCP asks for a TCP socket connecting to addr and waits until
// the connection is made or ctx ends.
func (cl *Client) ConnectTCP(ctx context.Context, addr netip.AddrPort) (*net.TCPConn, error) {
	f, err := cl.fileFor(Request{Op: OpConnect, Proto: config.TCP, Addr: addr})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, errors.New("broker: not a TCP socket")
	}
	if err := awaitConnect(ctx, tc); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

// awaitConnect waits, on the runtime's poller, for the connect the
// launcher started to end, and returns how it ended.
func awaitConnect(ctx context.Context, tc *net.TCPConn) error {
	if d, ok := ctx.Deadline(); ok {
		tc.SetWriteDeadline(d)
		defer tc.SetWriteDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { tc.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var result error
	werr := rc.Write(func(fd uintptr) bool {
		soErr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			result = err
		case soErr != 0:
			result = syscall.Errno(soErr)
		default:
			if _, err := unix.Getpeername(int(fd)); err == unix.ENOTCONN {
				return false // still connecting: wait until writable
			}
		}
		return true
	})
	if werr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return werr
	}
	return result
}

// ConnectUDP asks for a UDP socket connected to addr.
func (cl *Client) ConnectUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	return cl.udp(Request{Op: OpConnect, Proto: config.UDP, Addr: addr})
}

// PingSocket asks for an ICMP echo socket and returns its descriptor,
// non-blocking and close-on-exec.
func (cl *Client) PingSocket(v6 bool) (int, error) {
	p := ICMP4
	if v6 {
		p = ICMP6
	}
	f, err := cl.fileFor(Request{Op: OpPing, Proto: p})
	if err != nil {
		return -1, err
	}
	defer f.Close()
	// The descriptor the file gave back is blocking again (Fd): the
	// flow's reader waits on the runtime's poller.
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err == nil {
		if err = unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			fd = -1
		}
	}
	return fd, err
}

// StateLoad asks for the state file, open for reading; an error
// satisfying errors.Is(err, fs.ErrNotExist) says there is none yet.
func (cl *Client) StateLoad() (*os.File, error) {
	f, a, err := cl.do(Request{Op: OpStateLoad})
	if err == nil && a.NotExist {
		if f != nil {
			f.Close()
		}
		return nil, fs.ErrNotExist
	}
	if err == nil && f == nil {
		err = errors.New("broker: no descriptor in the answer")
	}
	return f, err
}

// StateSave has the launcher replace the state file by b, atomically.
// b goes through a pipe the launcher reads (a message holds MaxMessage
// bytes at most).
func (cl *Client) StateSave(b []byte) error {
	if len(b) > MaxState {
		return fmt.Errorf("state of %d bytes, more than %d", len(b), MaxState)
	}
	p, err := cloexecPipe()
	if err != nil {
		return fmt.Errorf("broker: state pipe: %w", err)
	}
	w := os.NewFile(uintptr(p[1]), "state-pipe")
	sent := make(chan struct{})
	f, _, err := cl.doWith(Request{Op: OpStateSave}, p[0], func() {
		// The launcher has its own copy of the read end now.
		unix.Close(p[0])
		close(sent)
		// It reads until the end; if it stops early (an error), the
		// write fails and its answer says why.
		w.Write(b)
		w.Close()
	})
	select {
	case <-sent:
	default:
		unix.Close(p[0])
		w.Close()
	}
	if f != nil {
		f.Close()
	}
	return err
}

// Dial asks for a connection to --connect endpoint i.
func (cl *Client) Dial(i int) (net.Conn, error) {
	f, err := cl.fileFor(Request{Op: OpDial, Endpoint: i})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return net.FileConn(f)
}

// Ready tells the launcher the engine serves.
func (cl *Client) Ready() error {
	_, err := cl.Do(Request{Op: OpReady})
	return err
}

func (cl *Client) fileFor(r Request) (*os.File, error) {
	f, err := cl.Do(r)
	if err == nil && f == nil {
		err = errors.New("broker: no descriptor in the answer")
	}
	return f, err
}

// Pushes are the launcher's messages to the engine that the engine did
// not ask for, on a socket pair of their own (Pair): one JSON Push per
// message, a descriptor with it. The engine trusts its launcher; they are
// bounded all the same.
const (
	// PushLog comes with a new descriptor of --log-file, which the
	// launcher opened again (SIGHUP): the engine's stderr from now on.
	PushLog = "log"
)

// Push is one message of the launcher's.
type Push struct {
	Op string `json:"op"`
}

// SendPush sends op with f's descriptor; f stays the caller's.
func SendPush(c *net.UnixConn, op string, f *os.File) error {
	b, _ := json.Marshal(Push{Op: op}) // a plain field: cannot fail
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		_, _, werr = c.WriteMsgUnix(b, unix.UnixRights(int(fd)), nil)
	}); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("push %s: %w", op, werr)
	}
	return nil
}

// ReceivePushes calls handle with each push and its descriptor (which
// handle then owns) until the launcher's end closes. A push without
// exactly one descriptor, or of an unknown operation, is dropped.
func ReceivePushes(c *net.UnixConn, handle func(op string, f *os.File)) error {
	buf := make([]byte, MaxMessage)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			return err
		}
		f := receivedFile(oob[:oobn])
		if n == 0 {
			if f != nil {
				f.Close()
			}
			return nil
		}
		var p Push
		if json.Unmarshal(buf[:n], &p) != nil || f == nil || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || p.Op != PushLog {
			if f != nil {
				f.Close()
			}
			continue
		}
		handle(p.Op, f)
	}
}
