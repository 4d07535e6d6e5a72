package dhcp6

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/slipway-net/slipway/services/internal/servicetest"
)

// FuzzHandle feeds arbitrary datagrams to one long-lived server, so that
// fuzzed input also exercises lease state built up by earlier inputs. It
// checks that Handle never panics, that every reply is a well-formed
// server message for the same transaction, and that the bounds hold.
func FuzzHandle(f *testing.F) {
	cid, sid := clientIDOpt(duidLL(1)), serverIDOpt(serverDUID)
	hint := iaAddrOpt(netip.MustParseAddr("fd00::105"), 0, 0)
	seeds := [][]byte{
		msg(msgSolicit, 1, cid, elapsedOpt(0), iaNAOpt(1, 0, 0), oroOpt(23, 24)),
		msg(msgSolicit, 2, clientIDOpt(duidEN(2)), rapidOpt(), iaNAOpt(1, 0, 0), opt(optIAPD, u32(2), u32(0), u32(0))),
		msg(msgRequest, 3, cid, sid, iaNAOpt(1, 0, 0, hint), oroOpt(23, 24, 32)),
		msg(msgRenew, 4, cid, sid, iaNAOpt(1, 0, 0, hint)),
		msg(msgRebind, 5, clientIDOpt(duidLLT(3)), iaNAOpt(7, 0, 0, hint)),
		msg(msgRelease, 6, cid, sid, iaNAOpt(1, 0, 0, hint), iaNAOpt(2, 0, 0)),
		msg(msgDecline, 7, cid, sid, iaNAOpt(1, 0, 0, hint)),
		msg(msgConfirm, 8, cid, iaNAOpt(1, 0, 0, hint)),
		msg(msgInformationRequest, 9, elapsedOpt(0), oroOpt(23, 24, 32)),
		msg(msgSolicit, 10, cid, opt(optIATA, u32(3))),
		msg(msgRelayForw, 11),
		{},
	}

	s := servicetest.Build(f, Config{
		ServerDUID: serverDUID,
		Prefix:     netip.MustParsePrefix("fd00::/120"),
		RangeStart: netip.MustParseAddr("fd00::f0"),
		DNS:        []netip.Addr{dns3},
		Search:     []string{"example.org", "b.example.org"},
		MaxLeases:  4, // small, so the pool fills up
		Now:        (&servicetest.Clock{T: time.Unix(1e9, 0)}).Now,
	}, nil, servicetest.NoLog(New))

	counts := func() (uint64, uint64) { st := s.Stats(); return st.Received, st.Replied }
	servicetest.FuzzHandle(f, seeds, counts, func(t *testing.T, req []byte) bool {
		out, ok := s.Handle(req, clientLL)
		if !ok {
			return false
		}
		if len(out) < 4 || (out[0] != msgAdvertise && out[0] != msgReply) || !bytes.Equal(out[1:4], req[1:4]) {
			t.Fatalf("reply % x to % x", out, req)
		}
		var sids int
		if err := walkOptions(out[4:], func(code uint16, data []byte) error {
			switch code {
			case optServerID:
				sids++
				if !bytes.Equal(data, serverDUID) {
					t.Fatalf("server id % x", data)
				}
			case optIANA:
				if _, err := parseIA(code, data); err != nil {
					t.Fatalf("reply IA_NA: %v", err)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("reply options: %v", err)
		}
		if sids != 1 {
			t.Fatalf("%d server ids in reply", sids)
		}
		// maxIAs, maxAddrsPerIA and the configuration limits bound a
		// reply to a few KiB however the request is made.
		if len(out) > 4096 {
			t.Fatalf("reply of %d bytes", len(out))
		}
		for _, l := range s.Leases() {
			if !netip.MustParsePrefix("fd00::/120").Contains(l.Addr) {
				t.Fatalf("lease of %v outside the prefix", l.Addr)
			}
		}
		if n := s.table.Len(); n > 4 {
			t.Fatalf("%d entries, bound is 4", n)
		}
		return true
	})
}
