// Package tftp is a small read-only TFTP server (RFC 1350) with the
// blksize, tsize and timeout options (RFC 2347-2349): what PXE firmware
// needs to fetch a boot loader or kernel from libslirp's tftp= directory.
// Files are read only from inside its root directory; writes are refused.
package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Opcodes.
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// Error codes.
const (
	errUndefined   = 0
	errNotFound    = 1
	errAccess      = 2
	errIllegalOp   = 4
	errUnknownTID  = 5
	defaultBlkSize = 512
	minBlkSize     = 8
	maxRequestLen  = 512 // a request larger than one default block is not one
	maxOptions     = 8
	// MaxBlockSize is the largest block RFC 2348 lets a client ask for.
	MaxBlockSize = 65464
)

// Request is a parsed read or write request.
type Request struct {
	Write    bool
	Filename string
	Mode     string
	Options  map[string]string // names lower-cased
}

// ErrMalformed is a packet that is not a TFTP request.
var ErrMalformed = errors.New("tftp: malformed request")

// ParseRequest parses a RRQ or WRQ: opcode, then NUL-terminated filename,
// mode and option name/value pairs.
func ParseRequest(b []byte) (Request, error) {
	var r Request
	if len(b) < 4 || len(b) > maxRequestLen {
		return r, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	switch binary.BigEndian.Uint16(b) {
	case opRRQ:
	case opWRQ:
		r.Write = true
	default:
		return r, fmt.Errorf("%w: opcode %d", ErrMalformed, binary.BigEndian.Uint16(b))
	}
	rest := b[2:]
	if len(rest) == 0 || rest[len(rest)-1] != 0 {
		return r, fmt.Errorf("%w: not NUL-terminated", ErrMalformed)
	}
	fields := strings.Split(string(rest[:len(rest)-1]), "\x00")
	if len(fields) < 2 || len(fields)%2 != 0 || fields[0] == "" {
		return r, fmt.Errorf("%w: %d fields", ErrMalformed, len(fields))
	}
	r.Filename, r.Mode = fields[0], strings.ToLower(fields[1])
	if r.Mode != "octet" && r.Mode != "netascii" {
		return r, fmt.Errorf("%w: mode %q", ErrMalformed, r.Mode)
	}
	for i := 2; i < len(fields); i += 2 {
		if r.Options == nil {
			r.Options = map[string]string{}
		}
		if len(r.Options) == maxOptions {
			break
		}
		r.Options[strings.ToLower(fields[i])] = fields[i+1]
	}
	return r, nil
}

// Config is the server's.
type Config struct {
	// Root is the directory files are served from.
	Root string
	// Open, if set, opens a file of Root (a path relative to it, checked
	// by Open to stay inside) in place of the server's own os.Root: a
	// sandboxed server that may open no file asks whoever may. Root is
	// then only named in messages.
	Open func(name string) (*os.File, error)
	// MaxBlockSize caps the blksize option (the link's MTU minus the IP,
	// UDP and TFTP headers); 0 means 1468.
	MaxBlockSize int
	// MaxSessions bounds the transfers running at once; 0 means 16.
	MaxSessions int
	// Timeout is the retransmission timeout (a client's timeout option
	// overrides it, 1-255 s); 0 means 1 s. Retries bounds them; 0 means 5.
	Timeout time.Duration
	Retries int
}

// Stats count the server's work.
type Stats struct {
	Requests  atomic.Uint64 `counter:"requests"`
	Malformed atomic.Uint64 `counter:"malformed"`
	Refused   atomic.Uint64 `counter:"refused"`
	Busy      atomic.Uint64 `counter:"busy"`
	Completed atomic.Uint64 `counter:"completed"`
	TimedOut  atomic.Uint64 `counter:"timed_out"`
}

// Server serves one root.
type Server struct {
	cfg   Config
	root  *os.Root // nil with cfg.Open
	log   *slog.Logger
	stats Stats
	slots chan struct{}
	wg    sync.WaitGroup
}

// New opens cfg.Root.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.MaxBlockSize == 0 {
		cfg.MaxBlockSize = 1468
	}
	if cfg.MaxBlockSize < minBlkSize || cfg.MaxBlockSize > MaxBlockSize {
		return nil, fmt.Errorf("tftp: MaxBlockSize %d is outside %d..%d", cfg.MaxBlockSize, minBlkSize, MaxBlockSize)
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 16
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 5
	}
	var root *os.Root
	if cfg.Open == nil {
		var err error
		if root, err = os.OpenRoot(cfg.Root); err != nil {
			return nil, fmt.Errorf("tftp: root: %w", err)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, root: root, log: log, slots: make(chan struct{}, cfg.MaxSessions)}, nil
}

// Stats are the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Serve answers requests arriving on pc (port 69) until ctx ends or pc
// fails; each transfer runs on its own socket from open (a new port, the
// transfer's TID). It waits for its transfers before returning.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, open func() (net.PacketConn, error)) error {
	defer s.wg.Wait()
	if s.root != nil {
		defer s.root.Close()
	}
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	buf := make([]byte, maxRequestLen+1)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tftp: %w", err)
		}
		s.stats.Requests.Add(1)
		req, err := ParseRequest(buf[:n])
		if err != nil {
			s.stats.Malformed.Add(1)
			pc.WriteTo(errorPacket(errIllegalOp, "not a TFTP request"), from)
			continue
		}
		if req.Write {
			s.stats.Refused.Add(1)
			pc.WriteTo(errorPacket(errAccess, "read-only server"), from)
			continue
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.stats.Busy.Add(1)
			pc.WriteTo(errorPacket(errUndefined, "too many transfers"), from)
			continue
		}
		conn, err := open()
		if err != nil {
			<-s.slots
			s.log.Warn("tftp: transfer socket", "err", err)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			defer conn.Close()
			s.transfer(conn, from, req)
		}()
	}
}

func errorPacket(code uint16, msg string) []byte {
	b := binary.BigEndian.AppendUint16(nil, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	return append(append(b, msg...), 0)
}

// transfer sends one file to peer, lock-step: each block until its ACK,
// retransmitted on timeout.
func (s *Server) transfer(conn net.PacketConn, peer net.Addr, req Request) {
	name := strings.TrimLeft(req.Filename, "/")
	open := s.cfg.Open
	if open == nil {
		open = s.root.Open
	}
	f, err := open(name)
	if err != nil {
		s.stats.Refused.Add(1)
		code := uint16(errAccess)
		if errors.Is(err, os.ErrNotExist) {
			code = errNotFound
		}
		conn.WriteTo(errorPacket(code, "cannot open "+req.Filename), peer)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		s.stats.Refused.Add(1)
		conn.WriteTo(errorPacket(errAccess, "not a file"), peer)
		return
	}
	blk, timeout := defaultBlkSize, s.cfg.Timeout
	var oack []byte
	for _, k := range []string{"blksize", "tsize", "timeout"} {
		v, ok := req.Options[k]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			continue
		case k == "blksize" && n >= minBlkSize:
			blk = min(n, s.cfg.MaxBlockSize)
			v = strconv.Itoa(blk)
		case k == "tsize":
			v = strconv.FormatInt(st.Size(), 10)
		case k == "timeout" && n >= 1 && n <= 255:
			timeout = time.Duration(n) * time.Second
		default:
			continue
		}
		if oack == nil {
			oack = binary.BigEndian.AppendUint16(nil, opOACK)
		}
		oack = append(append(append(append(oack, k...), 0), v...), 0)
	}
	ack := make([]byte, 4+16)
	// await sends pkt until peer ACKs block, and reports whether it did.
	await := func(pkt []byte, block uint16) bool {
		for try := 0; try <= s.cfg.Retries; try++ {
			if _, err := conn.WriteTo(pkt, peer); err != nil {
				return false
			}
			deadline := time.Now().Add(timeout)
			for {
				conn.SetReadDeadline(deadline)
				n, from, err := conn.ReadFrom(ack)
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						break
					}
					return false
				}
				if from.String() != peer.String() {
					// Another host's packet: RFC 1350 answers it with an error.
					conn.WriteTo(errorPacket(errUnknownTID, "unknown transfer"), from)
					continue
				}
				if n >= 4 && binary.BigEndian.Uint16(ack) == opERROR {
					return false
				}
				if n >= 4 && binary.BigEndian.Uint16(ack) == opACK && binary.BigEndian.Uint16(ack[2:]) == block {
					return true
				}
			}
		}
		s.stats.TimedOut.Add(1)
		return false
	}
	if oack != nil && !await(oack, 0) {
		return
	}
	pkt := make([]byte, 4+blk)
	binary.BigEndian.PutUint16(pkt, opDATA)
	for block := uint16(1); ; block++ { // wraps past 65535, as clients expect
		n, err := io.ReadFull(f, pkt[4:])
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			conn.WriteTo(errorPacket(errUndefined, "read error"), peer)
			return
		}
		binary.BigEndian.PutUint16(pkt[2:], block)
		if !await(pkt[:4+n], block) {
			return
		}
		if n < blk {
			s.stats.Completed.Add(1)
			return
		}
	}
}
