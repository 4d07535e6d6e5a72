package dhcp6

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Message types (RFC 8415 section 7.3).
const (
	msgSolicit            = 1
	msgAdvertise          = 2
	msgRequest            = 3
	msgConfirm            = 4
	msgRenew              = 5
	msgRebind             = 6
	msgReply              = 7
	msgRelease            = 8
	msgDecline            = 9
	msgReconfigure        = 10
	msgInformationRequest = 11
	msgRelayForw          = 12
)

// Option codes (RFC 8415 section 21, RFC 3646 for 23 and 24).
const (
	optClientID        = 1
	optServerID        = 2
	optIANA            = 3
	optIATA            = 4
	optIAAddr          = 5
	optORO             = 6
	optPreference      = 7
	optElapsedTime     = 8
	optStatusCode      = 13
	optRapidCommit     = 14
	optDNSServers      = 23
	optDomainList      = 24
	optIAPD            = 25
	optInfoRefreshTime = 32
)

// Status codes (RFC 8415 section 21.13).
const (
	statusSuccess       = 0
	statusNoAddrsAvail  = 2
	statusNoBinding     = 3
	statusNotOnLink     = 4
	statusNoPrefixAvail = 6
)

const (
	headerLen = 4 // message type, 3-byte transaction id
	// DUIDs are 2 to 130 bytes: a 2-byte type and at most 128 bytes more
	// (RFC 8415 section 11.1); a bare type identifies no one.
	minDUIDLen = 3
	maxDUIDLen = 130
	// maxIAs and maxAddrsPerIA bound the work and the reply one message
	// can cause. Real clients send one IA_NA (and perhaps one IA_PD) with
	// at most a few addresses.
	maxIAs        = 8
	maxAddrsPerIA = 8

	iaNAFixed   = 12 // IAID, T1, T2
	iaTAFixed   = 4  // IAID
	iaAddrFixed = 24 // address, preferred and valid lifetimes
)

// Reasons a message gets no reply, as reported by Stats.
const (
	dropShort         = "short"
	dropNotClientMsg  = "not-client-message"
	dropRelay         = "relay-message"
	dropBadOptions    = "bad-options"
	dropBadClientID   = "bad-client-id"
	dropBadIA         = "bad-ia"
	dropTooManyIAs    = "too-many-ias"
	dropNoClientID    = "no-client-id"
	dropNoServerID    = "no-server-id"
	dropUnexpectedSID = "unexpected-server-id"
	dropOtherServer   = "other-server"
	dropIAInInfoReq   = "ia-in-information-request"
	dropNoAddresses   = "confirm-without-addresses"
)

// parseError carries the Stats reason for a message that could not be parsed.
type parseError struct{ reason string }

func (e *parseError) Error() string { return "malformed DHCPv6 message: " + e.reason }

// ia is one identity association from a client message.
type ia struct {
	kind  uint16 // optIANA, optIATA or optIAPD
	iaid  uint32
	addrs []netip.Addr // from IAADDR options (IA_NA, IA_TA); prefixes of IA_PD are not kept
}

// message is a parsed client message. Only what the server acts on is kept.
type message struct {
	mtype       byte
	xid         [3]byte
	clientID    []byte // nil when absent
	serverID    []byte
	hasServerID bool
	ias         []ia
	hasORO      bool
	oro         []uint16
	rapidCommit bool
}

// parseMessage validates and decodes a client message. It never reads past
// b and keeps nothing that aliases it.
func parseMessage(b []byte) (*message, error) {
	if len(b) < headerLen {
		return nil, &parseError{dropShort}
	}
	m := &message{mtype: b[0]}
	copy(m.xid[:], b[1:4])
	switch m.mtype {
	case msgSolicit, msgRequest, msgConfirm, msgRenew, msgRebind, msgRelease, msgDecline, msgInformationRequest:
	case msgRelayForw:
		// slipway is the only server on the guest's link: there is no
		// relay in between to answer.
		return nil, &parseError{dropRelay}
	default:
		return nil, &parseError{dropNotClientMsg}
	}
	err := walkOptions(b[headerLen:], func(code uint16, data []byte) error {
		switch code {
		case optClientID:
			if m.clientID != nil || len(data) < minDUIDLen || len(data) > maxDUIDLen {
				return &parseError{dropBadClientID}
			}
			m.clientID = slices.Clone(data)
		case optServerID:
			if m.hasServerID {
				return &parseError{dropBadOptions}
			}
			m.hasServerID = true
			m.serverID = slices.Clone(data)
		case optIANA, optIATA, optIAPD:
			if len(m.ias) == maxIAs {
				return &parseError{dropTooManyIAs}
			}
			a, err := parseIA(code, data)
			if err != nil {
				return err
			}
			for _, other := range m.ias {
				if other.kind == a.kind && other.iaid == a.iaid {
					return &parseError{dropBadIA}
				}
			}
			m.ias = append(m.ias, a)
		case optORO:
			if len(data)%2 != 0 {
				return &parseError{dropBadOptions}
			}
			m.hasORO = true
			for i := 0; i < len(data); i += 2 {
				// Only the codes the server can send matter; keeping
				// just those bounds the list.
				if c := binary.BigEndian.Uint16(data[i:]); isConfigOption(c) && !slices.Contains(m.oro, c) {
					m.oro = append(m.oro, c)
				}
			}
		case optRapidCommit:
			if len(data) != 0 {
				return &parseError{dropBadOptions}
			}
			m.rapidCommit = true
		}
		// Elapsed time, user and vendor classes and the rest carry
		// nothing the server uses.
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// walkOptions calls fn for each option of an option area. An option that
// runs past the end is an error; fn's error stops the walk.
func walkOptions(b []byte, fn func(code uint16, data []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return &parseError{dropBadOptions}
		}
		code := binary.BigEndian.Uint16(b)
		n := int(binary.BigEndian.Uint16(b[2:]))
		if 4+n > len(b) {
			return &parseError{dropBadOptions}
		}
		if err := fn(code, b[4:4+n]); err != nil {
			return err
		}
		b = b[4+n:]
	}
	return nil
}

// parseIA decodes an IA_NA, IA_TA or IA_PD option's data.
func parseIA(kind uint16, data []byte) (ia, error) {
	fixed := iaNAFixed
	if kind == optIATA {
		fixed = iaTAFixed
	}
	if len(data) < fixed {
		return ia{}, &parseError{dropBadIA}
	}
	a := ia{kind: kind, iaid: binary.BigEndian.Uint32(data)}
	err := walkOptions(data[fixed:], func(code uint16, d []byte) error {
		if code != optIAAddr || kind == optIAPD {
			return nil
		}
		if len(d) < iaAddrFixed || len(a.addrs) == maxAddrsPerIA {
			return &parseError{dropBadIA}
		}
		a.addrs = append(a.addrs, netip.AddrFrom16([16]byte(d[:16])))
		return nil
	})
	if err != nil {
		// A malformed option inside an IA is the IA's fault.
		return ia{}, &parseError{dropBadIA}
	}
	return a, nil
}

// isConfigOption reports whether code is an option the server sends when
// configured and asked for.
func isConfigOption(code uint16) bool {
	return code == optDNSServers || code == optDomainList || code == optInfoRefreshTime
}

// builder assembles a server message.
type builder struct{ b []byte }

func newBuilder(mtype byte, xid [3]byte) *builder {
	b := make([]byte, 0, 256)
	b = append(b, mtype, xid[0], xid[1], xid[2])
	return &builder{b: b}
}

// add appends one option with the given data pieces.
func (w *builder) add(code uint16, data ...[]byte) {
	at := w.begin(code)
	for _, d := range data {
		w.b = append(w.b, d...)
	}
	w.end(at)
}

// begin starts an option whose content follows; end fills in its length.
// Options nest: an IA's addresses go between its begin and end.
func (w *builder) begin(code uint16) int {
	w.b = binary.BigEndian.AppendUint16(w.b, code)
	w.b = append(w.b, 0, 0)
	return len(w.b)
}

func (w *builder) end(at int) {
	binary.BigEndian.PutUint16(w.b[at-2:], uint16(len(w.b)-at))
}

func (w *builder) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }

func (w *builder) status(code uint16, text string) {
	at := w.begin(optStatusCode)
	w.b = binary.BigEndian.AppendUint16(w.b, code)
	w.b = append(w.b, text...)
	w.end(at)
}
