package pasta

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/internal/accept"
	"github.com/slipway-net/slipway/internal/splice"
)

// maxNSConns bounds the connections -T's listeners carry at once; more
// wait in the listeners' backlogs.
const maxNSConns = 1024

// nsDialTimeout bounds the connect to the host's port.
const nsDialTimeout = 10 * time.Second

// HostDialer opens the host sockets of -T's and -U's targets: a sandboxed
// engine in strict mode, which may not connect, asks its launcher. A nil
// field dials itself.
type HostDialer struct {
	TCP func(ctx context.Context, target netip.AddrPort) (net.Conn, error)
	UDP func(target netip.AddrPort) (*net.UDPConn, error)
}

func (d HostDialer) tcp(ctx context.Context, target netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, nsDialTimeout)
	defer cancel()
	if d.TCP != nil {
		return d.TCP(ctx, target)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", target.String())
}

func (d HostDialer) udp(target netip.AddrPort) (*net.UDPConn, error) {
	if d.UDP != nil {
		return d.UDP(target)
	}
	return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
}

// ServeNSForwards serves the sockets opened in the namespace (one file
// per forward, in order): it carries each connection a TCP listener
// accepts, and each UDP socket's datagrams, to the forward's target on
// the host, dialled through d, until ctx ends.
func ServeNSForwards(ctx context.Context, fws []NSForward, files []*os.File, d HostDialer, log *slog.Logger) error {
	slots := make(chan struct{}, maxNSConns)
	var lns []io.Closer
	for i, f := range files {
		fw := fws[i]
		if fw.Proto == config.UDP {
			pc, err := net.FilePacketConn(f)
			f.Close()
			if err != nil {
				for _, l := range lns {
					l.Close()
				}
				return err
			}
			lns = append(lns, pc)
			go relayUDP(ctx, pc, fw, d, slots, log)
			continue
		}
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return err
		}
		lns = append(lns, ln)
		go func() {
			accept.Loop(ctx, log, "-T "+fw.Listen.String(), ln.Accept, func(c net.Conn) {
				select {
				case slots <- struct{}{}:
				default:
					c.Close() // at the bound: refuse rather than queue without end
					return
				}
				go func() {
					defer func() { <-slots }()
					carry(ctx, c, fw, d, log)
				}()
			})
		}()
	}
	go func() {
		<-ctx.Done()
		for _, l := range lns {
			l.Close()
		}
	}()
	return nil
}

// carry connects c to the forward's target on the host and joins the two.
func carry(ctx context.Context, c net.Conn, fw NSForward, d HostDialer, log *slog.Logger) {
	defer c.Close()
	h, err := d.tcp(ctx, fw.Target)
	if err != nil {
		log.Debug("-T: connect to the host", "target", fw.Target, "err", err)
		return
	}
	splice.Conns(ctx, c, h)
}

// udpIdle ends a -U session (one namespace source address) this long
// after its last datagram either way.
const udpIdle = 60 * time.Second

// relayUDP carries a -U socket's datagrams to the target: each source
// address in the namespace gets a socket of its own on the host, so
// answers find their way back; sessions take slots of the same bound as
// TCP connections and end when idle.
//
// State: sessions is touched only by this goroutine (the reader); each
// session's goroutine reads answers from its host socket and writes them
// to the namespace socket, which is safe for concurrent use, and on its
// way out tells the reader through gone, so the reader forgets it.
func relayUDP(ctx context.Context, pc net.PacketConn, fw NSForward, d HostDialer, slots chan struct{}, log *slog.Logger) {
	sessions := map[netip.AddrPort]*net.UDPConn{}
	// Room for every session there can be: a session's end never waits.
	gone := make(chan netip.AddrPort, maxNSConns)
	defer func() {
		for _, c := range sessions {
			c.Close()
		}
	}()
	buf := make([]byte, 65535)
	for {
		pc.SetReadDeadline(time.Now().Add(udpIdle))
		n, from, err := pc.ReadFrom(buf)
	drain:
		for {
			select {
			case src := <-gone:
				delete(sessions, src)
			default:
				break drain
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			log.Debug("-U: read in the namespace", "listen", fw.Listen, "err", err)
			return
		}
		src := from.(*net.UDPAddr).AddrPort()
		c := sessions[src]
		if c == nil {
			select {
			case slots <- struct{}{}:
			default:
				continue // at the bound: drop
			}
			var err error
			if c, err = d.udp(fw.Target); err != nil {
				<-slots
				log.Debug("-U: socket to the host", "target", fw.Target, "err", err)
				continue
			}
			sessions[src] = c
			go func(c *net.UDPConn) {
				defer func() { c.Close(); <-slots; gone <- src }()
				back := make([]byte, 65535)
				for {
					c.SetReadDeadline(time.Now().Add(udpIdle))
					n, err := c.Read(back)
					if err != nil {
						return
					}
					pc.WriteTo(back[:n], net.UDPAddrFromAddrPort(src))
				}
			}(c)
		}
		c.Write(buf[:n])
	}
}
