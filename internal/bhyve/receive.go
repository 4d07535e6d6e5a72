package bhyve

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/internal/nvlist"
)

// MaxConfigSize bounds bhyve's configuration message.
const MaxConfigSize = 64 << 10

// ErrHangup reports that bhyve closed its end of the socket. The message
// is the one bhyve's own helper exits with.
var ErrHangup = errors.New("parent process closed connection")

// ReadConfig reads the configuration bhyve sends first on conn, waiting
// until deadline. libnv's reader counts bytes rather than messages, so a
// list longer than one message is collected from the following ones.
func ReadConfig(conn *net.UnixConn, deadline time.Time) (Config, error) {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return Config{}, err
	}
	defer conn.SetReadDeadline(time.Time{})
	var data []byte
	want := -1
	buf := make([]byte, MaxConfigSize+1)
	for want < 0 || len(data) < want {
		n, _, flags, _, err := conn.ReadMsgUnix(buf, nil)
		if errors.Is(err, io.EOF) || err == nil && n == 0 {
			if len(data) > 0 {
				return Config{}, fmt.Errorf("%w: bhyve hung up after %d bytes of its configuration", ErrConfig, len(data))
			}
			return Config{}, ErrHangup
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return Config{}, errors.New("bhyve sent no configuration in time")
			}
			return Config{}, fmt.Errorf("reading the configuration: %w", err)
		}
		if flags&unix.MSG_TRUNC != 0 || len(data)+n > MaxConfigSize {
			return Config{}, fmt.Errorf("%w: configuration larger than %d bytes", ErrConfig, MaxConfigSize)
		}
		data = append(data, buf[:n]...)
		if want < 0 && len(data) >= nvlist.HeaderSize {
			if want, err = nvlist.SizeOf(data); err != nil {
				return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
			}
			if want > MaxConfigSize {
				return Config{}, fmt.Errorf("%w: configuration of %d bytes, more than %d", ErrConfig, want, MaxConfigSize)
			}
		}
	}
	l, err := nvlist.Unpack(data, nvlist.Limits{})
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return FromList(l)
}
