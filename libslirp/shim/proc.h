/*
 * The process shape (SLIPWAY_LIBSLIRP=process): the shim runs slipway's
 * core in a separate process, slipway-slirp-server beside the library,
 * and talks to it over three SOCK_SEQPACKET sockets (one message each).
 *
 * The shim starts it sandboxed (libslirp.c, spawn): in new user, mount,
 * IPC, UTS and PID namespaces, its root mapped to the host's uid (nobody
 * for a root host), with flags --namespaces, --host-uid=N,
 * --host-uid-why=TEXT and --config-fd=6 (SLIPWAY_CONFIG's file, opened
 * by the shim); the server confines itself further before it answers its
 * settings. It then opens no file and binds no port: the shim does that
 * for it, below.
 *
 * control (fd 3 in the server), one reply per request:
 *   'c' config text, "key=value\n" lines     -> 'R' i32 (0 ok), then text:
 *       the error, or on success the sandbox layers that do not hold
 *   'h' i32 add, i32 flags, u16 hlen, haddr, u16 glen, gaddr -> 'R' i32 (-errno);
 *       an addition of an IPv4 or IPv6 address carries (SCM_RIGHTS) the
 *       listening socket the shim bound to haddr
 *   'i' / 'n' connection / neighbour table  -> 'S' text
 *   'a' / 'd' / 'o' guest forward add / remove / room: u8 addr[4], i32 port -> 'R' i32
 *   'G' u8 addr[4], i32 port, bytes for the guest (slirp_socket_recv) -> 'R' 0
 *   's' state save                           -> 'S' the stream
 *   'l' i32 version: the server asks 'r' u32 n, the shim answers with up
 *       to n bytes read from the host ('S', empty at the end or on
 *       failure), until the server's 'R' i32 result
 * frames (fd 5), either way: one bare Ethernet frame a message, no tag,
 *   as slipway's seqpacket transport carries them (the server serves it
 *   as that link, so a frame takes no hop between its goroutines); a full
 *   socket drops a frame, as a full link would
 * data (fd 4), either way, unanswered but for 'o' (answered by 'O'):
 *   'g' from the server: i32 forward id, bytes (for the forward's write_cb)
 *   'o' from the server: u32 id, u8 kind, name: open a host file, kind 'r'
 *       the host's resolv.conf, 't' the file name of the TFTP directory
 *   'O' from the shim: u32 id, i32 0 or -errno, the file (SCM_RIGHTS)
 * Integers are in the machine's byte order: both ends run on one host.
 */
#ifndef SLIPWAY_PROC_H
#define SLIPWAY_PROC_H

#define SLIPWAY_PROC_MAX_MSG (1 + 8 + 65535 + 14)
#define SLIPWAY_SERVER_NAME "slipway-slirp-server"

#endif
