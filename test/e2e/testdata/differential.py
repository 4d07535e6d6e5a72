#!/usr/bin/python3
"""One probe set, sent to a target, each answer reduced to a short
summary, so the answers of slipway's gateway and of a Linux host can be
compared line by line.

usage: differential.py TARGET4 TARGET6 OPEN4 OPEN6 CLOSED BEYOND4

TARGET4/TARGET6 are the target's addresses, OPEN4/OPEN6 TCP ports that
listen there, CLOSED a port closed for TCP and UDP; BEYOND4 an address
reached through the target (with TTL 1 a router answers for it). Prints
one line per probe:
    @p_NAME=SUMMARY
"none" is no answer within the wait.
"""

import random
import re
import subprocess
import sys

from scapy.all import (ICMP, IP, IPv6, TCP, UDP, ICMPv6EchoRequest,
                       ICMPv6EchoReply, ICMPv6DestUnreach, ICMPv6TimeExceeded,
                       ICMPv6ParamProblem,
                       Raw, conf, sr1)

conf.verb = 0
WAIT = 3


def summary(ans, probe):
    if ans is None:
        return "none"
    if TCP in ans and not (ICMP in ans or ICMPv6DestUnreach in ans or ICMPv6ParamProblem in ans):
        return str(ans[TCP].flags)
    if ICMP in ans:
        i = ans[ICMP]
        if i.type == 0:
            ok = bytes(i.payload) == bytes(probe[ICMP].payload)
            return "echo-reply" + ("" if ok else " (payload differs)")
        return "icmp %d/%d" % (i.type, i.code)
    if ICMPv6EchoReply in ans:
        ok = ans[ICMPv6EchoReply].data == probe[ICMPv6EchoRequest].data
        return "echo-reply" + ("" if ok else " (payload differs)")
    for cls in (ICMPv6DestUnreach, ICMPv6TimeExceeded, ICMPv6ParamProblem):
        if cls in ans:
            return "icmp6 %d/%d" % (ans[cls].type, ans[cls].code)
    return ans.summary()


def probe(name, pkt):
    ans = sr1(pkt, timeout=WAIT)
    print("@p_%s=%s" % (name, summary(ans, pkt)), flush=True)
    return ans


def syn_ack_details(name, ans):
    """The SYN-ACK's options, window and TTL, each its own line."""
    if ans is None or TCP not in ans:
        for k in ("mss", "wscale", "sack", "timestamps", "window", "ttl"):
            print("@p_%s_%s=none" % (name, k))
        return
    opts = dict((k, v) for k, v in ans[TCP].options if isinstance(k, str))
    print("@p_%s_mss=%s" % (name, opts.get("MSS", "absent")))
    print("@p_%s_wscale=%s" % (name, "present" if "WScale" in opts else "absent"))
    print("@p_%s_wscale_value=%s" % (name, opts.get("WScale", "absent")))
    print("@p_%s_sack=%s" % (name, "present" if "SAckOK" in opts else "absent"))
    print("@p_%s_timestamps=%s" % (name, "present" if "Timestamp" in opts else "absent"))
    print("@p_%s_window=%d" % (name, ans[TCP].window))
    ttl = ans[IP].ttl if IP in ans else ans[IPv6].hlim
    print("@p_%s_ttl=%d" % (name, ttl))


def nping(name, args):
    """nping's view of one probe: the first answer it reports."""
    out = subprocess.run(["nping", "-c", "1", "--delay", "0"] + args,
                         capture_output=True, text=True, timeout=30).stdout
    got = "none"
    for line in out.splitlines():
        if not line.startswith("RCVD"):
            continue
        m = re.search(r"\(type=(\d+)/code=(\d+)\)", line)
        if m:
            got = "icmp %s/%s" % m.groups()
        else:
            m = re.search(r"^RCVD \S+ TCP \S+ > \S+ (\S+) ", line)
            got = m.group(1) if m else line
        break
    print("@p_%s=%s" % (name, got), flush=True)


def main():
    t4, t6, open4, open6, closed, beyond = sys.argv[1:7]
    open4, open6, closed = int(open4), int(open6), int(closed)
    sport = lambda: random.randint(20000, 60000)
    data = b"slipway-differential"

    # TCP
    probe("tcp_syn_closed", IP(dst=t4) / TCP(sport=sport(), dport=closed, flags="S", seq=1000))
    a = probe("tcp_syn_open", IP(dst=t4) / TCP(sport=sport(), dport=open4, flags="S", seq=1000,
                                               options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("WScale", 7)]))
    syn_ack_details("tcp_syn_open", a)
    probe("tcp_syn_open_no_options", IP(dst=t4) / TCP(sport=sport(), dport=open4, flags="S", seq=1000))
    probe("tcp_ack_closed", IP(dst=t4) / TCP(sport=sport(), dport=closed, flags="A", seq=1000, ack=5000))
    probe("tcp_ack_open", IP(dst=t4) / TCP(sport=sport(), dport=open4, flags="A", seq=1000, ack=5000))
    probe("tcp_fin_closed", IP(dst=t4) / TCP(sport=sport(), dport=closed, flags="F", seq=1000))
    probe("tcp_fin_open", IP(dst=t4) / TCP(sport=sport(), dport=open4, flags="F", seq=1000))
    probe("tcp_null_closed", IP(dst=t4) / TCP(sport=sport(), dport=closed, flags="", seq=1000))
    probe("tcp_xmas_closed", IP(dst=t4) / TCP(sport=sport(), dport=closed, flags="FPU", seq=1000))
    probe("tcp_rst_open", IP(dst=t4) / TCP(sport=sport(), dport=open4, flags="R", seq=1000))
    probe("tcp_synfin_open", IP(dst=t4) / TCP(sport=sport(), dport=open4, flags="SF", seq=1000))
    # UDP and ICMP
    probe("udp_closed", IP(dst=t4) / UDP(sport=sport(), dport=closed) / Raw(data))
    probe("icmp_echo", IP(dst=t4) / ICMP(id=0x5157, seq=1) / Raw(data))
    probe("icmp_echo_large", IP(dst=t4) / ICMP(id=0x5157, seq=2) / Raw(data * 60))
    probe("icmp_timestamp", IP(dst=t4) / ICMP(type=13, id=0x5157, seq=3) / Raw(b"\0" * 12))
    probe("ip_unknown_protocol", IP(dst=t4, proto=253) / Raw(data))
    probe("udp_ttl1_beyond", IP(dst=beyond, ttl=1) / UDP(sport=sport(), dport=closed) / Raw(data))
    # IPv6
    probe("tcp6_syn_closed", IPv6(dst=t6) / TCP(sport=sport(), dport=closed, flags="S", seq=1000))
    a = probe("tcp6_syn_open", IPv6(dst=t6) / TCP(sport=sport(), dport=open6, flags="S", seq=1000,
                                                  options=[("MSS", 1440), ("SAckOK", b""), ("Timestamp", (1, 0)), ("WScale", 7)]))
    syn_ack_details("tcp6_syn_open", a)
    probe("udp6_closed", IPv6(dst=t6) / UDP(sport=sport(), dport=closed) / Raw(data))
    probe("icmp6_echo", IPv6(dst=t6) / ICMPv6EchoRequest(id=0x5157, seq=1, data=data))
    probe("ip6_unknown_next_header", IPv6(dst=t6, nh=253) / Raw(data))
    # nping's own view of the basic three
    nping("nping_tcp_closed", ["--tcp", "--flags", "syn", "-p", str(closed), t4])
    nping("nping_tcp_open", ["--tcp", "--flags", "syn", "-p", str(open4), t4])
    nping("nping_udp_closed", ["--udp", "-p", str(closed), t4])
    nping("nping_icmp_echo", ["--icmp", t4])


if __name__ == "__main__":
    main()
