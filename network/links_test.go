package network

import (
	"errors"
	"os"
	"testing"
	"time"
)

// A link detached through the API is a VM gone: the guest's end sees the
// close, and its flows end once the grace has passed, the host socket
// with them.
func TestDetachEndsFlowsAfterTheGrace(t *testing.T) {
	h := newFlowHarness(t, seams{guestGoneGrace: 200 * time.Millisecond})
	// Detached at once: often while slipway is still completing its side
	// of the handshake, which then waits for an ACK that cannot come.
	_, host := h.connect(t)
	links := h.n.Links()
	if len(links) != 1 {
		t.Fatalf("links %+v", links)
	}
	li, err := h.n.Detach(links[0].Port)
	if err != nil || li.Port != links[0].Port {
		t.Fatalf("Detach: %+v %v", li, err)
	}
	if _, err := h.n.Detach(li.Port); !errors.Is(err, ErrNoLink) {
		t.Errorf("second Detach: %v, want ErrNoLink", err)
	}
	if len(h.n.Links()) != 0 {
		t.Error("the link is still listed")
	}
	waitFor(t, "the flow of the detached guest to close", func() bool { return h.n.flows.Len() == 0 })
	host.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := host.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("host socket still open after its flow ended: %v", err)
	}
}
