package dns

import (
	"errors"
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
)

// query is a guest query that is to be forwarded.
type query struct {
	raw    []byte // exactly as the guest sent it, forwarded unchanged
	header dnsmessage.Header
	q      dnsmessage.Question
	// edns: the query carries an OPT record, so a reply built here must
	// carry one too (RFC 6891, section 7).
	edns bool
}

// ednsUDPSize is the UDP payload size slipway's own replies advertise:
// the size that avoids fragmentation on any path (DNS flag day 2020).
const ednsUDPSize = 1232

// Reasons a query is not answered at all.
const (
	dropShort    = "short"
	dropResponse = "response"
)

// inspect decides what to do with a guest message. It returns either a
// query to forward, or a reply built here (local answer, FORMERR,
// NOTIMP), or neither when the message must be dropped (why says so). raw
// is copied into the query, so the caller may reuse its buffer.
func (f *Forwarder) inspect(raw []byte) (q *query, reply []byte, why string) {
	var p dnsmessage.Parser
	h, err := p.Start(raw)
	if err != nil {
		return nil, nil, dropShort
	}
	if h.Response {
		// Answering a response could set two resolvers talking in a loop.
		return nil, nil, dropResponse
	}
	if h.OpCode != 0 {
		f.stats.notImp.Add(1)
		return nil, errorReply(h, nil, dnsmessage.RCodeNotImplemented, false), ""
	}
	question, err := p.Question()
	if err != nil {
		f.stats.formErr.Add(1)
		return nil, errorReply(h, nil, dnsmessage.RCodeFormatError, false), ""
	}
	// Exactly one question: that is all the DNS defines an answer for, and
	// what the upstream's answer is checked against.
	if _, err := p.Question(); !errors.Is(err, dnsmessage.ErrSectionDone) {
		f.stats.formErr.Add(1)
		return nil, errorReply(h, nil, dnsmessage.RCodeFormatError, false), ""
	}
	edns := hasOPT(&p)
	if question.Class == dnsmessage.ClassINET || question.Class == dnsmessage.ClassANY {
		if addrs, nx, ok := f.names.Load().lookup(lowerASCII(question.Name.String())); ok {
			f.stats.local.Add(1)
			if nx {
				return nil, errorReply(h, &question, dnsmessage.RCodeNameError, edns), ""
			}
			return nil, localReply(h, question, addrs, edns), ""
		}
	}
	return &query{raw: append([]byte(nil), raw...), header: h, q: question, edns: edns}, nil, ""
}

// hasOPT reports whether the rest of the message p reads (past its
// question) has an OPT record among its additional records. A message
// that does not parse that far has none.
func hasOPT(p *dnsmessage.Parser) bool {
	if p.SkipAllAnswers() != nil || p.SkipAllAuthorities() != nil {
		return false
	}
	for {
		rh, err := p.AdditionalHeader()
		if err != nil {
			return false
		}
		if rh.Type == dnsmessage.TypeOPT {
			return true
		}
		if p.SkipAdditional() != nil {
			return false
		}
	}
}

// addOPT ends a reply under construction with an OPT record.
func addOPT(b *dnsmessage.Builder) error {
	if err := b.StartAdditionals(); err != nil {
		return err
	}
	var rh dnsmessage.ResourceHeader
	if err := rh.SetEDNS0(ednsUDPSize, dnsmessage.RCodeSuccess, false); err != nil {
		return err
	}
	return b.OPTResource(rh, dnsmessage.OPTResource{})
}

// replyHeader starts a reply to h: same ID, opcode and RD bit. Recursion
// is available, since the forwarder recurses through its upstreams.
func replyHeader(h dnsmessage.Header, rcode dnsmessage.RCode) dnsmessage.Header {
	return dnsmessage.Header{
		ID:                 h.ID,
		Response:           true,
		OpCode:             h.OpCode,
		RecursionDesired:   h.RecursionDesired,
		RecursionAvailable: true,
		RCode:              rcode,
	}
}

// errorReply builds a reply carrying only an rcode, echoing the question
// when there is one, with an OPT record if edns. Building it cannot fail
// for a question that was parsed; if it did, an empty reply (dropped by
// the callers) is better than a panic.
func errorReply(h dnsmessage.Header, q *dnsmessage.Question, rcode dnsmessage.RCode, edns bool) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), replyHeader(h, rcode))
	if q != nil {
		if err := b.StartQuestions(); err != nil {
			return nil
		}
		if err := b.Question(*q); err != nil {
			return nil
		}
	}
	if edns && addOPT(&b) != nil {
		return nil
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// localReply answers a question about a local name: its A or AAAA
// records, or no records (NODATA) for other types, so such queries never
// leak to the upstream; with an OPT record if edns (the query had one).
func localReply(h dnsmessage.Header, q dnsmessage.Question, addrs []netip.Addr, edns bool) []byte {
	rh := replyHeader(h, dnsmessage.RCodeSuccess)
	rh.Authoritative = true
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil
	}
	if err := b.Question(q); err != nil {
		return nil
	}
	if err := b.StartAnswers(); err != nil {
		return nil
	}
	for _, a := range addrs {
		hdr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: localTTL}
		var err error
		switch {
		case a.Is4() && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL):
			err = b.AResource(hdr, dnsmessage.AResource{A: a.As4()})
		case a.Is6() && (q.Type == dnsmessage.TypeAAAA || q.Type == dnsmessage.TypeALL):
			err = b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil
		}
	}
	if edns && addOPT(&b) != nil {
		return nil
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// matches reports whether resp answers q: a response with the same ID and
// opcode and exactly the same question. Anything else on the socket (a
// late answer to another query, a spoofing attempt) is ignored.
func matches(resp []byte, q *query) bool {
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil || !h.Response || h.ID != q.header.ID || h.OpCode != q.header.OpCode {
		return false
	}
	got, err := p.Question()
	if err != nil {
		return false
	}
	if _, err := p.Question(); !errors.Is(err, dnsmessage.ErrSectionDone) {
		return false
	}
	return got.Type == q.q.Type && got.Class == q.q.Class &&
		lowerASCII(got.Name.String()) == lowerASCII(q.q.Name.String())
}
