package broker

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/slipway-net/slipway/config"
)

func TestParseRequest(t *testing.T) {
	good := []Request{
		{Op: OpListen, Proto: config.TCP, Addr: netip.MustParseAddrPort("0.0.0.0:80")},
		{Op: OpListen, Proto: config.UDP, Addr: netip.MustParseAddrPort("[::1]:5353")},
		{Op: OpDial, Endpoint: 2},
		{Op: OpReady},
		{Op: OpUsage},
		{Op: OpConnect, Proto: config.TCP, Addr: netip.MustParseAddrPort("192.0.2.1:443")},
		{Op: OpPing, Proto: ICMP6},
		{Op: OpStateLoad},
		{Op: OpStateSave},
	}
	for _, r := range good {
		got, err := ParseRequest(r.Encode())
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Errorf("%s -> %+v, %v", r.Encode(), got, err)
		}
	}
	for _, bad := range []string{
		``, `{}`, `{"op":"exec"}`, `{"op":"listen","proto":"icmp","addr":"0.0.0.0:1"}`,
		`{"op":"listen","proto":"tcp","addr":"0.0.0.0:0"}`, `{"op":"listen","proto":"tcp"}`,
		`{"op":"listen","proto":"tcp","addr":"[fe80::1%eth0]:80"}`, `{"op":"listen","proto":"tcp","addr":"224.0.0.1:80"}`,
		`{"op":"listen","proto":"tcp","addr":"[::ffff:127.0.0.1]:80"}`,
		`{"op":"dial","endpoint":-1}`, `{"op":"dial","endpoint":1,"proto":"tcp"}`, `{"op":"ready","endpoint":3}`,
		`{"op":"ready","path":"/etc/shadow"}`, `{"op":"ready"}{"op":"ready"}`, `{"op":"ready"} x`, `{"op":"usage","endpoint":1}`,
		`{"op":"connect","proto":"tcp","addr":"0.0.0.0:80"}`, `{"op":"connect","proto":"icmp","addr":"192.0.2.1:1"}`,
		`{"op":"connect","proto":"udp","addr":"192.0.2.1:0"}`, `{"op":"ping","proto":"tcp"}`, `{"op":"ping","proto":"icmp","addr":"192.0.2.1:1"}`,
		`{"op":"state-load","path":"/etc/shadow"}`, `{"op":"state-save","endpoint":1}`, `{"op":"state-save","proto":"tcp"}`,
	} {
		if r, err := ParseRequest([]byte(bad)); err == nil {
			t.Errorf("%s parsed to %+v, want an error", bad, r)
		}
	}
}

// Whatever the engine sends, the launcher acts only on a request of one
// of the exact shapes, which survives encoding unchanged.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"listen","proto":"tcp","addr":"0.0.0.0:80"}`, `{"op":"listen","proto":"udp","addr":"[::]:53"}`,
		`{"op":"dial","endpoint":0}`, `{"op":"ready"}`, `{"op":"dial","endpoint":1e9}`, `{"op":"listen"`,
		`{"op":"connect","proto":"tcp","addr":"192.0.2.1:443"}`, `{"op":"connect","proto":"udp","addr":"[2001:db8::1]:53"}`,
		`{"op":"ping","proto":"icmp6"}`, `{"op":"usage"}`, `{"op":"state-load"}`, `{"op":"state-save"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if err := r.validate(); err != nil {
			t.Fatalf("%q accepted as %+v, which is invalid: %v", b, r, err)
		}
		back, err := ParseRequest(r.Encode())
		if err != nil || !reflect.DeepEqual(back, r) {
			t.Fatalf("%q -> %+v -> %s -> %+v, %v", b, r, r.Encode(), back, err)
		}
		if r.Op == OpListen && (r.Addr.Port() == 0 || (r.Proto != config.TCP && r.Proto != config.UDP)) {
			t.Fatalf("%q: a listen request the launcher must refuse was accepted: %+v", b, r)
		}
		if r.Op == OpConnect && (r.Addr.Port() == 0 || r.Addr.Addr().IsUnspecified() || r.Addr.Addr().IsMulticast()) {
			t.Fatalf("%q: a connect request to no host was accepted: %+v", b, r)
		}
		if r.Op == OpPing && r.Proto != ICMP4 && r.Proto != ICMP6 {
			t.Fatalf("%q: a ping socket of protocol %q was accepted", b, r.Proto)
		}
	})
}
