package flow

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpGSO says whether this system can send a run of equal-sized datagrams
// in one call (UDP_SEGMENT, Linux 4.18+); a socket that refuses it falls
// back to one write per datagram.
const udpGSO = true

// udpSegmentOOB fills oob (at least unix.CmsgSpace(2) bytes) with the
// control message that asks the kernel to cut the payload into datagrams
// of size bytes, and returns the part to send.
func udpSegmentOOB(oob []byte, size int) []byte {
	oob = oob[:unix.CmsgSpace(2)]
	clear(oob)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(size))
	return oob
}

// sendmsgN sends b with the control message oob on a connected socket.
func sendmsgN(fd int, b, oob []byte) (int, error) { return unix.SendmsgN(fd, b, oob, nil, 0) }
