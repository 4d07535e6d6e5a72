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
// validated here once (validateFrame), and outbound TCP/UDP checksums are
// left partial and described in the frame's virtio-net header, so a TAP peer
// never has them computed at all and other links finish them in software.
type endpoint struct {
	mtu uint32
	mac tcpip.LinkAddress

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher

	output func(frames [][]byte)
	bufs   sync.Pool // *[]byte of link.BufSize

	drops *DropCounters
}

var _ stack.LinkEndpoint = (*endpoint)(nil)

func newEndpoint(mtu uint32, mac tcpip.LinkAddress, output func([][]byte), drops *DropCounters) *endpoint {
	e := &endpoint{mtu: mtu, mac: mac, output: output, drops: drops}
	e.bufs.New = func() any {
		b := make([]byte, link.BufSize)
		return &b
	}
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

// WritePackets flattens each packet into a pooled frame buffer with its
// virtio-net header and passes the batch to the switch, which writes it
// synchronously, so the buffers are reused right after.
func (e *endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	list := pkts.AsSlice()
	var frames [16][]byte
	var held [16]*[]byte
	n := 0
	flush := func() {
		e.output(frames[:n])
		for i := 0; i < n; i++ {
			e.bufs.Put(held[i])
		}
		n = 0
	}
	for _, pkt := range list {
		size := pkt.Size()
		if size > link.MaxFrameLen {
			e.drops.TxTooLarge.Add(1)
			continue
		}
		bp := e.bufs.Get().(*[]byte)
		buf := (*bp)[:link.VnetHdrLen+size]
		off := link.VnetHdrLen
		for _, s := range pkt.AsSlices() {
			off += copy(buf[off:], s)
		}
		setPartialChecksum(buf, pkt)
		frames[n], held[n] = buf, bp
		n++
		if n == len(frames) {
			flush()
		}
	}
	if n > 0 {
		flush()
	}
	return len(list), nil
}

// setPartialChecksum fills the virtio-net header of an outbound frame. The
// stack left the TCP/UDP checksum empty (TX offload); store the pseudo-header
// sum in it and mark the frame NEEDS_CSUM, exactly what a virtio device
// expects. Fragments and other protocols are complete already.
func setPartialChecksum(buf []byte, pkt *stack.PacketBuffer) {
	link.ClearVnetHdr(buf)
	var csumOff uint16
	switch pkt.TransportProtocolNumber {
	case header.TCPProtocolNumber:
		csumOff = 16
	case header.UDPProtocolNumber:
		csumOff = 6
	default:
		return
	}
	frame := buf[link.VnetHdrLen:]
	l3 := frame[header.EthernetMinimumSize:]
	var start int
	var xsum uint16
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(l3)
		if ip.More() || ip.FragmentOffset() != 0 {
			return
		}
		hl := int(ip.HeaderLength())
		start = header.EthernetMinimumSize + hl
		xsum = header.PseudoHeaderChecksum(pkt.TransportProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(l3)-hl))
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(l3)
		// Only a transport header right after the fixed header is
		// described; the stack adds no extension headers to TCP/UDP.
		if ip.TransportProtocol() != pkt.TransportProtocolNumber {
			return
		}
		start = header.EthernetMinimumSize + header.IPv6MinimumSize
		xsum = header.PseudoHeaderChecksum(pkt.TransportProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), ip.PayloadLength())
	default:
		return
	}
	if start+int(csumOff)+2 > len(frame) {
		return
	}
	binary.BigEndian.PutUint16(frame[start+int(csumOff):], xsum)
	link.VnetHdr{Flags: link.FlagNeedsCsum, CsumStart: uint16(start), CsumOffset: csumOff}.Encode(buf)
}

// deliver hands one validated inbound frame (header+frame in buf, frame
// length size) to the stack. The frame is copied: buf belongs to the link
// reader and is reused for its next batch.
func (e *endpoint) deliver(proto tcpip.NetworkProtocolNumber, frame []byte) {
	e.mu.RLock()
	d := e.dispatcher
	e.mu.RUnlock()
	if d == nil {
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	if _, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize); !ok {
		pkt.DecRef()
		return
	}
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}

// DropCounters counts frames dropped before or at the stack, by reason.
type DropCounters struct {
	Runt        atomic.Uint64 // shorter than an Ethernet header
	UnknownType atomic.Uint64 // not IPv4, IPv6 or ARP
	BadIPHeader atomic.Uint64 // truncated or inconsistent IP header
	BadChecksum atomic.Uint64 // IP, TCP or UDP checksum wrong
	BadL4Header atomic.Uint64 // truncated TCP/UDP header
	TxTooLarge  atomic.Uint64 // stack produced a frame larger than any link carries
	Intercepted atomic.Uint64 // frames taken by an interceptor (ICMP echo to the host)
	ARPNotOurs  atomic.Uint64 // ARP requests for addresses of other guests, left to them
}
