package systemd

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Variables meant for another process (a parent that was activated) are
// not this one's; malformed ones are errors naming the variable.
func TestParseListeners(t *testing.T) {
	if s, err := parseListeners("", "", "", 42); s != nil || err != nil {
		t.Errorf("no variables: %v %v", s, err)
	}
	if s, err := parseListeners("41", "2", "a:b", 42); s != nil || err != nil {
		t.Errorf("LISTEN_PID of another process: %v %v", s, err)
	}
	for _, c := range [][3]string{{"x", "1", ""}, {"42", "x", ""}, {"42", "-1", ""}, {"42", "100000", ""}} {
		if _, err := parseListeners(c[0], c[1], c[2], 42); err == nil {
			t.Errorf("LISTEN_PID=%s LISTEN_FDS=%s accepted", c[0], c[1])
		}
	}
	// Zero sockets is a valid, empty answer.
	if s, err := parseListeners("42", "0", "", 42); len(s) != 0 || err != nil {
		t.Errorf("LISTEN_FDS=0: %v %v", s, err)
	}
}

func TestParseNotifier(t *testing.T) {
	if n, err := parseNotifier("", "", "", 1); n != nil || err != nil {
		t.Errorf("no socket: %v %v", n, err)
	}
	if _, err := parseNotifier("relative/path", "", "", 1); err == nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET") {
		t.Errorf("relative NOTIFY_SOCKET: %v", err)
	}
	n, err := parseNotifier("/run/systemd/notify", "30000000", "", 1)
	if err != nil || n.Watchdog() != 30*time.Second {
		t.Errorf("WATCHDOG_USEC=30000000: %v %v", n.Watchdog(), err)
	}
	// The watchdog of another process (WATCHDOG_PID) is not ours.
	if n, err := parseNotifier("/run/systemd/notify", "30000000", "7", 1); err != nil || n.Watchdog() != 0 {
		t.Errorf("WATCHDOG_PID of another process: %v %v", n.Watchdog(), err)
	}
	if _, err := parseNotifier("/run/systemd/notify", "soon", "", 1); err == nil || !strings.Contains(err.Error(), "WATCHDOG_USEC") {
		t.Errorf("bad WATCHDOG_USEC: %v", err)
	}
	var none *Notifier
	if err := none.Send("READY=1"); err != nil || none.Watchdog() != 0 {
		t.Errorf("nil notifier: %v", err)
	}
}

// Each state arrives as one datagram on the manager's socket, at a path
// and at an abstract address.
func TestSend(t *testing.T) {
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), "@slipway-test-notify-" + t.Name()} {
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		n, err := parseNotifier(name, "", "", 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Send("READY=1", "STATUS=serving"); err != nil {
			t.Fatal(err)
		}
		if err := n.Send("STOPPING=1"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		for _, want := range []string{"READY=1\nSTATUS=serving", "STOPPING=1"} {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, err := c.Read(buf)
			if err != nil || string(buf[:k]) != want {
				t.Errorf("%s: got %q (%v), want %q", name, buf[:k], err, want)
			}
		}
		c.Close()
	}
}
