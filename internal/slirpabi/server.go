package slirpabi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/network"
)

// The process shape (libslirp/shim/proc.h has the protocol): one
// Instance in a process of its own, driven by the shim in the host over a
// control socket (requests, each answered), a frames socket (the host's
// link to the network: bare frames, either way) and a data socket
// (guest-forward bytes and the host files the server asks for).

// ErrRefused wraps Serve's error when the host's settings were refused
// (and the shim told).
var ErrRefused = errors.New("settings refused")

// maxMsg is the largest message either socket carries.
const maxMsg = 1 + 8 + 65535 + 14

// oobSize holds the one descriptor a message may carry (a host forward's
// socket, a host file), with room to see that more came.
var oobSize = syscall.CmsgSpace(4 * 4)

// ServeOptions are what the process around Serve gives it.
type ServeOptions struct {
	// Base is the configuration the host's settings are laid over.
	Base config.Config
	Log  *slog.Logger
	// Host is what the process read for the network before it was
	// confined (the host's resolv.conf, an open pcap file); Serve adds the
	// shim's ways to the host's files (hostfiles.go).
	Host network.Host
	// Confine, if set, is called once the instance exists and before the
	// settings are answered, so before any guest input: the process
	// confines itself there. What it returns, if anything, the shim
	// prints for the host (a sandbox weaker than it should be).
	Confine func(config.Config) string
}

// Serve runs one instance for the shim at the other end of ctl, data and
// frames (SOCK_SEQPACKET connections) until the shim closes ctl.
//
// Goroutines: this one answers ctl; one reads the shim's answers on data;
// one moves guest-forward bytes onto data, woken by the instance's notify.
// Both end when Serve closes the instance and the sockets. Frames take
// none of these: frames is the network's link (NewOnSocket), read by its
// port and written by the switch.
func Serve(ctl, data, frames *net.UnixConn, o ServeOptions) error {
	buf := make([]byte, maxMsg)
	n, err := ctl.Read(buf)
	if err != nil {
		return fmt.Errorf("reading the settings: %w", err)
	}
	if n < 1 || buf[0] != 'c' {
		return errors.New("the shim's first message is not its settings")
	}
	wake := make(chan struct{}, 1)
	notify := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	files := newHostFiles(data)
	host := o.Host
	host.ReadResolvers, host.OpenTFTP = files.ReadResolvers, files.OpenTFTP
	var inst *Instance
	s, err := ParseSettings(string(buf[1:n]))
	if err == nil && s.TFTPPath == "" && o.Base.TFTPRoot != "" {
		// The shim opens TFTP files in the directory the host names.
		err = errors.New("tftp-root in " + EnvConfig + " is not served by the process shape: give the host's own TFTP directory (QEMU's tftp=DIR)")
	}
	if err == nil {
		inst, err = NewOnSocket(s, o.Base, frames, notify, o.Log, host)
	}
	if err != nil {
		frames.Close()
		// The shim prints it: this is the host's error to report.
		ctl.Write(append(intReply(-1), err.Error()...))
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	var note string
	if o.Confine != nil {
		note = o.Confine(inst.Config())
		inst.RefuseOwnBinds()
	}
	ctl.Write(append(intReply(0), note[:min(len(note), maxNote)]...))
	done := make(chan struct{})
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		toHost(inst, data, wake, done)
	}()
	inDone := make(chan struct{})
	go func() {
		defer close(inDone)
		fromHost(inst, data, files)
	}()
	err = answer(inst, ctl, buf)
	close(done)
	inst.Close()
	data.Close()
	<-outDone
	<-inDone
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// maxNote bounds the text after the settings' reply (the shim's buffer).
const maxNote = 1500

func intReply(r int) []byte {
	return binary.NativeEndian.AppendUint32([]byte{'R'}, uint32(int32(r)))
}

// toHost sends guest-forward bytes for the host until done.
func toHost(inst *Instance, data net.Conn, wake <-chan struct{}, done <-chan struct{}) {
	gbuf := make([]byte, 5+maxGuestFwdBuffer)
	for {
		select {
		case <-done:
			return
		case <-wake:
		}
		for {
			id, m := inst.TakeGuestForward(gbuf[5:min(len(gbuf), maxMsg)])
			if m == 0 {
				break
			}
			gbuf[0] = 'g'
			binary.NativeEndian.PutUint32(gbuf[1:], uint32(int32(id)))
			if _, err := data.Write(gbuf[:5+m]); err != nil {
				return
			}
		}
	}
}

// fromHost reads the shim's answers to the server's requests for host
// files.
func fromHost(inst *Instance, data *net.UnixConn, files *hostFiles) {
	buf := make([]byte, maxMsg)
	oob := make([]byte, oobSize)
	for {
		n, oobn, _, _, err := data.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		var fds []int
		if oobn > 0 {
			fds = rightsIn(oob[:oobn])
		}
		switch {
		case n > 0 && buf[0] == 'O':
			files.deliver(buf[:n], fds)
		default:
			closeFDs(fds)
			if inst != nil {
				inst.stats.InRunt.Add(1)
			}
		}
	}
}

func gfwdTarget(b []byte) (netip.Addr, uint16) {
	return netip.AddrFrom4([4]byte(b[:4])), uint16(binary.NativeEndian.Uint32(b[4:8]))
}

// answer serves control requests until the shim closes ctl.
func answer(inst *Instance, ctl *net.UnixConn, buf []byte) error {
	oob := make([]byte, oobSize)
	for {
		n, oobn, _, _, err := ctl.ReadMsgUnix(buf, oob)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.EOF
		}
		var fds []int
		if oobn > 0 {
			fds = rightsIn(oob[:oobn])
		}
		rep, err := request(inst, ctl, buf[:n], fds)
		if err != nil {
			return err
		}
		if _, err := ctl.Write(rep); err != nil {
			return err
		}
	}
}

func errnoReply(err error) []byte {
	if err == nil {
		return intReply(0)
	}
	return intReply(-int(Errno(err)))
}

func bytesReply(b []byte) []byte { return append([]byte{'S'}, b[:min(len(b), maxMsg-1)]...) }

// request answers one control message, which came with the descriptors
// fds (a host forward's socket, bound by the shim; any other is closed);
// an error ends the server.
func request(inst *Instance, ctl net.Conn, m []byte, fds []int) ([]byte, error) {
	var sock *os.File
	if len(fds) == 1 && m[0] == 'h' {
		sock = os.NewFile(uintptr(fds[0]), "hostfwd")
		defer sock.Close() // a no-op once AddGrantedForward took it
	} else {
		closeFDs(fds)
	}
	body := m[1:]
	switch m[0] {
	case 'h':
		if len(body) < 10 {
			return intReply(-int(syscall.EINVAL)), nil
		}
		add, flags := int32(binary.NativeEndian.Uint32(body)), int(int32(binary.NativeEndian.Uint32(body[4:])))
		hl := int(binary.NativeEndian.Uint16(body[8:]))
		if len(body) < 10+hl+2 {
			return intReply(-int(syscall.EINVAL)), nil
		}
		host := body[10 : 10+hl]
		gl := int(binary.NativeEndian.Uint16(body[10+hl:]))
		if len(body) < 12+hl+gl {
			return intReply(-int(syscall.EINVAL)), nil
		}
		switch {
		case add != 0 && sock != nil:
			return errnoReply(inst.AddGrantedForward(flags, host, body[12+hl:12+hl+gl], sock)), nil
		case add != 0:
			return errnoReply(inst.AddForward(flags, host, body[12+hl:12+hl+gl])), nil
		}
		return errnoReply(inst.RemoveForward(flags, host)), nil
	case 'G':
		if len(body) < 8 {
			return intReply(-int(syscall.EINVAL)), nil
		}
		a, port := gfwdTarget(body)
		inst.GuestForwardInput(netip.AddrPortFrom(a, port), body[8:])
		return intReply(0), nil
	case 'i':
		return bytesReply([]byte(inst.ConnectionInfo())), nil
	case 'n':
		return bytesReply([]byte(inst.NeighborInfo())), nil
	case 'a', 'd', 'o':
		if len(body) != 8 {
			return intReply(-int(syscall.EINVAL)), nil
		}
		a, port := gfwdTarget(body)
		target := netip.AddrPortFrom(a, port)
		switch m[0] {
		case 'a':
			id, err := inst.AddGuestForward(target)
			if err != nil {
				return errnoReply(err), nil
			}
			return intReply(id), nil
		case 'd':
			return errnoReply(inst.RemoveGuestForward(target)), nil
		default:
			return intReply(inst.GuestForwardRoom(target)), nil
		}
	case 's':
		var b bytes.Buffer
		if err := inst.SaveState(&b); err != nil {
			inst.Logger().Error("slirp_state_save", "err", err)
		}
		return bytesReply(b.Bytes()), nil
	case 'l':
		if len(body) != 4 {
			return intReply(-int(syscall.EINVAL)), nil
		}
		r := &shimReader{ctl: ctl}
		if err := inst.LoadState(int(int32(binary.NativeEndian.Uint32(body))), r); err != nil {
			if r.err != nil {
				return nil, r.err
			}
			inst.Logger().Error("slirp_state_load", "err", err)
			return intReply(StateErrno(err)), nil
		}
		return intReply(0), nil
	}
	return intReply(-int(syscall.ENOSYS)), nil
}

// shimReader reads the host's migration stream through the shim: each
// Read asks for up to len(p) bytes and gets what the host's read_cb gave.
type shimReader struct {
	ctl net.Conn
	err error // the control socket failed
}

func (r *shimReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	want := min(len(p), 65536)
	if _, err := r.ctl.Write(binary.NativeEndian.AppendUint32([]byte{'r'}, uint32(want))); err != nil {
		r.err = err
		return 0, err
	}
	buf := make([]byte, 1+want)
	n, err := r.ctl.Read(buf)
	if err != nil {
		r.err = err
		return 0, err
	}
	if n < 1 || buf[0] != 'S' {
		r.err = errors.New("the shim answered a read with something else")
		return 0, r.err
	}
	if n == 1 {
		return 0, io.EOF
	}
	return copy(p, buf[1:n]), nil
}

// MaxFiles is the hard limit on the sandboxed server's descriptors: its
// flows, published ports, DNS queries and pings at their limits, the
// host files it may hold, and room for the runtime's own and the few it
// inherited; a guest can make it hold no more host sockets than that.
func MaxFiles(cfg config.Config) uint64 {
	l := cfg.Limits
	return uint64(l.MaxFlows+l.MaxPublishedPorts+l.DNSMaxInFlight+l.MaxICMPFlows) + maxOpens + 64 + 1024
}
