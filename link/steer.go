package link

import "encoding/binary"

// FlowHash is a hash of the frame's IP addresses and, for TCP and UDP, its
// ports, for a multi-queue link to keep each flow on one queue (its frames
// in order, and the peer's answers on the queue it is read from). Frames
// that are not IP, or too short to say, hash to 0. It reads the first piece
// only, where the stack and the switch put the headers.
func (f *Frame) FlowHash() uint32 {
	if len(f.Segs) == 0 {
		return 0
	}
	b := f.Segs[0]
	if len(b) < EthHdrLen {
		return 0
	}
	var addrs []byte
	var proto byte
	var l4 int
	switch binary.BigEndian.Uint16(b[12:]) {
	case 0x0800:
		if len(b) < 34 {
			return 0
		}
		addrs, proto, l4 = b[26:34], b[23], EthHdrLen+int(b[14]&0xf)*4
	case 0x86dd:
		if len(b) < 54 {
			return 0
		}
		addrs, proto, l4 = b[22:54], b[20], 54
	default:
		return 0
	}
	// FNV-1a: cheap, and any even spread does.
	h := uint32(2166136261)
	mix := func(p []byte) {
		for _, c := range p {
			h = (h ^ uint32(c)) * 16777619
		}
	}
	mix(addrs)
	if (proto == 6 || proto == 17) && len(b) >= l4+4 {
		mix(b[l4 : l4+4])
	}
	return h
}
