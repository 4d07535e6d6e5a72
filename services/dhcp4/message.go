package dhcp4

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Wire layout of a BOOTP/DHCP message (RFC 2131 section 2): a fixed 236-byte
// header, the 4-byte magic cookie, then options.
const (
	opRequest = 1
	opReply   = 2

	htypeEthernet = 1
	hlenEthernet  = 6

	offOp     = 0
	offHtype  = 1
	offHlen   = 2
	offXid    = 4
	offFlags  = 10
	offCiaddr = 12
	offYiaddr = 16
	offSiaddr = 20
	offGiaddr = 24
	offChaddr = 28
	offSname  = 44
	offFile   = 108
	fixedLen  = 236
	cookieLen = 4

	magicCookie = 0x63825363

	// minReplySize is what every client must accept (RFC 2131: 576-byte IP
	// datagrams), minus the IP and UDP headers around the DHCP message.
	minReplySize = 576 - 20 - 8
)

// DHCP message types (option 53 values, RFC 2132 section 9.6).
const (
	msgDiscover = 1
	msgOffer    = 2
	msgRequest  = 3
	msgDecline  = 4
	msgAck      = 5
	msgNak      = 6
	msgRelease  = 7
	msgInform   = 8
)

// Option codes used here (RFC 2132 unless noted).
const (
	optPad             = 0
	optSubnetMask      = 1
	optRouter          = 3
	optDNS             = 6
	optHostname        = 12
	optTFTPServerName  = 66
	optBootFileName    = 67
	optDomainName      = 15
	optInterfaceMTU    = 26
	optBroadcast       = 28
	optRequestedIP     = 50
	optLeaseTime       = 51
	optOverload        = 52
	optMessageType     = 53
	optServerID        = 54
	optParamRequest    = 55
	optMessage         = 56
	optMaxMessageSize  = 57
	optRenewalTime     = 58
	optRebindingTime   = 59
	optDomainSearch    = 119 // RFC 3397
	optEnd             = 255
	maxOptionDataBytes = 255
)

// Reasons a request is dropped, as reported by Stats.
const (
	dropShort         = "short"
	dropBadCookie     = "bad-cookie"
	dropNotRequest    = "not-bootrequest"
	dropBadHtype      = "bad-htype"
	dropBadHlen       = "bad-hlen"
	dropBadOptions    = "bad-options"
	dropNoMessageType = "no-message-type"
	dropUnsupported   = "unsupported-message-type"
	dropBadChaddr     = "bad-chaddr"
	dropOtherServer   = "other-server"
	dropMissingAddr   = "missing-address"
	dropPoolExhausted = "pool-exhausted"
	dropUnknownClient = "unknown-client"
	dropNoReply       = "no-reply-needed"
)

// parseError carries the Stats reason for a message that could not be parsed.
type parseError struct{ reason string }

func (e *parseError) Error() string { return "malformed DHCP message: " + e.reason }

// message is a parsed client request. Only fields the server acts on are kept.
type message struct {
	xid    [4]byte
	flags  uint16
	ciaddr netip.Addr
	giaddr netip.Addr
	chaddr [16]byte
	mtype  byte
	// opts holds each option's data; repeated options are concatenated in
	// order, as RFC 3396 requires, so long options survive being split.
	opts map[byte][]byte
}

// parseMessage validates and decodes a request. It never reads past b and
// rejects anything a well-behaved Ethernet DHCP client would not send.
func parseMessage(b []byte) (*message, error) {
	if len(b) < fixedLen+cookieLen {
		return nil, &parseError{dropShort}
	}
	if binary.BigEndian.Uint32(b[fixedLen:]) != magicCookie {
		return nil, &parseError{dropBadCookie}
	}
	if b[offOp] != opRequest {
		return nil, &parseError{dropNotRequest}
	}
	if b[offHtype] != htypeEthernet {
		return nil, &parseError{dropBadHtype}
	}
	if b[offHlen] != hlenEthernet {
		return nil, &parseError{dropBadHlen}
	}
	m := &message{
		flags:  binary.BigEndian.Uint16(b[offFlags:]),
		ciaddr: addrAt(b, offCiaddr),
		giaddr: addrAt(b, offGiaddr),
		opts:   make(map[byte][]byte),
	}
	copy(m.xid[:], b[offXid:])
	copy(m.chaddr[:], b[offChaddr:offChaddr+16])

	if err := parseOptions(b[fixedLen+cookieLen:], m.opts); err != nil {
		return nil, err
	}
	// Option overload (RFC 2132 section 9.3) moves further options into the
	// file and sname fields; RFC 3396 orders them options, file, sname.
	if ov, ok := m.opts[optOverload]; ok {
		if len(ov) != 1 || ov[0] < 1 || ov[0] > 3 {
			return nil, &parseError{dropBadOptions}
		}
		delete(m.opts, optOverload)
		if ov[0]&1 != 0 {
			if err := parseOptions(b[offFile:offFile+128], m.opts); err != nil {
				return nil, err
			}
		}
		if ov[0]&2 != 0 {
			if err := parseOptions(b[offSname:offSname+64], m.opts); err != nil {
				return nil, err
			}
		}
	}
	if err := checkOptionLengths(m.opts); err != nil {
		return nil, err
	}
	mt, ok := m.opts[optMessageType]
	if !ok {
		// Plain BOOTP: not served, slipway only speaks DHCP.
		return nil, &parseError{dropNoMessageType}
	}
	m.mtype = mt[0]
	return m, nil
}

// parseOptions decodes a TLV option area into opts. A missing End option is
// tolerated (some clients stop at the end of the buffer); a length running
// past the area is not.
func parseOptions(b []byte, opts map[byte][]byte) error {
	for i := 0; i < len(b); {
		code := b[i]
		i++
		switch code {
		case optPad:
			continue
		case optEnd:
			return nil
		}
		if i >= len(b) {
			return &parseError{dropBadOptions}
		}
		n := int(b[i])
		i++
		if i+n > len(b) {
			return &parseError{dropBadOptions}
		}
		opts[code] = append(opts[code], b[i:i+n]...)
		i += n
	}
	return nil
}

// checkOptionLengths rejects options the server reads whose length is not
// the fixed size the RFCs give them.
func checkOptionLengths(opts map[byte][]byte) error {
	fixed := map[byte]int{
		optMessageType:    1,
		optRequestedIP:    4,
		optServerID:       4,
		optMaxMessageSize: 2,
	}
	for code, n := range fixed {
		if v, ok := opts[code]; ok && len(v) != n {
			return &parseError{dropBadOptions}
		}
	}
	return nil
}

func addrAt(b []byte, off int) netip.Addr {
	return netip.AddrFrom4([4]byte(b[off : off+4]))
}

// optAddr returns an IPv4 address option, if present.
func (m *message) optAddr(code byte) (netip.Addr, bool) {
	v, ok := m.opts[code]
	if !ok {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(v)), true
}

// maxReply is the largest DHCP message the client says it accepts (option
// 57 counts the whole IP datagram, as ISC and most clients read it), never
// less than the RFC minimum.
func (m *message) maxReply() int {
	v, ok := m.opts[optMaxMessageSize]
	if !ok {
		return minReplySize
	}
	n := int(binary.BigEndian.Uint16(v)) - 20 - 8
	return max(n, minReplySize)
}

// replyBuilder assembles a reply: the header copied from the request, then
// options until the client's size limit.
type replyBuilder struct {
	buf   []byte
	limit int // total size the reply may reach, End option included
}

func newReply(req *message, mtype byte, yiaddr netip.Addr) *replyBuilder {
	limit := req.maxReply()
	b := make([]byte, fixedLen+cookieLen, limit)
	b[offOp] = opReply
	b[offHtype] = htypeEthernet
	b[offHlen] = hlenEthernet
	copy(b[offXid:], req.xid[:])
	binary.BigEndian.PutUint16(b[offFlags:], req.flags)
	if mtype != msgNak {
		// A NAK must carry no addresses (RFC 2131 table 3).
		putAddr(b, offCiaddr, req.ciaddr)
		putAddr(b, offYiaddr, yiaddr)
	}
	putAddr(b, offGiaddr, req.giaddr)
	copy(b[offChaddr:], req.chaddr[:])
	binary.BigEndian.PutUint32(b[fixedLen:], magicCookie)
	rb := &replyBuilder{buf: b, limit: limit}
	rb.add(optMessageType, []byte{mtype})
	return rb
}

func putAddr(b []byte, off int, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b[off:off+4], v[:])
	}
}

var errNoRoom = errors.New("option does not fit the client's message size")

// encodedLen is the wire size of an option's data once split into pieces
// of at most 255 bytes (RFC 3396).
func encodedLen(data []byte) int {
	pieces := (len(data) + maxOptionDataBytes - 1) / maxOptionDataBytes
	if pieces == 0 {
		pieces = 1
	}
	return len(data) + 2*pieces
}

// add appends one option, split as RFC 3396 allows when longer than 255
// bytes. It refuses, leaving the reply unchanged, when the option would not
// leave room for the End option within the client's limit.
func (rb *replyBuilder) add(code byte, data []byte) error {
	if len(rb.buf)+encodedLen(data)+1 > rb.limit {
		return errNoRoom
	}
	for {
		n := min(len(data), maxOptionDataBytes)
		rb.buf = append(rb.buf, code, byte(n))
		rb.buf = append(rb.buf, data[:n]...)
		data = data[n:]
		if len(data) == 0 {
			return nil
		}
	}
}

func (rb *replyBuilder) finish() []byte {
	rb.buf = append(rb.buf, optEnd)
	return rb.buf
}
