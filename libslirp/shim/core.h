/*
 * The interface between libslirp.so.0 (the C shim in this directory) and
 * slipway's Go core (libslipway-slirp.so, built from ../core). The shim
 * reads the caller's SlirpConfig according to its version and hands the
 * core this flat, versionless struct; the core never sees libslirp's own
 * structs, and never calls any of the caller's callbacks except the
 * read/write callbacks of state load/save, inside that very call.
 */
#ifndef SLIPWAY_CORE_H
#define SLIPWAY_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bumped whenever this struct or a core function changes, so a shim never
 * runs against a core of another build. */
#define SLIPWAY_CORE_ABI 2

struct slipway_cfg {
    int restricted;
    int in_enabled;
    uint8_t vnetwork[4], vnetmask[4], vhost[4], vdhcp_start[4], vnameserver[4];
    int in6_enabled;
    uint8_t vprefix_addr6[16];
    int vprefix_len;
    uint8_t vhost6[16], vnameserver6[16];
    const char *vhostname;
    const char *tftp_server_name;
    const char *tftp_path;
    const char *bootfile;
    const char *vdomainname;
    const char *const *vdnssearch; /* NULL-terminated, or NULL */
    size_t if_mtu, if_mru;         /* 0: libslirp's default, 1500 */
    int disable_host_loopback;
    int enable_emu;
    int has_outbound_addr, has_outbound_addr6;
    uint8_t outbound_addr[4], outbound_addr6[16];
    int disable_dns, disable_dhcp;
    int version;   /* the caller's SlirpConfig version, for logs */
    int notify_fd; /* an eventfd the core writes to when frames wait */
};

/* The core's frame slots: the shim hands the core this many buffers of
 * this size to fill in one slipway_core_take call. */
#define SLIPWAY_SLOTS 32
#define SLIPWAY_SLOT_SIZE (12 + 14 + 65535)

typedef ssize_t (*slipway_write_cb)(const void *buf, size_t len, void *opaque);
typedef ssize_t (*slipway_read_cb)(void *buf, size_t len, void *opaque);

/* Symbols the core exports (looked up with dlsym). Negative returns are
 * -errno. Strings returned are malloc()ed; the caller frees them. */
typedef int (*slipway_core_abi_fn)(void);
typedef int (*slipway_core_new_fn)(const struct slipway_cfg *cfg, char *err, int errlen);
typedef void (*slipway_core_input_fn)(int h, const uint8_t *pkt, int len);
/* Fills up to SLIPWAY_SLOTS slots of buf (each SLIPWAY_SLOT_SIZE bytes: a
 * 12-byte header the shim skips, then the frame) and sizes[]; returns how
 * many. */
typedef int (*slipway_core_take_fn)(int h, uint8_t *buf, int *sizes);
typedef void (*slipway_core_cleanup_fn)(int h);
typedef int (*slipway_core_hostfwd_fn)(int h, int add, int flags, const void *haddr, int haddrlen,
                                       const void *gaddr, int gaddrlen);
typedef char *(*slipway_core_info_fn)(int h);
typedef int (*slipway_core_state_save_fn)(int h, slipway_write_cb cb, void *opaque);
typedef int (*slipway_core_state_load_fn)(int h, int version, slipway_read_cb cb, void *opaque);
/* Guest forwards (guestfwd=): addr is 4 bytes in network order, port in
 * host order. add returns the forward's id (> 0); take fills buf with
 * bytes the guest sent on some forward, sets *id to it and returns how
 * many (0: none wait); room is slirp_socket_can_recv's answer. */
typedef int (*slipway_core_gfwd_add_fn)(int h, const uint8_t *addr, int port);
typedef int (*slipway_core_gfwd_remove_fn)(int h, const uint8_t *addr, int port);
typedef int (*slipway_core_gfwd_take_fn)(int h, uint8_t *buf, int cap, int *id);
typedef int (*slipway_core_gfwd_room_fn)(int h, const uint8_t *addr, int port);
typedef void (*slipway_core_gfwd_input_fn)(int h, const uint8_t *addr, int port, const uint8_t *buf,
                                           int len);

#endif
