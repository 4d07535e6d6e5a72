package proc

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with a space and a parenthesis must not shift the
	// fields.
	stat := "1520 (slip way) x) S 1401 1520 1401 0 -1 4194560 2409 0 0 0 250 37 0 0 20 0 9 0 196233 1296850944 3794 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0\n"
	cpu, err := ParseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2870 * time.Millisecond; cpu != want {
		t.Errorf("cpu = %v, want %v", cpu, want)
	}
	ppid, err := ParseStatPPID(stat)
	if err != nil || ppid != 1401 {
		t.Errorf("ppid = %d, %v; want 1401", ppid, err)
	}
	for _, bad := range []string{"1520 slipway S 1", "1520 (slipway) S 1 2"} {
		if _, err := ParseStatCPU(bad); err == nil {
			t.Errorf("ParseStatCPU(%q): no error", bad)
		}
	}
}

func TestParseStatusRSS(t *testing.T) {
	status := "Name:\tslipway\nVmPeak:\t 1266456 kB\nVmHWM:\t   15176 kB\nVmRSS:\t   14012 kB\nThreads:\t9\n"
	rss, peak, err := ParseStatusRSS(status)
	if err != nil || rss != 14012 || peak != 15176 {
		t.Errorf("got rss %d peak %d err %v; want 14012 15176", rss, peak, err)
	}
	if _, _, err := ParseStatusRSS("Name:\tzombie\nState:\tZ (zombie)\n"); err == nil {
		t.Error("zombie status parsed without error")
	}
	if _, _, err := ParseStatusRSS("VmHWM:\t 1 MB\nVmRSS:\t 1 kB\n"); err == nil {
		t.Error("unexpected unit accepted")
	}
}

func TestReadSelf(t *testing.T) {
	u, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSSKiB <= 0 || u.PeakRSSKiB < u.RSSKiB {
		t.Errorf("implausible usage of this test process: %+v", u)
	}
	sum, err := ReadAll([]int{os.Getpid(), os.Getpid()})
	if err != nil || sum.PeakRSSKiB < 2*u.PeakRSSKiB {
		t.Errorf("ReadAll of self twice = %+v, %v", sum, err)
	}
}

func TestChildren(t *testing.T) {
	kids, err := Children(os.Getppid())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range kids {
		found = found || k == os.Getpid()
	}
	if !found {
		t.Errorf("this process (%d) not among its parent's children %v", os.Getpid(), kids)
	}
}
