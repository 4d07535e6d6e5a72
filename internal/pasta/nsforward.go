package pasta

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/slipway-net/slipway/internal/accept"
)

// maxNSConns bounds the connections -T's listeners carry at once; more
// wait in the listeners' backlogs.
const maxNSConns = 1024

// nsDialTimeout bounds the connect to the host's port.
const nsDialTimeout = 10 * time.Second

// ServeNSForwards accepts on the listeners opened in the namespace (one
// file per forward, in order) and carries each connection to its
// forward's target on the host, until ctx ends.
func ServeNSForwards(ctx context.Context, fws []NSForward, files []*os.File, log *slog.Logger) error {
	slots := make(chan struct{}, maxNSConns)
	var lns []net.Listener
	for i, f := range files {
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return err
		}
		lns = append(lns, ln)
		fw := fws[i]
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
					carry(ctx, c, fw, log)
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

// carry copies one connection both ways, passing half-closes on.
func carry(ctx context.Context, c net.Conn, fw NSForward, log *slog.Logger) {
	defer c.Close()
	d := net.Dialer{Timeout: nsDialTimeout}
	h, err := d.DialContext(ctx, "tcp", fw.Target.String())
	if err != nil {
		log.Debug("-T: connect to the host", "target", fw.Target, "err", err)
		return
	}
	defer h.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if t, ok := dst.(*net.TCPConn); ok {
			t.CloseWrite()
		}
	}
	go half(h, c)
	go half(c, h)
	stop := context.AfterFunc(ctx, func() { c.Close(); h.Close() })
	wg.Wait()
	stop()
}
