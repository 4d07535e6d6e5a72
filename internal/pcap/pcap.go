// Package pcap writes Ethernet frames to a classic libpcap capture file that
// tcpdump and Wireshark read.
package pcap

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"
)

const (
	magicMicroseconds = 0xa1b2c3d4
	linkTypeEthernet  = 1
	snapLen           = 65535 + 14
)

// Writer appends frames to a capture. It is safe for concurrent use; each
// frame is flushed so a capture read while slipway runs is complete.
type Writer struct {
	mu  sync.Mutex
	w   *bufio.Writer
	c   io.Closer
	hdr [16]byte
	now func() time.Time
}

// NewWriter writes the file header to w and returns a Writer. If w is an
// io.Closer, Close closes it.
func NewWriter(w io.Writer) (*Writer, error) {
	pw := &Writer{w: bufio.NewWriterSize(w, 256<<10), now: time.Now}
	if c, ok := w.(io.Closer); ok {
		pw.c = c
	}
	var fh [24]byte
	binary.LittleEndian.PutUint32(fh[0:], magicMicroseconds)
	binary.LittleEndian.PutUint16(fh[4:], 2) // version 2.4
	binary.LittleEndian.PutUint16(fh[6:], 4)
	binary.LittleEndian.PutUint32(fh[16:], snapLen)
	binary.LittleEndian.PutUint32(fh[20:], linkTypeEthernet)
	if _, err := pw.w.Write(fh[:]); err != nil {
		return nil, fmt.Errorf("pcap: write header: %w", err)
	}
	if err := pw.w.Flush(); err != nil {
		return nil, fmt.Errorf("pcap: write header: %w", err)
	}
	return pw, nil
}

// WriteFrame records one Ethernet frame, given in one or more pieces.
func (pw *Writer) WriteFrame(pieces ...[]byte) error {
	t := pw.now()
	size := 0
	for _, p := range pieces {
		size += len(p)
	}
	n := min(size, snapLen)
	pw.mu.Lock()
	defer pw.mu.Unlock()
	binary.LittleEndian.PutUint32(pw.hdr[0:], uint32(t.Unix()))
	binary.LittleEndian.PutUint32(pw.hdr[4:], uint32(t.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(pw.hdr[8:], uint32(n))
	binary.LittleEndian.PutUint32(pw.hdr[12:], uint32(size))
	if _, err := pw.w.Write(pw.hdr[:]); err != nil {
		return fmt.Errorf("pcap: %w", err)
	}
	for _, p := range pieces {
		take := min(len(p), n)
		if _, err := pw.w.Write(p[:take]); err != nil {
			return fmt.Errorf("pcap: %w", err)
		}
		n -= take
	}
	if err := pw.w.Flush(); err != nil {
		return fmt.Errorf("pcap: %w", err)
	}
	return nil
}

// Close flushes and closes the underlying file.
func (pw *Writer) Close() error {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	err := pw.w.Flush()
	if pw.c != nil {
		if cerr := pw.c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
