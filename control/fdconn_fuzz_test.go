package control

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzParseRights feeds recvmsg control buffers to the parser of passed
// descriptors: it never panics, never returns more descriptors than the
// buffer has room for, and a well-formed SCM_RIGHTS message (what the
// kernel writes) gives back exactly its descriptors.
func FuzzParseRights(f *testing.F) {
	f.Add(unix.UnixRights(7), 0)
	f.Add(unix.UnixRights(3, 4), 0)
	f.Add(append(unix.UnixRights(5), unix.UnixCredentials(&unix.Ucred{Pid: 1})...), 0)
	f.Add(unix.UnixRights(9), unix.MSG_CTRUNC)
	f.Add([]byte{}, 0)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0}, 0)
	f.Add(unix.UnixRights(1)[:10], 0)
	f.Fuzz(func(t *testing.T, oob []byte, flags int) {
		fds, err := parseRights(oob, flags)
		if len(fds) > len(oob)/4 {
			t.Fatalf("%d descriptors from %d bytes", len(fds), len(oob))
		}
		if flags&unix.MSG_CTRUNC != 0 && err == nil {
			t.Fatal("a truncated control message was accepted")
		}
		// The same descriptors, framed as the kernel does, come back whole.
		if len(fds) > 0 {
			again, err := parseRights(unix.UnixRights(fds...), 0)
			if err != nil || !slices.Equal(again, fds) {
				t.Fatalf("round trip %v: %v %v", fds, again, err)
			}
		}
	})
}

// FuzzLinkRequest: a POST /v1/links body is accepted only with a kind
// slipway has a transport for, a name that prints on one line, and queues
// for vhost-user alone.
func FuzzLinkRequest(f *testing.F) {
	for _, s := range []string{`{"kind":"stream","name":"vm1-net0"}`, `{"kind":"dgram"}`, `{"kind":"seqpacket","name":""}`,
		`{"kind":"vhost-user"}`, `{"kind":"tap"}`, `{}`, `{"kind":"stream","name":"a\u0000b"}`, `{"kind":"stream","fd":3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req LinkRequest
		if decodeJSON(bytes.NewReader(b), &req) != nil {
			return
		}
		kind, err := linkKind(req.Kind)
		known := req.Kind == KindStream || req.Kind == KindDgram || req.Kind == KindSeqpacket || req.Kind == KindVhostUser
		if (err == nil) != known {
			t.Fatalf("kind %q: %v", req.Kind, err)
		}
		if err != nil {
			return
		}
		if string(kind) != req.Kind {
			t.Fatalf("kind %q became %q", req.Kind, kind)
		}
		if checkQueues(kind, req.Queues) == nil && req.Queues != 0 && (req.Kind != KindVhostUser || req.Queues < 1 || req.Queues > 16) {
			t.Fatalf("queues %d accepted for %s", req.Queues, req.Kind)
		}
		if checkLinkName(req.Name) == nil && (len(req.Name) > maxLinkName || strings.ContainsAny(req.Name, " \n\r\t\x00")) {
			t.Fatalf("name %q accepted", req.Name)
		}
	})
}
