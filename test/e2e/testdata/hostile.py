#!/usr/bin/python3
"""Hostile frames from inside a namespace slipway serves, one named case
per class of bug libslirp and its kin had (CVE classes: lengths trusted
from the packet, fragments, ICMP quotes, urgent data, DHCP options), plus
scapy fuzz() streams.

usage: hostile.py API_SOCKET GATEWAY_MAC|auto CASE...

For each case it sends the case's frames on eth0 (or, with
HOSTILE_STREAM=PATH and HOSTILE_MAC=MAC, as a VM does: over a QEMU
stream socket, each frame after its 4-byte big-endian length; GATEWAY_MAC
auto asks ARP over it), waits a moment, and prints one line
    @case_NAME={"sent": N, "deltas": {"section.counter": increase, ...}}
with every counter of slipway's /metrics that grew meanwhile, so the test
can check the drops were counted where they belong. The counters are read
once slipway has read every frame of the case.
"""

import json
import random
import re
import os
import queue
import socket
import struct
import sys
import threading
import time

from scapy.all import (ARP, BOOTP, DHCP, ICMP, IP, IPv6, TCP, UDP, Ether,
                       ICMPv6EchoRequest, IPv6ExtHdrFragment, Raw,
                       DHCP6_Solicit, DHCP6_Request, DHCP6OptClientId,
                       DHCP6OptIA_NA, DHCP6OptRapidCommit,
                       DHCP6OptElapsedTime, DUID_LLT, AsyncSniffer, conf,
                       fuzz, sendp)

conf.verb = 0

IFACE = "eth0"
ME = "10.0.2.15"
GW = "10.0.2.2"
DNS = "10.0.2.3"
ME6 = "fd00::5054:aff:fe00:20f"
GW6 = "fd00::2"
# An address of the subnet the namespace's kernel does not own: frames
# to it reach eth0 but no socket, so the kernel sends no RST on its own
# while scapy plays a TCP peer from it.
SPOOF = "10.0.2.77"


class OnInterface:
    """Frames on the namespace's eth0."""

    def __init__(self):
        self.mac = open("/sys/class/net/%s/address" % IFACE).read().strip()

    def send(self, frames):
        sendp(frames, iface=IFACE)

    def synack(self, send, port):
        sniffer = AsyncSniffer(iface=IFACE, filter="tcp and src host %s and src port %d" % (GW, port), count=1, timeout=5)
        sniffer.start()
        time.sleep(0.2)
        send()
        sniffer.join()
        got = sniffer.results
        return got[0] if got else None


class OnStream:
    """Frames over a QEMU stream socket (-netdev stream): a VM's link."""

    def __init__(self, path, mac):
        self.mac = mac
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.rx = queue.Queue(maxsize=10000)
        threading.Thread(target=self.receive, daemon=True).start()

    def receive(self):
        f = self.sock.makefile("rb")
        while True:
            hdr = f.read(4)
            if len(hdr) < 4:
                return
            b = f.read(struct.unpack("!I", hdr)[0])
            try:
                self.rx.put_nowait(b)
            except queue.Full:
                pass  # nobody is waiting for these

    def send(self, frames):
        for p in frames:
            b = bytes(p)
            self.sock.sendall(struct.pack("!I", len(b)) + b)

    def resolve(self, ip):
        """The MAC that answers ARP for ip on the link."""
        req = Ether(src=self.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=self.mac, psrc=ME, pdst=ip)
        for _ in range(10):
            self.send([req])
            deadline = time.time() + 1
            while time.time() < deadline:
                try:
                    p = Ether(self.rx.get(timeout=0.2))
                except queue.Empty:
                    continue
                if ARP in p and p[ARP].op == 2 and p[ARP].psrc == ip:
                    return p[ARP].hwsrc
        raise SystemExit("no ARP reply from %s over the stream" % ip)

    def synack(self, send, port):
        while not self.rx.empty():
            self.rx.get_nowait()
        send()
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                p = Ether(self.rx.get(timeout=0.2))
            except queue.Empty:
                continue
            if IP in p and TCP in p and p[IP].src == GW and p[TCP].sport == port:
                return p
        return None


def metrics(api):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(api)
    s.sendall(b"GET /metrics HTTP/1.0\r\nHost: slipway\r\n\r\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    out = {}
    body = data.split(b"\r\n\r\n", 1)[-1].decode()
    for line in body.splitlines():
        m = re.match(r'^slipway_(\w+?)(?:_total)?\{(.*)\} (\S+)$', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        key = m.group(1) + "." + labels.get("name", "")
        if labels.get("key"):
            key += "." + labels["key"]
        if "port" in labels:
            key += "@" + labels["port"]
        out[key] = out.get(key, 0) + float(m.group(3))
    return out


class Case:
    def __init__(self, wire, gw_mac):
        self.wire = wire
        self.me_mac = wire.mac
        self.gw_mac = gw_mac

    def eth(self, dst=None):
        return Ether(src=self.me_mac, dst=dst or self.gw_mac)

    # --- lengths trusted from the packet ---

    def truncated_arp(self):
        whole = bytes(ARP(op=1, hwsrc=self.me_mac, psrc=ME, pdst=GW))
        frames = [self.eth("ff:ff:ff:ff:ff:ff") / Raw(whole[:n]) for n in (1, 7, 8, 14, 20, 27)]
        for f in frames:
            f.type = 0x0806
        # Lengths claiming more than the body has.
        frames.append(self.eth("ff:ff:ff:ff:ff:ff") / ARP(hwlen=255, plen=255, psrc=ME, pdst=GW))
        return frames

    def ihl_too_large(self):
        out = []
        for ihl in (6, 10, 15):
            b = bytearray(bytes(IP(src=ME, dst=GW) / UDP(sport=4000, dport=9) / b"x"))
            b[0] = 0x40 | ihl
            out.append(self.eth() / Raw(bytes(b)))
        # Smaller than the minimum header.
        b = bytearray(bytes(IP(src=ME, dst=GW) / UDP(sport=4000, dport=9)))
        b[0] = 0x43
        out.append(self.eth() / Raw(bytes(b)))
        for f in out:
            f.type = 0x0800
        return out

    def ip_length_beyond_frame(self):
        return [self.eth() / IP(src=ME, dst=GW, len=l) / UDP(sport=4001, dport=9) / b"abc" for l in (200, 1500, 65535)]

    def ipv6_payload_length_beyond_frame(self):
        return [self.eth() / IPv6(src=ME6, dst=GW6, plen=l) / UDP(sport=4002, dport=9) / b"abc" for l in (100, 1500, 65535)]

    def short_udp(self):
        out = []
        for ulen in (0, 4, 7, 500):
            out.append(self.eth() / IP(src=ME, dst=GW) / UDP(sport=4003, dport=53, len=ulen) / b"hello")
        # An IP payload shorter than a UDP header.
        out.append(self.eth() / IP(src=ME, dst=GW, proto=17) / Raw(b"\x0f\xa3\x00"))
        return out

    def short_udp6(self):
        out = []
        for ulen in (0, 4, 7, 500):
            out.append(self.eth() / IPv6(src=ME6, dst=GW6) / UDP(sport=4004, dport=53, len=ulen) / b"hello")
        out.append(self.eth() / IPv6(src=ME6, dst=GW6, nh=17) / Raw(b"\x0f\xa4\x00"))
        return out

    # --- fragments ---

    def overlapping_fragments(self):
        # Teardrop: the second fragment starts inside the first and ends
        # before it, with other bytes; then a pair whose overlap rewrites
        # the UDP header.
        out = []
        for ident, frags in ((0x1111, [(0, 1, b"A" * 64), (3, 0, b"B" * 8)]),
                             (0x2222, [(0, 1, bytes(UDP(sport=4005, dport=9, len=72)) + b"C" * 56), (0, 0, b"D" * 72)]),
                             (0x3333, [(1, 1, b"E" * 24), (0, 1, b"F" * 32), (2, 0, b"G" * 16)])):
            for off, mf, data in frags:
                out.append(self.eth() / IP(src=ME, dst=GW, id=ident, proto=17, frag=off, flags=mf) / Raw(data))
        return out

    def oversized_fragments(self):
        # Ping of death: a last fragment whose end lies past 65535.
        out = [self.eth() / IP(src=ME, dst=GW, id=0x4444, proto=1, flags=1, frag=0) / ICMP() / (b"x" * 1472)]
        out.append(self.eth() / IP(src=ME, dst=GW, id=0x4444, proto=1, frag=8189) / (b"y" * 200))
        out.append(self.eth() / IPv6(src=ME6, dst=GW6) / IPv6ExtHdrFragment(id=0x4444, m=0, offset=8189, nh=58) / (b"z" * 200))
        return out

    def endless_fragments(self):
        # First fragments of 3,000 datagrams that never complete: the
        # reassembly buffers must stay bounded and time out.
        return [self.eth() / IP(src=ME, dst=GW, id=i, proto=17, flags=1, frag=0) / UDP(sport=4006, dport=9) / (b"q" * 1400)
                for i in range(3000)]

    def icmp_errors_quoting_fragments(self):
        out = []
        # Quoting a non-first fragment (no transport header to find).
        quoted = IP(src=GW, dst=ME, id=7, proto=6, frag=100, flags=1) / Raw(b"\x00" * 8)
        out.append(self.eth() / IP(src=ME, dst=GW) / ICMP(type=3, code=3) / quoted)
        # Quoting a header whose IHL and length run past the quote.
        q = bytearray(bytes(IP(src=GW, dst=ME, proto=17) / UDP(sport=53, dport=4007)))
        q[0] = 0x4f
        out.append(self.eth() / IP(src=ME, dst=GW) / ICMP(type=3, code=3) / Raw(bytes(q)))
        # An ICMP error that is itself a fragment.
        out.append(self.eth() / IP(src=ME, dst=GW, id=9, flags=1, frag=0) / ICMP(type=11, code=0) / Raw(b"\x45" + b"\x00" * 7))
        # Truncated quotes.
        for n in (0, 1, 19):
            out.append(self.eth() / IP(src=ME, dst=GW) / ICMP(type=3, code=1) / Raw(bytes(IP(src=GW, dst=ME))[:n]))
        return out

    # --- TCP urgent data ---

    def tcp_urgent_past_data(self, port):
        """Plays a TCP peer from SPOOF to the host server at GW:port and
        sends urgent pointers past the data (and past the window)."""
        # Announce SPOOF's MAC (ours), so the gateway can answer it.
        self.wire.send([self.eth("ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=self.me_mac, psrc=SPOOF, pdst=GW)])
        time.sleep(0.2)
        sport = random.randint(20000, 60000)
        syn = self.eth() / IP(src=SPOOF, dst=GW) / TCP(sport=sport, dport=port, flags="S", seq=1000)
        got = self.wire.synack(lambda: self.wire.send([syn]), port)
        if got is None or not (got[TCP].flags & 0x12 == 0x12):
            return [], "no SYN-ACK"
        synack = got[TCP]
        seq, ack = 1001, synack.seq + 1
        base = IP(src=SPOOF, dst=GW) / TCP(sport=sport, dport=port, seq=seq, ack=ack, flags="A")
        out = [self.eth() / base]
        for urg in (100, 65535, 0):
            p = IP(src=SPOOF, dst=GW) / TCP(sport=sport, dport=port, seq=seq, ack=ack, flags="PAU", urgptr=urg) / b"hi"
            out.append(self.eth() / p)
            seq += 2
        out.append(self.eth() / IP(src=SPOOF, dst=GW) / TCP(sport=sport, dport=port, seq=seq, ack=ack, flags="R"))
        return out, None

    # --- DHCP ---

    def dhcp(self, options_bytes):
        bootp = BOOTP(op=1, chaddr=bytes.fromhex(self.me_mac.replace(":", "")) + b"\x00" * 10, xid=random.randint(0, 2**32 - 1))
        return (self.eth("ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255") /
                UDP(sport=68, dport=67) / bootp / Raw(b"\x63\x82\x53\x63" + options_bytes))

    def dhcp_option_length_past_end(self):
        return [
            self.dhcp(b"\x35\x01\x01" + b"\x0c\xff" + b"host"),  # hostname of 255 bytes, 4 there
            self.dhcp(b"\x35\x01\x01\x37"),                       # option code, no length
            self.dhcp(b"\x35\x05\x01"),                           # message type longer than the packet
            self.dhcp(b"\x3d\xfe\x01\x02"),                       # client id past the end, no type
        ]

    def dhcp_end_mid_packet(self):
        # 255 (end) first, then what would be a request: nothing after
        # the end option counts.
        return [
            self.dhcp(b"\xff\x35\x01\x01\x0c\x04evil"),
            self.dhcp(b"\x35\x01\x01\xff\x32\x04\x0a\x00\x02\x63\x0c\x60" + b"A" * 10),
        ]

    # --- DHCP exhaustion, as dhcpig does it (and harder) ---
    #
    # Debian 12's dhcpig crashes in scapy building its first packet (in
    # both modes), so its attacks are played here: new client hardware
    # addresses, each asking for a lease, and its fuzz mode.

    def random_mac(self):
        return "02:%02x:%02x:%02x:%02x:%02x" % tuple(random.randint(0, 255) for _ in range(5))

    def dhcp_exhaustion(self):
        random.seed(2)
        out = []
        for i in range(600):
            mac = self.random_mac()
            raw_mac = bytes.fromhex(mac.replace(":", ""))
            # dhcpig's frames come from the interface's own MAC with a new
            # chaddr; every other one here also forges the Ethernet source.
            src = self.me_mac if i % 2 else mac
            # A DISCOVER, or an INIT-REBOOT REQUEST for a free address of
            # the pool, which the server grants without an offer first.
            if i % 3 == 0:
                opts = [("message-type", "discover"), "end"]
            else:
                opts = [("message-type", "request"), ("requested_addr", "10.0.2.%d" % (16 + i % 238)), "end"]
            out.append(Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255") /
                       UDP(sport=68, dport=67) / BOOTP(chaddr=raw_mac + b"\x00" * 10, xid=random.randint(0, 2**32 - 1)) /
                       DHCP(options=opts))
        return out

    def dhcp6_solicit(self, mac, src_ll):
        return (Ether(src=mac, dst="33:33:00:01:00:02") / IPv6(src=src_ll, dst="ff02::1:2") / UDP(sport=546, dport=547) /
                DHCP6_Solicit(trid=random.randint(0, 0xffffff)) / DHCP6OptClientId(duid=DUID_LLT(lladdr=mac, timeval=int(time.time()))) /
                DHCP6OptIA_NA(iaid=0xf) / DHCP6OptRapidCommit() / DHCP6OptElapsedTime())

    def dhcp6_exhaustion(self):
        # dhcpig -6 -1: the interface's own link-local address, a new
        # DUID-LLT (and Ethernet source) per SOLICIT, rapid commit.
        random.seed(3)
        ll = [l for l in open("/proc/net/if_inet6").read().splitlines() if l.endswith(IFACE) and l.startswith("fe80")]
        h = ll[0].split()[0]
        me_ll = ":".join(h[i:i + 4] for i in range(0, 32, 4))
        return [self.dhcp6_solicit(self.random_mac(), me_ll) for _ in range(600)]

    def dhcp_fuzz(self):
        # dhcpig -f: the UDP layer and all above it fuzzed.
        random.seed(4)
        out = []
        for _ in range(300):
            p = (Ether(src=self.me_mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255") /
                 fuzz(UDP(sport=68, dport=67) / BOOTP(chaddr=bytes.fromhex(self.me_mac.replace(":", ""))) /
                      DHCP(options=[("message-type", "discover"), "end"])))
            out.append(Ether(bytes(p)))
        return out

    def dhcp6_fuzz(self):
        random.seed(5)
        out = []
        for _ in range(300):
            # The client id stays whole (scapy cannot fuzz a DUID); the
            # message header, the IA_NA and the UDP header are fuzzed.
            p = (Ether(src=self.me_mac, dst="33:33:00:01:00:02") / IPv6(src="fe80::1:2", dst="ff02::1:2") /
                 fuzz(UDP(sport=546, dport=547)) / fuzz(DHCP6_Request()) /
                 DHCP6OptClientId(duid=DUID_LLT(lladdr=self.me_mac, timeval=1)) / fuzz(DHCP6OptIA_NA()))
            out.append(Ether(bytes(p)))
        return out

    # --- fuzz() streams ---

    def fuzz_streams(self):
        random.seed(1)
        out = []
        for tmpl in (IP(src=ME, dst=GW) / fuzz(UDP()),
                     IP(src=ME, dst=GW) / fuzz(TCP()),
                     IP(src=ME, dst=GW) / fuzz(ICMP()),
                     fuzz(IP(src=ME, dst=GW) / UDP(dport=53)),
                     IPv6(src=ME6, dst=GW6) / fuzz(UDP()),
                     fuzz(IPv6(src=ME6, dst=GW6)) / ICMPv6EchoRequest(),
                     fuzz(ARP())):
            for _ in range(150):
                p = self.eth() / tmpl
                out.append(Ether(bytes(p)))  # fix the fuzzed values
        return out


def main():
    api, gw_mac, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
    if os.environ.get("HOSTILE_STREAM"):
        wire = OnStream(os.environ["HOSTILE_STREAM"], os.environ["HOSTILE_MAC"])
        if gw_mac == "auto":
            gw_mac = wire.resolve(GW)
    else:
        wire = OnInterface()
    c = Case(wire, gw_mac)
    for name in cases:
        before = metrics(api)
        err = None
        if name.startswith("tcp_urgent_past_data:"):
            frames, err = c.tcp_urgent_past_data(int(name.split(":")[1]))
            name = "tcp_urgent_past_data"
        else:
            frames = getattr(c, name)()
        if frames:
            wire.send(frames)
        # Wait until slipway has read them all (a loaded machine may
        # take a while), then a moment for what they set off.
        deadline = time.time() + 20
        while time.time() < deadline:
            got = metrics(api)
            rx = sum(v - before.get(k, 0) for k, v in got.items() if k.startswith("link.rx_frames"))
            if rx >= len(frames):
                break
            time.sleep(0.05)
        time.sleep(0.3)
        after = metrics(api)
        deltas = {k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)}
        rec = {"sent": len(frames), "deltas": deltas}
        if err:
            rec["error"] = err
        print("@case_%s=%s" % (name, json.dumps(rec, sort_keys=True)), flush=True)


if __name__ == "__main__":
    main()
