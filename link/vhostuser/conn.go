package vhostuser

import (
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// recvMessage reads one message: its header, its payload and the
// descriptors that came with either. The descriptors are the caller's
// (close them when done) even when an error is returned alongside them.
func recvMessage(c *net.UnixConn, buf []byte, oob []byte) (header, []byte, []int, error) {
	var fds []int
	var hb [hdrSize]byte
	if err := readFull(c, hb[:], oob, &fds, true); err != nil {
		return header{}, nil, fds, err
	}
	h := decodeHeader(hb[:])
	if err := checkHeader(h); err != nil {
		return h, nil, fds, err
	}
	payload := buf[:h.Size]
	if err := readFull(c, payload, oob, &fds, false); err != nil {
		return h, nil, fds, err
	}
	return h, payload, fds, nil
}

// readFull fills b from c, collecting passed descriptors into fds. A clean
// end of stream before the first byte of a message is io.EOF; anywhere
// else the message is truncated.
func readFull(c *net.UnixConn, b, oob []byte, fds *[]int, first bool) error {
	got := 0
	for got < len(b) {
		n, oobn, flags, _, err := c.ReadMsgUnix(b[got:], oob)
		if oobn > 0 {
			if perr := collectFDs(oob[:oobn], fds); perr != nil && err == nil {
				err = perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 && err == nil {
			err = ErrTooManyFDs
		}
		if len(*fds) > maxFDs && err == nil {
			err = fmt.Errorf("%w: %d", ErrTooManyFDs, len(*fds))
		}
		got += n
		if err == nil && n == 0 {
			err = io.EOF
		}
		if err != nil {
			if errors.Is(err, io.EOF) && (got > 0 || !first) {
				return fmt.Errorf("%w after %d of %d bytes", ErrTruncated, got, len(b))
			}
			return err
		}
	}
	return nil
}

func collectFDs(oob []byte, fds *[]int) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("vhost-user: control message: %w", err)
	}
	var bad error
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = fmt.Errorf("vhost-user: control message: %w", err)
			continue
		}
		*fds = append(*fds, got...)
	}
	return bad
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// oobSize has room for more descriptors than a message may carry, so that
// too many are seen (and refused) rather than cut off unnoticed.
var oobSize = unix.CmsgSpace(4 * (maxFDs + 8))
