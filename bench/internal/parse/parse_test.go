package parse

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The files under testdata were printed by the tools installed here
// (iperf3 3.12, sockperf 3.7, wrk 4.1) on this machine's loopback.
func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6*math.Max(1, math.Abs(b)) }

func TestParseIperf3(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Iperf3
	}{
		{"iperf3_tcp.json", Iperf3{BitsPerSecond: 3888435807.8714743, Bytes: 492175360, Seconds: 1.012593, Retransmits: 11}},
		// With -R the client receives; sum_received is still the receiver.
		{"iperf3_tcp_reverse.json", Iperf3{BitsPerSecond: 4029543691.093337, Bytes: 504758272, Seconds: 1.002115, Retransmits: 12}},
		// UDP: the rate that arrived (not the 1 Gbit/s sent) and the loss.
		{"iperf3_udp.json", Iperf3{BitsPerSecond: 271066872.70975316, Bytes: 33898200, Seconds: 1.000438, UDP: true, LostPercent: 73.689352002605}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseIperf3([]byte(readTestdata(t, tc.file)))
			if err != nil {
				t.Fatal(err)
			}
			if !near(got.BitsPerSecond, tc.want.BitsPerSecond) || got.Bytes != tc.want.Bytes ||
				!near(got.Seconds, tc.want.Seconds) || got.Retransmits != tc.want.Retransmits ||
				got.UDP != tc.want.UDP || !near(got.LostPercent, tc.want.LostPercent) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseIperf3Errors(t *testing.T) {
	_, err := ParseIperf3([]byte(readTestdata(t, "iperf3_refused.json")))
	if err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("refused run: err = %v, want iperf3's own error", err)
	}
	for name, in := range map[string]string{
		"not JSON":        "iperf3: error - unable to connect",
		"no end":          `{"start":{}}`,
		"no time covered": `{"end":{"sum_received":{"seconds":0,"bytes":0,"bits_per_second":0}}}`,
	} {
		if _, err := ParseIperf3([]byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseSockperf(t *testing.T) {
	got, err := ParseSockperf(readTestdata(t, "sockperf_pingpong.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got.AvgUsec != 35.260 || got.Observations != 7799 {
		t.Errorf("avg %v observations %d, want 35.260 and 7799", got.AvgUsec, got.Observations)
	}
	for p, want := range map[float64]float64{50: 34.606, 99: 61.581, 99.999: 731.262, 25: 31.501} {
		if got.Percentiles[p] != want {
			t.Errorf("percentile %v = %v, want %v", p, got.Percentiles[p], want)
		}
	}
	if len(got.Percentiles) != 8 {
		t.Errorf("%d percentiles, want the 8 sockperf printed", len(got.Percentiles))
	}
}

func TestParseSockperfFailure(t *testing.T) {
	out := "sockperf: ERROR: Failed to connect (errno=111 Connection refused)\n"
	if _, err := ParseSockperf(out); err == nil || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("err = %v, want one quoting sockperf's output", err)
	}
}

func TestParseWrk(t *testing.T) {
	got, err := ParseWrk(readTestdata(t, "wrk.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Wrk{RequestsPerSec: 2245.66, Requests: 2475}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got.Errors() != 0 {
		t.Errorf("Errors() = %d", got.Errors())
	}

	got, err = ParseWrk(readTestdata(t, "wrk_errors.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := Wrk{RequestsPerSec: 3107.93, Requests: 15544, ConnectErrors: 3, ReadErrors: 12, Timeouts: 7, Non2xx3xx: 2}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got.Errors() != 24 {
		t.Errorf("Errors() = %d, want 24", got.Errors())
	}

	if _, err := ParseWrk("unable to connect to 127.0.0.1:25213 Connection refused\n"); err == nil {
		t.Error("wrk failure parsed without error")
	}
}

func TestLddPaths(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd)\n" +
		"\tlibluajit-5.1.so.2 => /lib/x86_64-linux-gnu/libluajit-5.1.so.2 (0x00007f06)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f05)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f07)\n"
	want := []string{"/lib/x86_64-linux-gnu/libluajit-5.1.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if got := LddPaths(out); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
