package netstack

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/slipway-net/slipway/link"
)

// endpoint is the stack's one NIC: a gVisor LinkEndpoint that takes frames
// from the switch (deliver) and hands the stack's frames to the switch
// (WritePackets). It claims both checksum offloads: inbound frames are
// validated here once (DropCounters.validate), and outbound TCP/UDP checksums are
// left partial and described in the frame's virtio-net header, so a TAP peer
// never has them computed at all and other links finish them in software.
type endpoint struct {
	mtu uint32
	mac tcpip.LinkAddress

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher

	output Output
	bufs   sync.Pool // *[]byte of link.BufSize
	writes sync.Pool // *frameBatch

	drops *DropCounters
	frags udp6Fragments
}

var (
	_ stack.LinkEndpoint = (*endpoint)(nil)
	_ stack.GSOEndpoint  = (*endpoint)(nil)
)

func newEndpoint(mtu uint32, mac tcpip.LinkAddress, output Output, drops *DropCounters) *endpoint {
	e := &endpoint{mtu: mtu, mac: mac, output: output, drops: drops}
	e.bufs.New = func() any {
		b := make([]byte, link.BufSize)
		return &b
	}
	e.writes.New = func() any { return new(frameBatch) }
	return e
}

func (e *endpoint) MTU() uint32                      { return e.mtu }
func (e *endpoint) SetMTU(mtu uint32)                {}
func (e *endpoint) MaxHeaderLength() uint16          { return header.EthernetMinimumSize }
func (e *endpoint) LinkAddress() tcpip.LinkAddress   { return e.mac }
func (e *endpoint) SetLinkAddress(tcpip.LinkAddress) {}
func (e *endpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired | stack.CapabilityRXChecksumOffload | stack.CapabilityTXChecksumOffload
}
func (e *endpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	e.mu.Unlock()
}
func (e *endpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}
func (e *endpoint) Wait()                                   {}
func (e *endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }
func (e *endpoint) Close()                                  {}
func (e *endpoint) SetOnCloseAction(func())                 {}

// AddHeader writes the Ethernet header; with spoofing on, the route may not
// carry a local link address, so the NIC's own is the default.
func (e *endpoint) AddHeader(pkt *stack.PacketBuffer) {
	src := pkt.EgressRoute.LocalLinkAddress
	if src == "" {
		src = e.mac
	}
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: src,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

func (e *endpoint) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// Output is where the stack's frames go: the switch.
type Output interface {
	// FromStack switches frames; their pieces (the stack's own slices)
	// are the caller's again when it returns.
	FromStack(frames []link.Frame)
	// AllLinksOffload reports whether every frame the stack sends goes
	// to a peer that segments TCP super-frames itself (GSO).
	AllLinksOffload() bool
}

// gsoMaxSize bounds the TCP super-frames the stack builds when its peers
// segment them: IPv4 or IPv6 headers, TCP with options and the payload
// must fit one IP packet (65535 bytes).
const gsoMaxSize = 65000

// GSOMaxSize implements stack.GSOEndpoint.
func (e *endpoint) GSOMaxSize() uint32 { return gsoMaxSize }

// SupportedGSO implements stack.GSOEndpoint. A TCP connection asks once,
// when it is established: while every link takes offloads, its segments
// leave as super-frames up to gsoMaxSize that the peer (a TAP device, in
// the guest's kernel) cuts to the MSS, so a small MTU no longer means one
// write per 1.4 KB. A link without offloads joining later drops (and
// counts) the super-frames of older connections sent its way; those go to
// their own guest's link, though.
func (e *endpoint) SupportedGSO() stack.SupportedGSO {
	if e.output.AllLinksOffload() {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// batchSize is how many frames leave in one call to the switch.
const batchSize = 16

// WritePackets sends the stack's packets as frames made of the packets'
// own header and payload slices, uncopied, in batches. A packet in more
// pieces than a batch holds is copied into one buffer.
func (e *endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	list := pkts.AsSlice()
	// The scratch is pooled: as locals the arrays would move to the heap
	// on every call.
	w := e.writes.Get().(*frameBatch)
	for _, pkt := range list {
		if pkt.Size() > link.MaxFrameLen {
			e.drops.TxTooLarge.Add(1)
			continue
		}
		if isUDP6Fragment(pkt) {
			w.flush(e.output)
			buf := make([]byte, link.VnetHdrLen+pkt.Size())
			flatten(buf, pkt)
			link.ClearVnetHdr(buf)
			for _, f := range e.frags.take(buf) {
				e.writeOne(w, f)
			}
			continue
		}
		if !w.add(pkt) {
			// More pieces than the scratch holds: rare; flatten it.
			w.flush(e.output)
			bp := e.bufs.Get().(*[]byte)
			buf := (*bp)[:link.VnetHdrLen+pkt.Size()]
			flatten(buf, pkt)
			e.writeOne(w, buf)
			e.bufs.Put(bp)
			continue
		}
		if w.n == batchSize || w.nseg+8 > len(w.segs) {
			w.flush(e.output)
		}
	}
	w.flush(e.output)
	e.writes.Put(w)
	return len(list), nil
}

// writeOne sends one contiguous frame (header+frame) on its own.
func (e *endpoint) writeOne(w *frameBatch, buf []byte) {
	w.one[0] = link.OnePiece(buf, &w.oneSeg)
	e.output.FromStack(w.one[:])
	w.one[0], w.oneSeg[0] = link.Frame{}, nil
}

// frameBatch collects consecutive packets as frames in pieces (the stack's
// own slices) for one call to the switch.
type frameBatch struct {
	hdrs   [batchSize][link.VnetHdrLen]byte
	frames [batchSize]link.Frame
	segs   [batchSize * 4][]byte
	n      int
	nseg   int
	one    [1]link.Frame // a frame sent on its own
	oneSeg [1][]byte
}

// add appends pkt as a frame; false if its pieces do not fit.
func (w *frameBatch) add(pkt *stack.PacketBuffer) bool {
	hdr := w.hdrs[w.n][:]
	setPartialChecksum(hdr, pkt)
	vl, off := pkt.AsViewList()
	first := w.nseg
	for v := vl.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b, off = b[off:], 0
		if w.nseg == len(w.segs) {
			clear(w.segs[first:w.nseg])
			w.nseg = first
			return false
		}
		w.segs[w.nseg] = b
		w.nseg++
	}
	w.frames[w.n] = link.Frame{Hdr: hdr, Segs: w.segs[first:w.nseg:w.nseg]}
	w.n++
	return true
}

// flush hands the collected frames to out and forgets the stack's slices.
func (w *frameBatch) flush(out Output) {
	if w.n > 0 {
		out.FromStack(w.frames[:w.n])
		clear(w.frames[:w.n])
		clear(w.segs[:w.nseg])
	}
	w.n, w.nseg = 0, 0
}

// flatten copies pkt into buf (VnetHdrLen+pkt.Size() bytes) as
// header+frame.
func flatten(buf []byte, pkt *stack.PacketBuffer) {
	setPartialChecksum(buf[:link.VnetHdrLen], pkt)
	off := link.VnetHdrLen
	vl, skip := pkt.AsViewList()
	for v := vl.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		off += copy(buf[off:], b[skip:])
		skip = 0
	}
}

// isUDP6Fragment reports whether pkt is a fragment of a UDP datagram sent
// over IPv6, whose checksum udp6Fragments completes.
func isUDP6Fragment(pkt *stack.PacketBuffer) bool {
	nh := pkt.NetworkHeader().Slice()
	return pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber &&
		len(nh) >= header.IPv6MinimumSize+header.IPv6FragmentHeaderSize &&
		nh[6] == uint8(header.IPv6FragmentHeader) &&
		nh[header.IPv6MinimumSize] == uint8(header.UDPProtocolNumber)
}

// setPartialChecksum fills a frame's virtio-net header. The stack left the
// TCP/UDP checksum empty (TX offload); store the pseudo-header sum in it
// (the transport header is the packet's own, rebuilt for every send) and
// mark the frame NEEDS_CSUM, exactly what a virtio device expects.
// Fragments and other protocols are complete already.
func setPartialChecksum(hdr []byte, pkt *stack.PacketBuffer) {
	link.ClearVnetHdr(hdr)
	var csumOff int
	switch pkt.TransportProtocolNumber {
	case header.TCPProtocolNumber:
		csumOff = 16
	case header.UDPProtocolNumber:
		csumOff = 6
	default:
		return
	}
	l4 := pkt.TransportHeader().Slice()
	nh := pkt.NetworkHeader().Slice()
	if len(l4) < csumOff+2 {
		return
	}
	var xsum uint16
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(nh)
		if len(nh) < header.IPv4MinimumSize || ip.More() || ip.FragmentOffset() != 0 {
			return
		}
		xsum = header.PseudoHeaderChecksum(pkt.TransportProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), ip.PayloadLength())
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(nh)
		// Only a transport header right after the fixed header is
		// described; the stack adds no extension headers to TCP/UDP.
		if len(nh) != header.IPv6MinimumSize || tcpip.TransportProtocolNumber(ip.NextHeader()) != pkt.TransportProtocolNumber {
			return
		}
		xsum = header.PseudoHeaderChecksum(pkt.TransportProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), ip.PayloadLength())
	default:
		return
	}
	binary.BigEndian.PutUint16(l4[csumOff:], xsum)
	start := len(pkt.LinkHeader().Slice()) + len(nh)
	h := link.VnetHdr{Flags: link.FlagNeedsCsum, CsumStart: uint16(start), CsumOffset: uint16(csumOff)}
	// A TCP super-frame (see SupportedGSO): the peer cuts it into
	// segments of MSS bytes, each with these headers.
	if g := pkt.GSOOptions; g.MSS > 0 && pkt.Data().Size() > int(g.MSS) {
		switch g.Type {
		case stack.GSOTCPv4:
			h.GSOType = link.GSOTCPv4
		case stack.GSOTCPv6:
			h.GSOType = link.GSOTCPv6
		}
		if h.GSOType != link.GSONone {
			h.GSOSize = g.MSS
			h.HdrLen = uint16(start + len(l4))
		}
	}
	h.Encode(hdr)
}

// headerSplit is how many leading bytes of a frame go into their own view:
// enough for Ethernet, IPv4 with options or IPv6, and TCP with options.
const headerSplit = 192

// deliver hands one validated inbound frame to the stack. The frame is
// copied: it belongs to the link reader and is reused for its next batch.
// Headers and payload go into separate views because the stack keeps a
// reference to the header view while parsing; were they one view, its next
// header access would clone the whole (up to 64 KiB) chunk.
func (e *endpoint) deliver(proto tcpip.NetworkProtocolNumber, frame []byte) {
	e.mu.RLock()
	d := e.dispatcher
	e.mu.RUnlock()
	if d == nil {
		return
	}
	var payload buffer.Buffer
	if len(frame) > 2*headerSplit {
		payload = buffer.MakeWithData(frame[:headerSplit])
		payload.Append(buffer.NewViewWithData(frame[headerSplit:]))
	} else {
		payload = buffer.MakeWithData(frame)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	if _, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize); !ok {
		pkt.DecRef()
		return
	}
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}

// DropCounters counts frames dropped before or at the stack, by reason.
type DropCounters struct {
	Runt        atomic.Uint64 `counter:"runt"`          // shorter than an Ethernet header
	UnknownType atomic.Uint64 `counter:"unknown_type"`  // not IPv4, IPv6 or ARP
	BadIPHeader atomic.Uint64 `counter:"bad_ip_header"` // truncated or inconsistent IP header
	BadChecksum atomic.Uint64 `counter:"bad_checksum"`  // IP, TCP or UDP checksum wrong
	BadL4Header atomic.Uint64 `counter:"bad_l4_header"` // truncated TCP/UDP header
	BadTCPFlags atomic.Uint64 `counter:"bad_tcp_flags"` // a SYN with FIN or RST
	TxTooLarge  atomic.Uint64 `counter:"tx_too_large"`  // stack produced a frame larger than any link carries
	Intercepted atomic.Uint64 `counter:"intercepted"`   // frames taken by an interceptor (router solicitations, echo requests to the outside)
	NotOurs     atomic.Uint64 `counter:"not_ours"`      // ARP/NDP asking for an address the stack does not own
}
