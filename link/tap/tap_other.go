//go:build !linux

// Package tap is a link over a Linux TAP device. TAP devices with
// virtio-net headers, and the network namespaces they serve, are Linux's:
// on other systems Create and FromFD fail with an error that wraps
// errors.ErrUnsupported, so code that imports the package still builds.
package tap

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/slipway-net/slipway/link"
)

// errLinuxOnly says why no TAP link exists here.
var errLinuxOnly = fmt.Errorf("tap: TAP links are Linux-only (this is %s): %w", runtime.GOOS, errors.ErrUnsupported)

// Link is a TAP device; none can be made on this system.
type Link struct {
	counters link.Counters
}

// Create fails: TAP devices are Linux-only.
func Create(name string, vnetHdr bool) (*Link, error) { return nil, errLinuxOnly }

// Attach fails: TAP devices are Linux-only.
func Attach(name string, vnetHdr bool) (*Link, error) { return nil, errLinuxOnly }

// MaxQueues is the most queues a TAP device has (the kernel's limit).
const MaxQueues = 256

// CreateQueues fails: TAP devices are Linux-only.
func CreateQueues(name string, vnetHdr bool, queues int) (*Link, error) { return nil, errLinuxOnly }

// FromFD fails: TAP devices are Linux-only.
func FromFD(fd int, name string, vnetHdr bool) (*Link, error) { return nil, errLinuxOnly }

// FromFDs fails: TAP devices are Linux-only.
func FromFDs(fds []int, name string, vnetHdr bool) (*Link, error) { return nil, errLinuxOnly }

func (l *Link) Read([][]byte, []int) (int, error)           { return 0, errLinuxOnly }
func (l *Link) Write([]link.Frame) (int, error)             { return 0, errLinuxOnly }
func (l *Link) BatchSize() int                              { return 1 }
func (l *Link) Offloads() bool                              { return false }
func (l *Link) Close() error                                { return errLinuxOnly }
func (l *Link) String() string                              { return "tap" }
func (l *Link) File() *os.File                              { return nil }
func (l *Link) Files() []*os.File                           { return nil }
func (l *Link) Queues() int                                 { return 1 }
func (l *Link) ReadQueue(int, [][]byte, []int) (int, error) { return 0, errLinuxOnly }
func (l *Link) Name() string                                { return "" }
func (l *Link) Counters() *link.Counters                    { return &l.counters }

var _ link.MultiQueue = (*Link)(nil)
