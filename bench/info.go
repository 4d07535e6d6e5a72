package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// machine describes the host for the report: CPU model and count, memory,
// OS, kernel and how busy it was when the run started (these machines are
// shared, so the load average says how much to trust the numbers).
func machine() string {
	model := "unknown CPU"
	if v := firstField("/proc/cpuinfo", "model name", ":"); v != "" {
		model = v
	}
	mem := ""
	if v := firstField("/proc/meminfo", "MemTotal", ":"); v != "" {
		var kib int64
		if _, err := fmt.Sscanf(v, "%d kB", &kib); err == nil {
			mem = fmt.Sprintf(", %.0f GiB RAM", float64(kib)/(1<<20))
		}
	}
	osName := strings.Trim(firstField("/etc/os-release", "PRETTY_NAME", "="), `"`)
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	load, _ := os.ReadFile("/proc/loadavg")
	loadF := strings.Fields(string(load))
	la := ""
	if len(loadF) >= 3 {
		la = fmt.Sprintf("; load average %s %s %s at the start", loadF[0], loadF[1], loadF[2])
	}
	return fmt.Sprintf("%s, %d cores%s; %s, Linux %s%s", model, runtime.NumCPU(), mem, osName,
		strings.TrimSpace(string(kernel)), la)
}

// firstField returns the value of the first "key<sep>value" line of a
// file, trimmed.
func firstField(path, key, sep string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// versions names what was measured: slipway's commit and the peers' and
// tools' versions.
func versions(ctx context.Context, root, passt string) []string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	first := func(args ...string) string {
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return ""
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.TrimSpace(line)
	}
	var vs []string
	add := func(name, v string) {
		if v != "" {
			vs = append(vs, name+" "+v)
		}
	}
	commit := first("git", "-C", root, "rev-parse", "--short", "HEAD")
	if commit != "" && first("git", "-C", root, "status", "--porcelain", "--untracked-files=no") != "" {
		commit += "+changes"
	}
	add("slipway", commit)
	add("slirp4netns", strings.TrimPrefix(first("slirp4netns", "--version"), "slirp4netns version "))
	// Debian 12's passt and pasta print no version; its package has one.
	// Newer builds print "passt VERSION" (after a line about AVX2).
	add("pasta", first("dpkg-query", "-W", "-f", "${Version}", "passt"))
	if out, err := exec.CommandContext(ctx, passt, "--version").CombinedOutput(); err == nil {
		for line := range strings.Lines(string(out)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "passt "); ok {
				add("passt ("+passt+")", v)
			}
		}
	} else {
		add("passt ("+passt+")", first("dpkg-query", "-W", "-f", "${Version}", "passt"))
	}
	add("QEMU", strings.TrimPrefix(first("qemu-system-x86_64", "--version"), "QEMU emulator version "))
	add("iperf3", strings.TrimPrefix(first("iperf3", "--version"), "iperf "))
	add("sockperf", first("dpkg-query", "-W", "-f", "${Version}", "sockperf"))
	add("wrk", first("dpkg-query", "-W", "-f", "${Version}", "wrk"))
	return vs
}
