package bhyve

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/internal/nvlist"
)

func str(name, v string) nvlist.Pair { return nvlist.Pair{Name: name, Type: nvlist.String, Value: v} }

func TestFromList(t *testing.T) {
	c, err := FromList(&nvlist.List{Pairs: []nvlist.Pair{
		str("backend", "slirp"), str("vmname", "vm0"), str("open", "TRUE"), str("mtu", "2000"),
		str("hostfwd", "tcp::2222-:22;udp:127.0.0.1:5353-10.0.2.15:53;"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{VMName: "vm0", Open: true, MTU: 2000, Forwards: []Forward{
		{"tcp", netip.MustParseAddrPort("0.0.0.0:2222"), netip.AddrPortFrom(netip.Addr{}, 22)},
		{"udp", netip.MustParseAddrPort("127.0.0.1:5353"), netip.MustParseAddrPort("10.0.2.15:53")},
	}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
	if got := c.Forwards[0].String(); got != "tcp:0.0.0.0:2222-:22" {
		t.Errorf("Forward.String() = %q", got)
	}

	// Nothing given: restricted, as bhyve's own helper defaults.
	c, err = FromList(&nvlist.List{})
	if err != nil || c.Open || c.MTU != 0 || c.Forwards != nil {
		t.Fatalf("empty config = %+v, %v; want restricted with nothing set", c, err)
	}
	// libnv's own types work too.
	c, err = FromList(&nvlist.List{Pairs: []nvlist.Pair{
		{Name: "open", Type: nvlist.Bool, Value: true}, {Name: "mtu", Type: nvlist.Number, Value: uint64(1500)},
	}})
	if err != nil || !c.Open || c.MTU != 1500 {
		t.Fatalf("typed values = %+v, %v", c, err)
	}
}

func TestFromListErrors(t *testing.T) {
	for name, p := range map[string]nvlist.Pair{
		"open not a bool":    str("open", "maybe"),
		"open a number":      {Name: "open", Type: nvlist.Number, Value: uint64(1)},
		"mtu not a number":   str("mtu", "big"),
		"mtu zero":           str("mtu", "0"),
		"mtu too large":      {Name: "mtu", Type: nvlist.Number, Value: uint64(70000)},
		"vmname not string":  {Name: "vmname", Type: nvlist.Bool, Value: true},
		"hostfwd not string": {Name: "hostfwd", Type: nvlist.Null},
		"bad rule":           str("hostfwd", "tcp:2222:22"),
	} {
		if _, err := FromList(&nvlist.List{Pairs: []nvlist.Pair{p}}); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

func TestParseHostfwdErrors(t *testing.T) {
	for _, bad := range []string{
		"tcp", "tcp:", "sctp::22-:22", "tcp::22", "tcp::22-:", "tcp::0-:22", "tcp::22-:70000",
		"tcp:localhost:22-:22", "tcp:[::1]:22-:22", "tcp:::1:22-:22", "tcp:1.2.3.4-:22", "tcp::22-1.2.3.4",
		"tcp::-1-:22", "TCP::22-:22",
	} {
		if _, err := ParseHostfwd(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseHostfwd(%q) = %v, want ErrConfig", bad, err)
		}
	}
}

func FuzzParseHostfwd(f *testing.F) {
	for _, s := range []string{"tcp::2222-:22", "udp:127.0.0.1:53-10.0.2.15:53;tcp::80-:8080", ";;", "tcp:1.2.3.4:1-5.6.7.8:65535;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fwds, err := ParseHostfwd(s)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error does not wrap ErrConfig: %v", err)
			}
			return
		}
		// What parses prints back to rules that parse the same.
		var rules []string
		for _, f := range fwds {
			if f.Proto != "tcp" && f.Proto != "udp" || f.Host.Port() == 0 || f.Guest.Port() == 0 {
				t.Fatalf("accepted an unusable rule %+v", f)
			}
			rules = append(rules, f.String())
		}
		again, err := ParseHostfwd(strings.Join(rules, ";"))
		if err != nil || !reflect.DeepEqual(again, fwds) {
			t.Fatalf("%q: printed rules %q parse to %+v, %v", s, rules, again, err)
		}
	})
}

// seqpacketPair returns our end and bhyve's raw end.
func seqpacketPair(t *testing.T) (*net.UnixConn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "helper")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); unix.Close(fds[1]) })
	return c.(*net.UnixConn), fds[1]
}

func packed(t *testing.T, pairs ...nvlist.Pair) []byte {
	t.Helper()
	b, err := nvlist.Pack(&nvlist.List{Pairs: pairs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadConfig(t *testing.T) {
	soon := func() time.Time { return time.Now().Add(10 * time.Second) }
	msg := packed(t, str("vmname", "vm0"), str("hostfwd", "tcp::2222-:22"))

	conn, peer := seqpacketPair(t)
	unix.Sendmsg(peer, msg, nil, nil, unix.MSG_EOR)
	c, err := ReadConfig(conn, soon())
	if err != nil || c.VMName != "vm0" || len(c.Forwards) != 1 {
		t.Fatalf("one message: %+v, %v", c, err)
	}

	// A list split over two messages is collected.
	conn, peer = seqpacketPair(t)
	unix.Send(peer, msg[:10], 0)
	unix.Send(peer, msg[10:], 0)
	if c, err := ReadConfig(conn, soon()); err != nil || c.VMName != "vm0" {
		t.Fatalf("split message: %+v, %v", c, err)
	}

	conn, peer = seqpacketPair(t)
	unix.Close(peer)
	if _, err := ReadConfig(conn, soon()); !errors.Is(err, ErrHangup) {
		t.Errorf("hang-up before the configuration: %v, want ErrHangup", err)
	}

	conn, _ = seqpacketPair(t)
	if _, err := ReadConfig(conn, time.Now().Add(50*time.Millisecond)); err == nil || !strings.Contains(err.Error(), "in time") {
		t.Errorf("silent bhyve: %v", err)
	}

	for name, bad := range map[string][]byte{
		"garbage":        []byte("this is not an nvlist at all"),
		"trailing bytes": append(msg, 0),
		"oversized":      make([]byte, MaxConfigSize+100),
		"bad value":      packed(t, str("open", "perhaps")),
	} {
		conn, peer := seqpacketPair(t)
		unix.SetsockoptInt(peer, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		if err := unix.Send(peer, bad, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadConfig(conn, soon()); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

// FuzzConfig feeds arbitrary bytes through the helper's whole reading of
// the configuration: decode, then interpret.
func FuzzConfig(f *testing.F) {
	for _, pairs := range [][]nvlist.Pair{
		{str("backend", "slirp"), str("vmname", "vm0"), str("open", "true")},
		{str("hostfwd", "tcp::2222-:22;udp:127.0.0.1:53-:53"), str("mtu", "1500")},
		{{Name: "open", Type: nvlist.Bool, Value: false}, {Name: "mtu", Type: nvlist.Number, Value: uint64(9000)}},
	} {
		b, err := nvlist.Pack(&nvlist.List{Pairs: pairs})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := nvlist.Unpack(b, nvlist.Limits{})
		if err != nil {
			return
		}
		c, err := FromList(l)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error does not wrap ErrConfig: %v", err)
			}
			return
		}
		if c.MTU < 0 || c.MTU > 65535 {
			t.Fatalf("accepted mtu %d", c.MTU)
		}
	})
}
