/*
 * libslirp.so.0 backed by slipway.
 *
 * This file is the whole C side: it exports libslirp 4.7's functions under
 * libslirp's symbol versions (libslirp.map), checks every argument, reads
 * the caller's SlirpConfig and SlirpCb only as far as the caller's config
 * version reaches, and translates each call onto slipway's Go core, a
 * separate shared library (libslipway-slirp.so) that it dlopen()s on the
 * first slirp_new. Loading the core late is deliberate: the Go runtime
 * starts then, after a QEMU -daemonize fork, on a thread whose signal mask
 * the host has already set up (QEMU blocks SIGIO and SIGALRM and reads them
 * from a signalfd), so every Go thread inherits that mask.
 *
 * Frames reach the host only through send_packet, from slirp_pollfds_poll,
 * on the host's thread: the core queues what its stack sends and writes to
 * an eventfd that the shim registers in every slirp_pollfds_fill.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <slirp/libslirp.h>

#include "core.h"

#define EXPORT __attribute__((visibility("default")))

/* Config versions accepted: 1-4 are 4.7's; 5 and 6 (libslirp 4.8, 4.9)
 * only append fields, which are not read. */
#define ACCEPTED_CONFIG_VERSION_MAX 6

#define SLIRP_MAGIC 0x736c7077u /* "slpw" */

/* The most frames one slirp_pollfds_poll hands the host; the rest wait
 * for the next main-loop iteration (with a zero timeout). */
#define MAX_FRAMES_PER_POLL 256

/* The most guest-forward chunks one slirp_pollfds_poll hands the host,
 * and how large one is. */
#define MAX_GFWD_PER_POLL 16
#define GFWD_CHUNK 65536

/* Guest forwards one instance holds (the core's bound too). */
#define MAX_GFWD 64

struct gfwd {
    int id; /* the core's; 0: a free entry */
    struct in_addr addr;
    int port;
    SlirpWriteCb write_cb;
    void *opaque;
};

struct Slirp {
    uint32_t magic;
    int handle;
    int version;
    SlirpCb cb; /* the caller's, zero beyond its version */
    void *opaque;
    int efd;
    int efd_idx; /* add_poll's index of efd in this iteration, or -1 */
    int more;    /* frames left waiting by the last poll */
    uint8_t *slots;
    int sizes[SLIPWAY_SLOTS];
    struct in_addr vnetwork;
    struct gfwd gfwd[MAX_GFWD];
};

static struct {
    slipway_core_new_fn new_;
    slipway_core_input_fn input;
    slipway_core_take_fn take;
    slipway_core_cleanup_fn cleanup;
    slipway_core_hostfwd_fn hostfwd;
    slipway_core_info_fn connection_info;
    slipway_core_info_fn neighbor_info;
    slipway_core_state_save_fn state_save;
    slipway_core_state_load_fn state_load;
    slipway_core_gfwd_add_fn gfwd_add;
    slipway_core_gfwd_remove_fn gfwd_remove;
    slipway_core_gfwd_take_fn gfwd_take;
    slipway_core_gfwd_room_fn gfwd_room;
    slipway_core_gfwd_input_fn gfwd_input;
} core;

static pthread_mutex_t core_mu = PTHREAD_MUTEX_INITIALIZER;
static int core_loaded;

static void say(const char *fmt, const char *arg)
{
    fprintf(stderr, "libslirp (slipway): ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
}

/*
 * Go's runtime unblocks a few signals (SIGBUS, SIGURG) on a host thread the
 * first time that thread calls into Go. The host's mask is the host's:
 * each thread's first call is wrapped so its mask is put back afterwards
 * (later calls do not touch it; the C test checks that).
 */
static __thread int thread_mask_kept;

#define CORE_CALL(stmt)                                    \
    do {                                                   \
        sigset_t saved_mask_;                              \
        int first_ = !thread_mask_kept;                    \
        if (first_)                                        \
            pthread_sigmask(SIG_SETMASK, NULL, &saved_mask_); \
        stmt;                                              \
        if (first_) {                                      \
            pthread_sigmask(SIG_SETMASK, &saved_mask_, NULL); \
            thread_mask_kept = 1;                          \
        }                                                  \
    } while (0)

/*
 * A signal the host handles may land on one of Go's threads, whose
 * goroutine stacks are small. Go gives every thread it runs an alternate
 * signal stack; handlers installed with SA_ONSTACK use it. Before the
 * runtime starts, add SA_ONSTACK to the host's handlers that lack it (on
 * the host's own threads, which have no alternate stack, nothing changes).
 */
static void handlers_onstack(void)
{
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, NULL, &sa) != 0)
            continue;
        if (!(sa.sa_flags & SA_SIGINFO) &&
            (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
            continue;
        if (sa.sa_flags & SA_ONSTACK)
            continue;
        sa.sa_flags |= SA_ONSTACK;
        sigaction(sig, &sa, NULL);
    }
}

static int load_core(void)
{
    char path[4096];
    const char *env = getenv("SLIPWAY_LIBSLIRP_CORE");
    void *h;
    slipway_core_abi_fn abi;

    pthread_mutex_lock(&core_mu);
    if (core_loaded) {
        pthread_mutex_unlock(&core_mu);
        return 0;
    }
    if (env && *env) {
        snprintf(path, sizeof(path), "%s", env);
    } else {
        Dl_info info;
        const char *slash;
        if (!dladdr((void *)load_core, &info) || !info.dli_fname ||
            !(slash = strrchr(info.dli_fname, '/'))) {
            snprintf(path, sizeof(path), "libslipway-slirp.so");
        } else {
            snprintf(path, sizeof(path), "%.*s/libslipway-slirp.so",
                     (int)(slash - info.dli_fname), info.dli_fname);
        }
    }
    handlers_onstack();
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        say("cannot load the core: %s", dlerror());
        pthread_mutex_unlock(&core_mu);
        return -1;
    }
    abi = (slipway_core_abi_fn)dlsym(h, "slipway_core_abi");
#define SYM(field, name) core.field = dlsym(h, name)
    SYM(new_, "slipway_core_new");
    SYM(input, "slipway_core_input");
    SYM(take, "slipway_core_take");
    SYM(cleanup, "slipway_core_cleanup");
    SYM(hostfwd, "slipway_core_hostfwd");
    SYM(connection_info, "slipway_core_connection_info");
    SYM(neighbor_info, "slipway_core_neighbor_info");
    SYM(state_save, "slipway_core_state_save");
    SYM(state_load, "slipway_core_state_load");
    SYM(gfwd_add, "slipway_core_gfwd_add");
    SYM(gfwd_remove, "slipway_core_gfwd_remove");
    SYM(gfwd_take, "slipway_core_gfwd_take");
    SYM(gfwd_room, "slipway_core_gfwd_room");
    SYM(gfwd_input, "slipway_core_gfwd_input");
#undef SYM
    int ok = abi && core.new_ && core.input && core.take && core.cleanup && core.hostfwd &&
             core.connection_info && core.neighbor_info && core.state_save && core.state_load &&
             core.gfwd_add && core.gfwd_remove && core.gfwd_take && core.gfwd_room &&
             core.gfwd_input;
    int version = 0;
    if (ok)
        CORE_CALL(version = abi());
    if (!ok || version != SLIPWAY_CORE_ABI) {
        say("%s is not the core this libslirp.so.0 was built with", path);
        memset(&core, 0, sizeof(core));
        pthread_mutex_unlock(&core_mu);
        return -1;
    }
    core_loaded = 1;
    pthread_mutex_unlock(&core_mu);
    return 0;
}

static int valid(const Slirp *s)
{
    return s && s->magic == SLIRP_MAGIC && core_loaded;
}

static void copy4(uint8_t dst[4], struct in_addr a)
{
    memcpy(dst, &a.s_addr, 4);
}

EXPORT Slirp *slirp_new(const SlirpConfig *cfg, const SlirpCb *callbacks, void *opaque)
{
    struct slipway_cfg c;
    char err[512] = "";
    const char *shape = getenv("SLIPWAY_LIBSLIRP");
    Slirp *s;
    int h;

    if (!cfg || !callbacks || !callbacks->send_packet) {
        say("%s", "slirp_new: no config, no callbacks or no send_packet");
        return NULL;
    }
    if (cfg->version < SLIRP_CONFIG_VERSION_MIN || cfg->version > ACCEPTED_CONFIG_VERSION_MAX) {
        char v[16];
        snprintf(v, sizeof(v), "%u", cfg->version);
        say("slirp_new: unknown SlirpConfig version %s", v);
        return NULL;
    }
    if (shape && *shape && strcmp(shape, "inproc") != 0) {
        say("SLIPWAY_LIBSLIRP=%s: only \"inproc\" is built (the core runs inside this process)",
            shape);
        return NULL;
    }
    if (load_core() < 0)
        return NULL;

    memset(&c, 0, sizeof(c));
    c.version = (int)cfg->version;
    c.restricted = cfg->restricted;
    c.in_enabled = cfg->in_enabled;
    copy4(c.vnetwork, cfg->vnetwork);
    copy4(c.vnetmask, cfg->vnetmask);
    copy4(c.vhost, cfg->vhost);
    copy4(c.vdhcp_start, cfg->vdhcp_start);
    copy4(c.vnameserver, cfg->vnameserver);
    c.in6_enabled = cfg->in6_enabled;
    memcpy(c.vprefix_addr6, &cfg->vprefix_addr6, 16);
    c.vprefix_len = cfg->vprefix_len;
    memcpy(c.vhost6, &cfg->vhost6, 16);
    memcpy(c.vnameserver6, &cfg->vnameserver6, 16);
    c.vhostname = cfg->vhostname;
    c.tftp_server_name = cfg->tftp_server_name;
    c.tftp_path = cfg->tftp_path;
    c.bootfile = cfg->bootfile;
    c.vdomainname = cfg->vdomainname;
    c.vdnssearch = (const char *const *)cfg->vdnssearch;
    c.if_mtu = cfg->if_mtu;
    c.if_mru = cfg->if_mru;
    c.disable_host_loopback = cfg->disable_host_loopback;
    c.enable_emu = cfg->enable_emu;
    if (cfg->version >= 2) {
        if (cfg->outbound_addr) {
            if (cfg->outbound_addr->sin_family != AF_INET) {
                say("%s", "slirp_new: outbound_addr is not an AF_INET address");
                return NULL;
            }
            c.has_outbound_addr = 1;
            copy4(c.outbound_addr, cfg->outbound_addr->sin_addr);
        }
        if (cfg->outbound_addr6) {
            if (cfg->outbound_addr6->sin6_family != AF_INET6) {
                say("%s", "slirp_new: outbound_addr6 is not an AF_INET6 address");
                return NULL;
            }
            c.has_outbound_addr6 = 1;
            memcpy(c.outbound_addr6, &cfg->outbound_addr6->sin6_addr, 16);
        }
    }
    if (cfg->version >= 3)
        c.disable_dns = cfg->disable_dns;
    if (cfg->version >= 4)
        c.disable_dhcp = cfg->disable_dhcp;

    s = calloc(1, sizeof(*s));
    if (!s) {
        say("%s", "slirp_new: out of memory");
        return NULL;
    }
    s->slots = malloc((size_t)SLIPWAY_SLOTS * SLIPWAY_SLOT_SIZE);
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!s->slots || s->efd < 0) {
        say("slirp_new: %s", strerror(errno));
        if (s->efd >= 0)
            close(s->efd);
        free(s->slots);
        free(s);
        return NULL;
    }
    c.notify_fd = s->efd;
    CORE_CALL(h = core.new_(&c, err, sizeof(err)));
    if (h <= 0) {
        say("%s", err[0] ? err : "slirp_new failed");
        close(s->efd);
        free(s->slots);
        free(s);
        return NULL;
    }
    s->magic = SLIRP_MAGIC;
    s->handle = h;
    s->version = (int)cfg->version;
    s->opaque = opaque;
    s->efd_idx = -1;
    s->vnetwork = cfg->vnetwork;
    /* The fields a version-1..3 caller's SlirpCb has end before
     * init_completed: its struct may be that much shorter. */
    memcpy(&s->cb, callbacks,
           cfg->version >= 4 ? sizeof(SlirpCb) : offsetof(SlirpCb, init_completed));
    if (cfg->version >= 4 && s->cb.init_completed)
        s->cb.init_completed(s, opaque);
    return s;
}

EXPORT Slirp *slirp_init(int restricted, bool in_enabled, struct in_addr vnetwork,
                         struct in_addr vnetmask, struct in_addr vhost, bool in6_enabled,
                         struct in6_addr vprefix_addr6, uint8_t vprefix_len,
                         struct in6_addr vhost6, const char *vhostname,
                         const char *tftp_server_name, const char *tftp_path,
                         const char *bootfile, struct in_addr vdhcp_start,
                         struct in_addr vnameserver, struct in6_addr vnameserver6,
                         const char **vdnssearch, const char *vdomainname,
                         const SlirpCb *callbacks, void *opaque)
{
    SlirpConfig cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.version = 1;
    cfg.restricted = restricted;
    cfg.in_enabled = in_enabled;
    cfg.vnetwork = vnetwork;
    cfg.vnetmask = vnetmask;
    cfg.vhost = vhost;
    cfg.in6_enabled = in6_enabled;
    cfg.vprefix_addr6 = vprefix_addr6;
    cfg.vprefix_len = vprefix_len;
    cfg.vhost6 = vhost6;
    cfg.vhostname = vhostname;
    cfg.tftp_server_name = tftp_server_name;
    cfg.tftp_path = tftp_path;
    cfg.bootfile = bootfile;
    cfg.vdhcp_start = vdhcp_start;
    cfg.vnameserver = vnameserver;
    cfg.vnameserver6 = vnameserver6;
    cfg.vdnssearch = vdnssearch;
    cfg.vdomainname = vdomainname;
    return slirp_new(&cfg, callbacks, opaque);
}

EXPORT void slirp_cleanup(Slirp *s)
{
    if (!valid(s))
        return;
    /* The core stops every goroutine of this instance before it returns;
     * nothing is called back after this. */
    CORE_CALL(core.cleanup(s->handle));
    s->magic = 0;
    close(s->efd);
    free(s->slots);
    free(s);
}

EXPORT void slirp_pollfds_fill(Slirp *s, uint32_t *timeout, SlirpAddPollCb add_poll, void *opaque)
{
    if (!valid(s) || !add_poll)
        return;
    s->efd_idx = add_poll(s->efd, SLIRP_POLL_IN, opaque);
    if (s->more && timeout)
        *timeout = 0;
}

/* Hands queued frames to the host, at most MAX_FRAMES_PER_POLL. */
static void drain(Slirp *s)
{
    int sent = 0;
    s->more = 0;
    while (sent < MAX_FRAMES_PER_POLL) {
        int n;
        CORE_CALL(n = core.take(s->handle, s->slots, s->sizes));
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++) {
            const uint8_t *f = s->slots + (size_t)i * SLIPWAY_SLOT_SIZE + 12;
            /* The host may drop a frame (its guest is not ready); TCP
             * retransmits, as with libslirp. */
            s->cb.send_packet(f, (size_t)s->sizes[i], s->opaque);
        }
        sent += n;
        if (n < SLIPWAY_SLOTS)
            break;
    }
    if (sent >= MAX_FRAMES_PER_POLL)
        s->more = 1;
    /* Then the bytes guests sent on guest forwards, to their write_cb. */
    for (int k = 0; k < MAX_GFWD_PER_POLL; k++) {
        int id = 0, n;
        CORE_CALL(n = core.gfwd_take(s->handle, s->slots, GFWD_CHUNK, &id));
        if (n <= 0)
            return;
        for (int i = 0; i < MAX_GFWD; i++) {
            if (s->gfwd[i].id == id) {
                s->gfwd[i].write_cb(s->slots, (size_t)n, s->gfwd[i].opaque);
                break;
            }
        }
    }
    s->more = 1;
}

EXPORT void slirp_pollfds_poll(Slirp *s, int select_error, SlirpGetREventsCb get_revents,
                               void *opaque)
{
    int ready = 0;
    if (!valid(s))
        return;
    if (s->efd_idx >= 0 && !select_error && get_revents)
        ready = get_revents(s->efd_idx, opaque) & SLIRP_POLL_IN;
    s->efd_idx = -1;
    if (ready) {
        uint64_t v;
        /* Read before draining: a frame queued after the drain looked
         * makes the eventfd readable again. */
        if (read(s->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            say("eventfd: %s", strerror(errno));
    }
    if (ready || s->more)
        drain(s);
}

EXPORT void slirp_input(Slirp *s, const uint8_t *pkt, int pkt_len)
{
    if (!valid(s) || !pkt || pkt_len <= 0)
        return;
    CORE_CALL(core.input(s->handle, pkt, pkt_len));
}

EXPORT void slirp_handle_timer(Slirp *s, SlirpTimerId id, void *cb_opaque)
{
    /* slipway keeps its own timers (router advertisements are sent by the
     * core); no timer is ever created through the host. */
    (void)s;
    (void)id;
    (void)cb_opaque;
}

static int ret_errno(int r)
{
    if (r < 0) {
        errno = -r;
        return -1;
    }
    return r;
}

EXPORT int slirp_add_hostfwd(Slirp *s, int is_udp, struct in_addr host_addr, int host_port,
                             struct in_addr guest_addr, int guest_port)
{
    struct sockaddr_in h = {.sin_family = AF_INET}, g = {.sin_family = AF_INET};
    int r;
    if (!valid(s))
        return ret_errno(-EINVAL);
    if (host_port < 0 || host_port > 65535 || guest_port < 1 || guest_port > 65535)
        return ret_errno(-EINVAL);
    h.sin_addr = host_addr;
    h.sin_port = htons((uint16_t)host_port);
    g.sin_addr = guest_addr;
    g.sin_port = htons((uint16_t)guest_port);
    CORE_CALL(r = core.hostfwd(s->handle, 1, is_udp ? SLIRP_HOSTFWD_UDP : 0, &h, sizeof(h), &g,
                               sizeof(g)));
    return ret_errno(r);
}

EXPORT int slirp_remove_hostfwd(Slirp *s, int is_udp, struct in_addr host_addr, int host_port)
{
    struct sockaddr_in h = {.sin_family = AF_INET};
    int r;
    if (!valid(s) || host_port < 0 || host_port > 65535)
        return ret_errno(-EINVAL);
    h.sin_addr = host_addr;
    h.sin_port = htons((uint16_t)host_port);
    CORE_CALL(r = core.hostfwd(s->handle, 0, is_udp ? SLIRP_HOSTFWD_UDP : 0, &h, sizeof(h), NULL,
                               0));
    return ret_errno(r);
}

EXPORT int slirp_add_hostxfwd(Slirp *s, const struct sockaddr *haddr, socklen_t haddrlen,
                              const struct sockaddr *gaddr, socklen_t gaddrlen, int flags)
{
    int r;
    if (!valid(s) || !haddr || !gaddr || haddrlen == 0 || gaddrlen == 0 ||
        haddrlen > sizeof(struct sockaddr_storage) || gaddrlen > sizeof(struct sockaddr_storage))
        return ret_errno(-EINVAL);
    CORE_CALL(r = core.hostfwd(s->handle, 1, flags, haddr, (int)haddrlen, gaddr, (int)gaddrlen));
    return ret_errno(r);
}

EXPORT int slirp_remove_hostxfwd(Slirp *s, const struct sockaddr *haddr, socklen_t haddrlen,
                                 int flags)
{
    int r;
    if (!valid(s) || !haddr || haddrlen == 0 || haddrlen > sizeof(struct sockaddr_storage))
        return ret_errno(-EINVAL);
    CORE_CALL(r = core.hostfwd(s->handle, 0, flags, haddr, (int)haddrlen, NULL, 0));
    return ret_errno(r);
}

/*
 * Commands run for a guest's connection (guestfwd=...-cmd:, smb=) need
 * the library to fork and exec, which slipway does not do: each is
 * refused with ENOTSUP and a line naming it, so the host reports the
 * option as invalid instead of running without it.
 */
EXPORT int slirp_add_exec(Slirp *s, const char *cmdline, struct in_addr *guest_addr,
                          int guest_port)
{
    (void)guest_addr;
    (void)guest_port;
    if (!valid(s))
        return ret_errno(-EINVAL);
    say("running a command for a guest connection is not supported (%s)",
        cmdline ? cmdline : "");
    return ret_errno(-ENOTSUP);
}

EXPORT int slirp_add_unix(Slirp *s, const char *unixsock, struct in_addr *guest_addr,
                          int guest_port)
{
    (void)guest_addr;
    (void)guest_port;
    if (!valid(s))
        return ret_errno(-EINVAL);
    say("guest forwarding to a unix socket is not supported (%s)", unixsock ? unixsock : "");
    return ret_errno(-ENOTSUP);
}

/* libslirp's default guest-forward address: host 4 of the network. */
static struct in_addr gfwd_addr(const Slirp *s, const struct in_addr *a)
{
    struct in_addr r = s->vnetwork;
    if (a && a->s_addr)
        return *a;
    r.s_addr |= htonl(4);
    return r;
}

static struct gfwd *find_gfwd(Slirp *s, struct in_addr a, int port)
{
    for (int i = 0; i < MAX_GFWD; i++)
        if (s->gfwd[i].id && s->gfwd[i].addr.s_addr == a.s_addr && s->gfwd[i].port == port)
            return &s->gfwd[i];
    return NULL;
}

/*
 * guestfwd= to a chardev (QEMU connects the chardev: a host socket, a
 * unix socket, a file): the guest's TCP connections to guest_addr:port
 * are served inside slipway, one at a time; what the guest sends goes to
 * write_cb from slirp_pollfds_poll, what the host has for it comes in
 * through slirp_socket_recv, as much as slirp_socket_can_recv allows.
 * guest_addr is updated to the address used, as libslirp does.
 */
EXPORT int slirp_add_guestfwd(Slirp *s, SlirpWriteCb write_cb, void *opaque,
                              struct in_addr *guest_addr, int guest_port)
{
    struct gfwd *free_ = NULL;
    struct in_addr a;
    int id;
    if (!valid(s) || !write_cb || guest_port < 1 || guest_port > 65535)
        return ret_errno(-EINVAL);
    a = gfwd_addr(s, guest_addr);
    if (find_gfwd(s, a, guest_port))
        return ret_errno(-EADDRINUSE);
    for (int i = 0; i < MAX_GFWD && !free_; i++)
        if (!s->gfwd[i].id)
            free_ = &s->gfwd[i];
    if (!free_)
        return ret_errno(-ENOSPC);
    CORE_CALL(id = core.gfwd_add(s->handle, (const uint8_t *)&a.s_addr, guest_port));
    if (id <= 0)
        return ret_errno(id < 0 ? id : -EIO);
    free_->id = id;
    free_->addr = a;
    free_->port = guest_port;
    free_->write_cb = write_cb;
    free_->opaque = opaque;
    if (guest_addr)
        *guest_addr = a;
    return 0;
}

EXPORT int slirp_remove_guestfwd(Slirp *s, struct in_addr guest_addr, int guest_port)
{
    struct gfwd *g;
    int r;
    if (!valid(s))
        return ret_errno(-EINVAL);
    g = find_gfwd(s, gfwd_addr(s, &guest_addr), guest_port);
    if (!g)
        return ret_errno(-ENOENT);
    CORE_CALL(r = core.gfwd_remove(s->handle, (const uint8_t *)&g->addr.s_addr, g->port));
    memset(g, 0, sizeof(*g));
    return ret_errno(r);
}

EXPORT size_t slirp_socket_can_recv(Slirp *s, struct in_addr guest_addr, int guest_port)
{
    int r;
    if (!valid(s) || guest_port < 1 || guest_port > 65535)
        return 0;
    CORE_CALL(r = core.gfwd_room(s->handle, (const uint8_t *)&guest_addr.s_addr, guest_port));
    return r > 0 ? (size_t)r : 0;
}

EXPORT void slirp_socket_recv(Slirp *s, struct in_addr guest_addr, int guest_port,
                              const uint8_t *buf, int size)
{
    if (!valid(s) || !buf || size <= 0 || guest_port < 1 || guest_port > 65535)
        return;
    CORE_CALL(core.gfwd_input(s->handle, (const uint8_t *)&guest_addr.s_addr, guest_port, buf,
                              size));
}

EXPORT char *slirp_connection_info(Slirp *s)
{
    char *r;
    if (!valid(s))
        return NULL;
    CORE_CALL(r = core.connection_info(s->handle));
    return r;
}

EXPORT char *slirp_neighbor_info(Slirp *s)
{
    char *r;
    if (!valid(s))
        return NULL;
    CORE_CALL(r = core.neighbor_info(s->handle));
    return r;
}

EXPORT void slirp_state_save(Slirp *s, SlirpWriteCb write_cb, void *opaque)
{
    if (!valid(s) || !write_cb)
        return;
    CORE_CALL(core.state_save(s->handle, write_cb, opaque));
}

EXPORT int slirp_state_version(void)
{
    return 4;
}

EXPORT int slirp_state_load(Slirp *s, int version_id, SlirpReadCb read_cb, void *opaque)
{
    int r;
    if (!valid(s) || !read_cb || version_id < 1 || version_id > 4)
        return -EINVAL;
    CORE_CALL(r = core.state_load(s->handle, version_id, read_cb, opaque));
    return r;
}

EXPORT const char *slirp_version_string(void)
{
    return "4.7.0-slipway";
}
