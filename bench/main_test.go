package main

import (
	"io"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/slipway-net/slipway/bench/internal/report"
)

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rounds != 3 || o.settings.duration != 5*time.Second || !reflect.DeepEqual(o.only, []string{"ns", "vm", "scale"}) ||
		!reflect.DeepEqual(o.scaleFlows, []int{1, 100, 1000, 10000}) || o.backends != nil || o.tests != nil {
		t.Errorf("defaults: %+v", o)
	}
	o, err = parseOptions([]string{"-rounds", "1", "-only", "ns", "-backends", "slipway,veth", "-tests", "tcp_out"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rounds != 1 || !want(o.only, "ns") || want(o.only, "vm") || !want(o.backends, "veth") ||
		want(o.backends, "pasta") || !want(o.tests, "tcp_out") || want(o.tests, "udp") {
		t.Errorf("selection: %+v", o)
	}
	if !strings.Contains(o.command, "-only ns") {
		t.Errorf("default command %q does not repeat the arguments", o.command)
	}
	for _, bad := range [][]string{
		{"-rounds", "0"}, {"-only", "ns,bogus"}, {"-backends", "gvproxy"}, {"-tests", "tcp"},
		{"-scale-flows", "10,x"}, {"-duration", "10ms"}, {"stray"},
	} {
		if _, err := parseOptions(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRotate(t *testing.T) {
	in := []string{"a", "b", "c"}
	for round, want := range [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}} {
		if got := rotate(in, round); !reflect.DeepEqual(got, want) {
			t.Errorf("rotate(round %d) = %v, want %v", round, got, want)
		}
	}
	if in[0] != "a" {
		t.Error("rotate changed its input")
	}
	if rotate([]string(nil), 2) != nil {
		t.Error("rotate of nothing")
	}
}

func TestGuestScript(t *testing.T) {
	s := settings{duration: 5 * time.Second, udpRate: "1G", wrkConns: 16}
	script := guestScript(allTests(), ports{iperf: 5201, sockperf: 11111, http: 8080}, s)
	for _, want := range []string{
		`echo '@@BEGIN tcp_out'`,
		`timeout 65 "iperf3" "-c" "${gw}" "-p" "5201" "-t" "5" "-J" >/tmp/tcp_out.out 2>&1`,
		`"iperf3" "-c" "${gw}" "-p" "5201" "-t" "5" "-J" "-R"`,
		`"sockperf" "ping-pong" "--tcp" "-i" "${gw}" "-p" "11111" "-t" "5"`,
		`"wrk" "-t1" "-c16" "-d5s" "-H" "Connection: close" "http://${gw}:8080/"`,
		`"-u" "-b" "1G" "-l" "1400"`,
		`echo "@@END udp rc=$?"`,
		`echo '@@OUT latency'; cat /tmp/latency.out; echo; echo '@@OUT-END latency'`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %s", want)
		}
	}
	// The guest's busybox sh and the host's sh agree on this syntax.
	if sh, err := exec.LookPath("sh"); err == nil {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sh -n: %v\n%s\n%s", err, out, script)
		}
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"a b", `say "hi"`, `back\slash`, "`cmd`", "${gw}"})
	want := `"a b" "say \"hi\"" "back\\slash" "\` + "`cmd\\`" + `" "${gw}"`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	out, err := exec.Command("sh", "-c", "gw=X; for a in "+got+"; do echo \"[$a]\"; done").Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "[a b]\n[say \"hi\"]\n[back\\slash]\n[`cmd`]\n[X]\n" {
		t.Errorf("the shell read it as:\n%s", out)
	}
}

func TestConsoleSection(t *testing.T) {
	console := strings.Join([]string{
		"SLIPWAY-GUEST-READY",
		"@@GW 10.0.2.2",
		"@@BEGIN tcp_out",
		"@@END tcp_out rc=0",
		"@@OUT tcp_out",
		"{",
		`	"end": {}`,
		"}",
		"",
		"@@OUT-END tcp_out",
		"@@OUT tcp_in",
		"partial output, then the guest died",
	}, "\n")
	got, ok := consoleSection(console, "tcp_out")
	if !ok || got != "{\n\t\"end\": {}\n}\n" {
		t.Errorf("tcp_out section = %q, %v", got, ok)
	}
	if _, ok := consoleSection(console, "tcp_in"); ok {
		t.Error("unterminated section returned")
	}
	if _, ok := consoleSection(console, "udp"); ok {
		t.Error("missing section returned")
	}
	if gw := consoleGateway(console); gw != "10.0.2.2" {
		t.Errorf("gateway %q", gw)
	}
	if gw := consoleGateway("no marker"); gw != "" {
		t.Errorf("gateway %q from a console without one", gw)
	}
}

func TestParseDefaultGateway(t *testing.T) {
	out := `[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]}]`
	if gw, err := parseDefaultGateway(out); err != nil || gw != "192.0.2.1" {
		t.Errorf("got %q, %v", gw, err)
	}
	for _, bad := range []string{`[]`, `[{"dst":"default","dev":"eth0"}]`, `not json`} {
		if _, err := parseDefaultGateway(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestProcNetTCPAddr(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:5201": "0100007F:1451", "10.254.3.1:80": "0103FE0A:0050"} {
		if got, err := procNetTCPAddr(in); err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := procNetTCPAddr("[::1]:80"); err == nil {
		t.Error("IPv6 accepted")
	}
}

func TestParseConnRate(t *testing.T) {
	ok := "  1000 requests in 5.00s, 1MB read\n  Socket errors: connect 0, read 5, write 0, timeout 0\nRequests/sec:    200.00\n"
	m, err := parseConnRate(ok)
	if err != nil || m.values[report.ConnRate] != 200 || !strings.Contains(m.warning, "5 of 1000") {
		t.Errorf("0.5%% failed: %+v, %v; want kept with a warning", m, err)
	}
	bad := "  1000 requests in 5.00s, 1MB read\n  Socket errors: connect 50, read 0, write 0, timeout 0\nRequests/sec:    200.00\n"
	if _, err := parseConnRate(bad); err == nil {
		t.Error("5% failed requests accepted as a rate")
	}
}
