// Package proc reads a process's resident memory and CPU time from
// /proc, which is how the benchmark charges a backend for what it used.
package proc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
// It is 100 on every Linux architecture Go supports; the kernel keeps it
// fixed for user space whatever its internal HZ.
const clockTicks = 100

// Usage is a snapshot of one process (all its threads).
type Usage struct {
	// RSSKiB is the resident set now; PeakRSSKiB its high-water mark
	// since the process started.
	RSSKiB, PeakRSSKiB int64
	// CPU is user plus system time so far.
	CPU time.Duration
}

// Add sums two snapshots, for a backend that runs as several processes.
func (u Usage) Add(o Usage) Usage {
	return Usage{RSSKiB: u.RSSKiB + o.RSSKiB, PeakRSSKiB: u.PeakRSSKiB + o.PeakRSSKiB, CPU: u.CPU + o.CPU}
}

// Read samples process pid.
func Read(pid int) (Usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Usage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	cpu, err := ParseStatCPU(string(stat))
	if err != nil {
		return Usage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Usage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	rss, peak, err := ParseStatusRSS(string(status))
	if err != nil {
		return Usage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return Usage{RSSKiB: rss, PeakRSSKiB: peak, CPU: cpu}, nil
}

// ReadAll samples several processes and sums them.
func ReadAll(pids []int) (Usage, error) {
	var total Usage
	for _, pid := range pids {
		u, err := Read(pid)
		if err != nil {
			return Usage{}, err
		}
		total = total.Add(u)
	}
	return total, nil
}

// ParseStatCPU returns utime+stime from the text of /proc/PID/stat.
func ParseStatCPU(stat string) (time.Duration, error) {
	fields, err := statFields(stat)
	if err != nil {
		return 0, err
	}
	// After the command name: state(3) ppid(4) ... utime(14) stime(15),
	// numbered as in proc(5); fields[0] is state.
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("/proc stat: only %d fields", len(fields)+2)
	}
	var ticks int64
	for _, i := range []int{utime, stime} {
		v, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat field %d: %w", i+3, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// ParseStatPPID returns the parent pid from the text of /proc/PID/stat.
func ParseStatPPID(stat string) (int, error) {
	fields, err := statFields(stat)
	if err != nil {
		return 0, err
	}
	if len(fields) < 2 {
		return 0, errors.New("/proc stat: no ppid")
	}
	return strconv.Atoi(fields[1])
}

// statFields splits /proc/PID/stat after the command name, which is in
// parentheses and may itself hold spaces and parentheses: the last ')'
// ends it.
func statFields(stat string) ([]string, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, errors.New("/proc stat: no command name")
	}
	return strings.Fields(stat[i+1:]), nil
}

// ParseStatusRSS returns VmRSS and VmHWM (KiB) from /proc/PID/status.
func ParseStatusRSS(status string) (rss, peak int64, err error) {
	var haveRSS, havePeak bool
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status %s: %q", key, val)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status %s: %w", key, err)
		}
		if key == "VmRSS" {
			rss, haveRSS = n, true
		} else {
			peak, havePeak = n, true
		}
	}
	if !haveRSS || !havePeak {
		// A zombie has no memory lines.
		return 0, 0, errors.New("/proc status: no VmRSS/VmHWM (process exited?)")
	}
	return rss, peak, nil
}

// Children returns the pids whose parent is ppid, by scanning /proc.
func Children(ppid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing /proc: %w", err)
	}
	var kids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone meanwhile
		}
		if p, err := ParseStatPPID(string(stat)); err == nil && p == ppid {
			kids = append(kids, pid)
		}
	}
	return kids, nil
}
