/*
 * Drives slipway's libslirp.so.0 through its C ABI the way hosts do, and
 * through the edge cases hosts should never hit but might: NULL handles,
 * short callback structs, unknown config versions, frames out of range,
 * bad socket addresses, corrupt migration streams. With a second library
 * path (Debian's libslirp.so.0) it also migrates a DHCP table both ways
 * between the two.
 *
 *   abi SLIPWAY_LIBSLIRP [REAL_LIBSLIRP]
 *
 * Prints one "ok NAME" line per check and exits 1 at the first failure
 * ("FAIL NAME: why"). Built and run by test/libslirp's TestCABI.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <slirp/libslirp.h>

static void fail(const char *name, const char *fmt, ...)
{
    va_list ap;
    fprintf(stdout, "FAIL %s: ", name);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    exit(1);
}

static void ok(const char *name)
{
    printf("ok %s\n", name);
    fflush(stdout);
}

#define CHECK(name, cond, ...)          \
    do {                                \
        if (!(cond))                    \
            fail(name, __VA_ARGS__);    \
    } while (0)

/* One library's functions, looked up with the versions hosts bind to. */
struct lib {
    const char *path;
    void *h;
    Slirp *(*new_)(const SlirpConfig *, const SlirpCb *, void *);
    void (*cleanup)(Slirp *);
    void (*fill)(Slirp *, uint32_t *, SlirpAddPollCb, void *);
    void (*poll)(Slirp *, int, SlirpGetREventsCb, void *);
    void (*input)(Slirp *, const uint8_t *, int);
    int (*add_hostfwd)(Slirp *, int, struct in_addr, int, struct in_addr, int);
    int (*remove_hostfwd)(Slirp *, int, struct in_addr, int);
    int (*add_hostxfwd)(Slirp *, const struct sockaddr *, socklen_t, const struct sockaddr *,
                        socklen_t, int);
    int (*remove_hostxfwd)(Slirp *, const struct sockaddr *, socklen_t, int);
    int (*add_exec)(Slirp *, const char *, struct in_addr *, int);
    int (*add_guestfwd)(Slirp *, SlirpWriteCb, void *, struct in_addr *, int);
    int (*remove_guestfwd)(Slirp *, struct in_addr, int);
    size_t (*socket_can_recv)(Slirp *, struct in_addr, int);
    void (*socket_recv)(Slirp *, struct in_addr, int, const uint8_t *, int);
    char *(*connection_info)(Slirp *);
    char *(*neighbor_info)(Slirp *);
    void (*state_save)(Slirp *, SlirpWriteCb, void *);
    int (*state_load)(Slirp *, int, SlirpReadCb, void *);
    int (*state_version)(void);
    const char *(*version_string)(void);
    void (*handle_timer)(Slirp *, SlirpTimerId, void *);
};

static void *sym(struct lib *l, const char *name, const char *version)
{
    void *p = dlvsym(l->h, name, version);
    if (!p)
        fail("symbols", "%s: no %s@%s", l->path, name, version);
    return p;
}

static void load(struct lib *l, const char *path)
{
    l->path = path;
    l->h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!l->h)
        fail("dlopen", "%s", dlerror());
    l->new_ = sym(l, "slirp_new", "SLIRP_4.1");
    l->cleanup = sym(l, "slirp_cleanup", "SLIRP_4.0");
    l->fill = sym(l, "slirp_pollfds_fill", "SLIRP_4.0");
    l->poll = sym(l, "slirp_pollfds_poll", "SLIRP_4.0");
    l->input = sym(l, "slirp_input", "SLIRP_4.0");
    l->add_hostfwd = sym(l, "slirp_add_hostfwd", "SLIRP_4.0");
    l->remove_hostfwd = sym(l, "slirp_remove_hostfwd", "SLIRP_4.0");
    l->add_hostxfwd = sym(l, "slirp_add_hostxfwd", "SLIRP_4.5");
    l->remove_hostxfwd = sym(l, "slirp_remove_hostxfwd", "SLIRP_4.5");
    l->add_exec = sym(l, "slirp_add_exec", "SLIRP_4.0");
    l->add_guestfwd = sym(l, "slirp_add_guestfwd", "SLIRP_4.0");
    l->connection_info = sym(l, "slirp_connection_info", "SLIRP_4.0");
    l->neighbor_info = sym(l, "slirp_neighbor_info", "SLIRP_4.5");
    l->state_save = sym(l, "slirp_state_save", "SLIRP_4.0");
    l->state_load = sym(l, "slirp_state_load", "SLIRP_4.0");
    l->state_version = sym(l, "slirp_state_version", "SLIRP_4.0");
    l->version_string = sym(l, "slirp_version_string", "SLIRP_4.0");
    l->handle_timer = sym(l, "slirp_handle_timer", "SLIRP_4.7");
    sym(l, "slirp_init", "SLIRP_4.0");
    sym(l, "slirp_add_unix", "SLIRP_4.2");
    l->remove_guestfwd = sym(l, "slirp_remove_guestfwd", "SLIRP_4.2");
    l->socket_recv = sym(l, "slirp_socket_recv", "SLIRP_4.0");
    l->socket_can_recv = sym(l, "slirp_socket_can_recv", "SLIRP_4.0");
}

/* --- a host: callbacks and a poll loop ----------------------------------- */

#define MAXFRAMES 64

struct host {
    pthread_t thread;   /* the thread allowed to get send_packet */
    int wrong_thread;   /* send_packet calls on another thread */
    int nframes;
    uint8_t frames[MAXFRAMES][2048];
    size_t lens[MAXFRAMES];
    int inited;         /* init_completed calls */
    struct pollfd pfds[64];
    int npfds;
};

static ssize_t send_packet(const void *buf, size_t len, void *opaque)
{
    struct host *h = opaque;
    if (!pthread_equal(pthread_self(), h->thread))
        h->wrong_thread++;
    if (h->nframes < MAXFRAMES) {
        size_t n = len < sizeof(h->frames[0]) ? len : sizeof(h->frames[0]);
        memcpy(h->frames[h->nframes], buf, n);
        h->lens[h->nframes] = len;
        h->nframes++;
    }
    return (ssize_t)len;
}

static void guest_error(const char *msg, void *opaque)
{
    (void)opaque;
    fprintf(stderr, "guest_error: %s\n", msg);
}

static int64_t clock_ns(void *opaque)
{
    struct timespec ts;
    (void)opaque;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int timer_dummy;
static void *timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
    (void)id;
    (void)cb_opaque;
    (void)opaque;
    return &timer_dummy;
}
static void timer_free(void *t, void *opaque)
{
    (void)t;
    (void)opaque;
}
static void timer_mod(void *t, int64_t when, void *opaque)
{
    (void)t;
    (void)when;
    (void)opaque;
}
static void no_fd(int fd, void *opaque)
{
    (void)fd;
    (void)opaque;
}
static void notify(void *opaque)
{
    (void)opaque;
}
static void init_completed(Slirp *s, void *opaque)
{
    struct host *h = opaque;
    (void)s;
    h->inited++;
}

static const SlirpCb full_cb = {
    .send_packet = send_packet,
    .guest_error = guest_error,
    .clock_get_ns = clock_ns,
    .timer_free = timer_free,
    .timer_mod = timer_mod,
    .register_poll_fd = no_fd,
    .unregister_poll_fd = no_fd,
    .notify = notify,
    .init_completed = init_completed,
    .timer_new_opaque = timer_new_opaque,
};

static int add_poll(int fd, int events, void *opaque)
{
    struct host *h = opaque;
    struct pollfd *p = &h->pfds[h->npfds];
    p->fd = fd;
    p->events = (events & SLIRP_POLL_IN ? POLLIN : 0) | (events & SLIRP_POLL_OUT ? POLLOUT : 0) |
                (events & SLIRP_POLL_PRI ? POLLPRI : 0);
    p->revents = 0;
    return h->npfds++;
}

static int get_revents(int idx, void *opaque)
{
    struct host *h = opaque;
    short r = h->pfds[idx].revents;
    return (r & POLLIN ? SLIRP_POLL_IN : 0) | (r & POLLOUT ? SLIRP_POLL_OUT : 0) |
           (r & POLLPRI ? SLIRP_POLL_PRI : 0) | (r & POLLERR ? SLIRP_POLL_ERR : 0) |
           (r & POLLHUP ? SLIRP_POLL_HUP : 0);
}

/* One main-loop iteration, as QEMU runs it. */
static void iterate(struct lib *l, Slirp *s, struct host *h, int max_ms)
{
    uint32_t timeout = (uint32_t)max_ms;
    int r;
    h->npfds = 0;
    l->fill(s, &timeout, add_poll, h);
    r = poll(h->pfds, (nfds_t)h->npfds, (int)(timeout < (uint32_t)max_ms ? timeout : (uint32_t)max_ms));
    l->poll(s, r < 0, get_revents, h);
}

/* Runs the loop until a frame matching want arrives (returns its index) or
 * 10 s pass (-1). Not a performance threshold: a bound on a hang. */
static int wait_frame(struct lib *l, Slirp *s, struct host *h, int from,
                      int (*want)(const uint8_t *, size_t, void *), void *arg)
{
    for (int i = 0; i < 1000; i++) {
        for (int k = from; k < h->nframes; k++)
            if (want(h->frames[k], h->lens[k], arg))
                return k;
        iterate(l, s, h, 10);
    }
    return -1;
}

static SlirpConfig default_config(void)
{
    SlirpConfig c;
    memset(&c, 0, sizeof(c));
    c.version = 4;
    c.in_enabled = true;
    c.vnetwork.s_addr = htonl(0x0a000200);
    c.vnetmask.s_addr = htonl(0xffffff00);
    c.vhost.s_addr = htonl(0x0a000202);
    c.vdhcp_start.s_addr = htonl(0x0a00020f);
    c.vnameserver.s_addr = htonl(0x0a000203);
    c.in6_enabled = true;
    inet_pton(AF_INET6, "fec0::", &c.vprefix_addr6);
    c.vprefix_len = 64;
    inet_pton(AF_INET6, "fec0::2", &c.vhost6);
    inet_pton(AF_INET6, "fec0::3", &c.vnameserver6);
    return c;
}

/* --- frames ---------------------------------------------------------------- */

static uint16_t csum(const uint8_t *p, size_t n, uint32_t sum)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1)
        sum += (uint32_t)p[n - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static const uint8_t gw_mac[6] = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};

static size_t arp_request(uint8_t *f, const uint8_t mac[6])
{
    memset(f, 0, 42);
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = 0x08, f[13] = 0x06;
    f[14] = 0, f[15] = 1, f[16] = 8, f[17] = 0, f[18] = 6, f[19] = 4, f[20] = 0, f[21] = 1;
    memcpy(f + 22, mac, 6);
    f[28] = 10, f[29] = 0, f[30] = 2, f[31] = 15;
    f[38] = 10, f[39] = 0, f[40] = 2, f[41] = 2;
    return 42;
}

static int is_arp_reply(const uint8_t *f, size_t n, void *arg)
{
    (void)arg;
    return n >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && memcmp(f + 22, gw_mac, 6) == 0;
}

/* A DHCP DISCOVER (type 1) or REQUEST (type 3, for want) from mac. */
static size_t dhcp(uint8_t *f, const uint8_t mac[6], int type, uint32_t want)
{
    uint8_t *ip = f + 14, *udp = ip + 20, *b = udp + 8;
    size_t blen = 240, n;
    memset(f, 0, 14 + 20 + 8 + 300);
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = 0x08;
    b[0] = 1, b[1] = 1, b[2] = 6;
    b[4] = 0x12, b[5] = 0x34, b[6] = mac[4], b[7] = mac[5];
    memcpy(b + 28, mac, 6);
    b[236] = 99, b[237] = 130, b[238] = 83, b[239] = 99;
    b[blen++] = 53, b[blen++] = 1, b[blen++] = (uint8_t)type;
    if (type == 3) {
        b[blen++] = 50, b[blen++] = 4;
        memcpy(b + blen, &want, 4);
        blen += 4;
        b[blen++] = 54, b[blen++] = 4, b[blen++] = 10, b[blen++] = 0, b[blen++] = 2,
        b[blen++] = 2;
    }
    b[blen++] = 255;
    while (blen < 300)
        b[blen++] = 0;
    n = 8 + blen;
    udp[0] = 0, udp[1] = 68, udp[2] = 0, udp[3] = 67;
    udp[4] = (uint8_t)(n >> 8), udp[5] = (uint8_t)n;
    ip[0] = 0x45, ip[8] = 64, ip[9] = 17;
    ip[2] = (uint8_t)((20 + n) >> 8), ip[3] = (uint8_t)(20 + n);
    memset(ip + 16, 0xff, 4);
    {
        uint16_t c = csum(ip, 20, 0);
        ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
    }
    {
        uint32_t pseudo = 0xffff + 0xffff + 17 + (uint32_t)n;
        uint16_t c = csum(udp, n, pseudo);
        if (c == 0)
            c = 0xffff;
        udp[6] = (uint8_t)(c >> 8), udp[7] = (uint8_t)c;
    }
    return 14 + 20 + n;
}

struct dhcp_want {
    const uint8_t *mac;
    int type;
    uint32_t yiaddr;
};

static int is_dhcp_reply(const uint8_t *f, size_t n, void *arg)
{
    struct dhcp_want *w = arg;
    const uint8_t *b, *o;
    if (n < 14 + 20 + 8 + 240 || f[12] != 0x08 || f[13] != 0 || f[14 + 9] != 17)
        return 0;
    b = f + 14 + (f[14] & 15) * 4 + 8;
    if (b[0] != 2 || memcmp(b + 28, w->mac, 6) != 0)
        return 0;
    for (o = b + 240; o < f + n && *o != 255; o += 2 + o[1]) {
        if (o[0] == 53 && o[2] == w->type) {
            memcpy(&w->yiaddr, b + 16, 4);
            return 1;
        }
    }
    return 0;
}

/* Leases mac's address through s; returns it (network order). */
static uint32_t lease(struct lib *l, Slirp *s, struct host *h, const uint8_t mac[6], const char *name)
{
    uint8_t f[1024];
    struct dhcp_want w = {.mac = mac, .type = 2};
    int from = h->nframes;
    l->input(s, f, (int)dhcp(f, mac, 1, 0));
    CHECK(name, wait_frame(l, s, h, from, is_dhcp_reply, &w) >= 0, "%s: no DHCP offer", l->path);
    from = h->nframes;
    w.type = 5;
    l->input(s, f, (int)dhcp(f, mac, 3, w.yiaddr));
    CHECK(name, wait_frame(l, s, h, from, is_dhcp_reply, &w) >= 0, "%s: no DHCP ack", l->path);
    return w.yiaddr;
}

/* Offers mac an address without taking it (a DISCOVER); returns it. */
static uint32_t offer(struct lib *l, Slirp *s, struct host *h, const uint8_t mac[6], const char *name)
{
    uint8_t f[1024];
    struct dhcp_want w = {.mac = mac, .type = 2};
    int from = h->nframes;
    l->input(s, f, (int)dhcp(f, mac, 1, 0));
    CHECK(name, wait_frame(l, s, h, from, is_dhcp_reply, &w) >= 0, "%s: no DHCP offer", l->path);
    return w.yiaddr;
}

/* --- state streams --------------------------------------------------------- */

struct stream {
    uint8_t buf[65536];
    size_t len, pos;
    int fail_write;
};

static ssize_t stream_write(const void *buf, size_t len, void *opaque)
{
    struct stream *st = opaque;
    if (st->fail_write || st->len + len > sizeof(st->buf))
        return -1;
    memcpy(st->buf + st->len, buf, len);
    st->len += len;
    return (ssize_t)len;
}

static ssize_t stream_read(void *buf, size_t len, void *opaque)
{
    struct stream *st = opaque;
    size_t n = st->len - st->pos < len ? st->len - st->pos : len;
    memcpy(buf, st->buf + st->pos, n);
    st->pos += n;
    return (ssize_t)n;
}

/* --- signal masks ---------------------------------------------------------- */

static void blocked_mask(sigset_t *m)
{
    sigemptyset(m);
    sigaddset(m, SIGIO);
    sigaddset(m, SIGALRM);
    sigaddset(m, SIGBUS);
    sigaddset(m, SIGURG);
}

static void check_mask(const char *name)
{
    sigset_t now, want;
    pthread_sigmask(SIG_SETMASK, NULL, &now);
    blocked_mask(&want);
    for (int sig = 1; sig < 32; sig++)
        CHECK(name, sigismember(&now, sig) == sigismember(&want, sig),
              "signal %d is %s after a call into the library", sig,
              sigismember(&now, sig) ? "blocked" : "unblocked");
}

struct thread_arg {
    struct lib *l;
    Slirp *s;
};

static void *other_thread(void *p)
{
    struct thread_arg *a = p;
    uint8_t f[64];
    char *info;
    /* slirp_input from another thread (QEMU's vCPU threads do this). */
    a->l->input(a->s, f, (int)arp_request(f, (const uint8_t[]){0x52, 0x54, 0, 1, 2, 3}));
    check_mask("mask on a second thread, first call");
    info = a->l->connection_info(a->s);
    free(info);
    check_mask("mask on a second thread, second call");
    return NULL;
}

/* --- the checks ------------------------------------------------------------ */

static void null_handles(struct lib *l)
{
    struct in_addr a = {0};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    uint32_t timeout = 1000;
    uint8_t f[64] = {0};
    struct stream st = {0};

    l->cleanup(NULL);
    l->fill(NULL, &timeout, add_poll, NULL);
    CHECK("NULL slirp", timeout == 1000, "fill changed the timeout of a NULL slirp");
    l->poll(NULL, 0, get_revents, NULL);
    l->input(NULL, f, sizeof(f));
    l->handle_timer(NULL, SLIRP_TIMER_RA, NULL);
    CHECK("NULL slirp", l->add_hostfwd(NULL, 0, a, 1, a, 1) == -1, "add_hostfwd");
    CHECK("NULL slirp", l->remove_hostfwd(NULL, 0, a, 1) == -1, "remove_hostfwd");
    CHECK("NULL slirp",
          l->add_hostxfwd(NULL, (struct sockaddr *)&sa, sizeof(sa), (struct sockaddr *)&sa,
                          sizeof(sa), 0) == -1,
          "add_hostxfwd");
    CHECK("NULL slirp", l->connection_info(NULL) == NULL, "connection_info");
    CHECK("NULL slirp", l->neighbor_info(NULL) == NULL, "neighbor_info");
    l->state_save(NULL, stream_write, &st);
    CHECK("NULL slirp", st.len == 0, "state_save wrote for a NULL slirp");
    CHECK("NULL slirp", l->state_load(NULL, 4, stream_read, &st) < 0, "state_load");
    ok("NULL slirp");
}

static void bad_configs(struct lib *l)
{
    SlirpConfig c = default_config();
    SlirpCb cb = full_cb;
    struct host h = {.thread = pthread_self()};

    CHECK("bad config", l->new_(NULL, &cb, &h) == NULL, "NULL config accepted");
    CHECK("bad config", l->new_(&c, NULL, &h) == NULL, "NULL callbacks accepted");
    cb.send_packet = NULL;
    CHECK("bad config", l->new_(&c, &cb, &h) == NULL, "no send_packet accepted");
    cb = full_cb;
    c.version = 0;
    CHECK("bad config", l->new_(&c, &cb, &h) == NULL, "config version 0 accepted");
    c.version = 7;
    CHECK("bad config", l->new_(&c, &cb, &h) == NULL, "config version 7 accepted");
    c = default_config();
    c.vnetmask.s_addr = htonl(0xff00ff00);
    CHECK("bad config", l->new_(&c, &cb, &h) == NULL, "a non-contiguous netmask accepted");
    c = default_config();
    c.vhost.s_addr = htonl(0x0b000202);
    CHECK("bad config", l->new_(&c, &cb, &h) == NULL, "a host outside the network accepted");
    ok("bad config");
}

/* A version-1 host (crosvm, slirp4netns) passes a SlirpCb that ends before
 * init_completed: put it against an inaccessible page and make sure the
 * library reads nothing beyond it. bhyve passes no guest_error and no
 * timers: NULL-check everything. */
static void short_callbacks(struct lib *l)
{
    long pg = sysconf(_SC_PAGESIZE);
    uint8_t *m = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t n = offsetof(SlirpCb, init_completed);
    SlirpCb *cb;
    SlirpConfig c = default_config();
    struct host h = {.thread = pthread_self()};
    Slirp *s;
    uint8_t f[64];

    CHECK("version-1 callbacks", m != MAP_FAILED, "mmap: %s", strerror(errno));
    mprotect(m + pg, (size_t)pg, PROT_NONE);
    cb = (SlirpCb *)(m + pg - n);
    memset(cb, 0, n);
    cb->send_packet = send_packet; /* nothing else: bhyve's set */
    c.version = 1;
    s = l->new_(&c, cb, &h);
    CHECK("version-1 callbacks", s != NULL, "slirp_new failed");
    l->input(s, f, (int)arp_request(f, (const uint8_t[]){0x52, 0x54, 0, 0, 0, 1}));
    CHECK("version-1 callbacks", wait_frame(l, s, &h, 0, is_arp_reply, NULL) >= 0, "no ARP reply");
    CHECK("version-1 callbacks", h.inited == 0, "init_completed called for a version-1 host");
    l->cleanup(s);
    munmap(m, (size_t)pg * 2);
    ok("version-1 callbacks");
}

static void frames(struct lib *l, Slirp *s, struct host *h)
{
    static uint8_t big[70000];
    uint8_t f[64];
    int k;

    l->input(s, f, 0);
    l->input(s, f, -5);
    l->input(s, NULL, 60);
    l->input(s, f, 13);
    memset(big, 0, sizeof(big));
    arp_request(big, (const uint8_t[]){0x52, 0x54, 0, 0, 0, 2});
    l->input(s, big, 1515);               /* larger than MTU 1500 + 14 */
    l->input(s, big, (int)sizeof(big));   /* larger than any frame */
    ok("bad frames dropped");

    l->input(s, f, (int)arp_request(f, (const uint8_t[]){0x52, 0x54, 0, 0, 0, 3}));
    k = wait_frame(l, s, h, 0, is_arp_reply, NULL);
    CHECK("frames", k >= 0, "no ARP reply from the gateway");
    CHECK("frames", h->wrong_thread == 0, "send_packet called on another thread");
    ok("ARP through send_packet on the host's thread");
}

static void forwards(struct lib *l, Slirp *s)
{
    struct sockaddr_in h4 = {.sin_family = AF_INET}, g4 = {.sin_family = AF_INET};
    struct sockaddr_in6 h6 = {.sin6_family = AF_INET6};
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    struct in_addr any = {0}, lo;
    int port, fd;
    char *info, want[128];
    socklen_t len = sizeof(h4);

    /* A port nothing listens on, found by binding one. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    h4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&h4, sizeof(h4));
    getsockname(fd, (struct sockaddr *)&h4, &len);
    port = ntohs(h4.sin_port);
    close(fd);

    lo.s_addr = htonl(INADDR_LOOPBACK);
    CHECK("hostfwd", l->add_hostfwd(s, 0, lo, port, any, 22) == 0, "add: %s", strerror(errno));
    errno = 0;
    CHECK("hostfwd", l->add_hostfwd(s, 0, lo, port, any, 22) == -1 && errno == EADDRINUSE,
          "a second forward of the same port: errno %d", errno);
    info = l->connection_info(s);
    snprintf(want, sizeof(want), "127.0.0.1 %5d       10.0.2.15    22", port);
    CHECK("info usernet", info && strstr(info, "Protocol[State]    FD  Source Address  Port") &&
                              strstr(info, "TCP[HOST_FORWARD]") && strstr(info, want),
          "connection_info lacks the forward (%s):\n%s", want, info ? info : "(null)");
    free(info);
    ok("info usernet");
    CHECK("hostfwd", l->remove_hostfwd(s, 0, lo, port) == 0, "remove: %s", strerror(errno));
    errno = 0;
    CHECK("hostfwd", l->remove_hostfwd(s, 0, lo, port) == -1 && errno != 0,
          "removing twice succeeded");
    CHECK("hostfwd", l->add_hostfwd(s, 0, lo, port, any, 0) == -1 && errno == EINVAL,
          "guest port 0 accepted");
    CHECK("hostfwd", l->add_hostfwd(s, 0, lo, 70000, any, 22) == -1 && errno == EINVAL,
          "host port 70000 accepted");
    ok("hostfwd");

    /* IPv6 host address through hostxfwd, UDP too. */
    h6.sin6_addr = in6addr_loopback;
    h6.sin6_port = htons((uint16_t)port);
    g4.sin_port = htons(53);
    CHECK("hostxfwd", l->add_hostxfwd(s, (struct sockaddr *)&h6, sizeof(h6), (struct sockaddr *)&g4,
                                      sizeof(g4), SLIRP_HOSTFWD_UDP | SLIRP_HOSTFWD_V6ONLY) == 0,
          "add [::1]: %s", strerror(errno));
    CHECK("hostxfwd", l->remove_hostxfwd(s, (struct sockaddr *)&h6, sizeof(h6), SLIRP_HOSTFWD_UDP) == 0,
          "remove [::1]: %s", strerror(errno));
    strcpy(u.sun_path, "/tmp/slipway-abi-test.sock");
    errno = 0;
    CHECK("hostxfwd", l->add_hostxfwd(s, (struct sockaddr *)&u, sizeof(u), (struct sockaddr *)&g4,
                                      sizeof(g4), 0) == -1 && errno == EAFNOSUPPORT,
          "a unix socket forward: errno %d", errno);
    CHECK("hostxfwd", l->add_hostxfwd(s, (struct sockaddr *)&h6, 1, (struct sockaddr *)&g4,
                                      sizeof(g4), 0) == -1 && errno == EINVAL,
          "a 1-byte address accepted");
    CHECK("hostxfwd", l->add_hostxfwd(s, (struct sockaddr *)&h6, 4096, (struct sockaddr *)&g4,
                                      sizeof(g4), 0) == -1 && errno == EINVAL,
          "a 4096-byte address accepted");
    ok("hostxfwd");

    errno = 0;
    CHECK("guestfwd", l->add_exec(s, "smbd", &lo, 445) == -1 && errno == ENOTSUP,
          "add_exec: errno %d", errno);
    ok("exec refused");

    {
        struct in_addr g = {0}, in_net;
        in_net.s_addr = htonl(0x0a000264); /* 10.0.2.100 */
        errno = 0;
        CHECK("guestfwd", l->add_guestfwd(s, stream_write, NULL, &lo, 1) == -1 && errno == EINVAL,
              "a guestfwd outside the network: errno %d", errno);
        CHECK("guestfwd", l->add_guestfwd(s, NULL, NULL, &in_net, 1) == -1 && errno == EINVAL,
              "a guestfwd with no write_cb accepted");
        CHECK("guestfwd", l->add_guestfwd(s, stream_write, NULL, &in_net, 0) == -1,
              "a guestfwd to port 0 accepted");
        CHECK("guestfwd", l->add_guestfwd(s, stream_write, NULL, &in_net, 4321) == 0, "add: %s",
              strerror(errno));
        CHECK("guestfwd", l->add_guestfwd(s, stream_write, NULL, &in_net, 4321) == -1 &&
                              errno == EADDRINUSE,
              "the same guestfwd twice: errno %d", errno);
        /* Address 0 is libslirp's default, host 4 of the network. */
        CHECK("guestfwd", l->add_guestfwd(s, stream_write, NULL, &g, 4322) == 0 &&
                              g.s_addr == htonl(0x0a000204),
              "the default address: %s", inet_ntoa(g));
        CHECK("guestfwd", l->socket_can_recv(s, in_net, 4321) == 0,
              "room for bytes with no guest connected");
        l->socket_recv(s, in_net, 4321, (const uint8_t *)"x", 1); /* dropped, counted */
        l->socket_recv(s, in_net, 4321, NULL, 5);
        CHECK("guestfwd", l->remove_guestfwd(s, in_net, 4321) == 0, "remove: %s", strerror(errno));
        CHECK("guestfwd", l->remove_guestfwd(s, in_net, 4321) == -1 && errno == ENOENT,
              "removed twice: errno %d", errno);
        CHECK("guestfwd", l->remove_guestfwd(s, g, 4322) == 0, "remove the default: %s",
              strerror(errno));
        ok("guestfwd");
    }
}

static void states(struct lib *l, Slirp *s)
{
    struct stream st = {0}, bad;
    l->state_save(s, stream_write, &st);
    CHECK("state", st.len == 131, "state_save wrote %zu bytes, want 131", st.len);
    CHECK("state", l->state_load(s, 4, stream_read, &st) == 0 && st.pos == 131,
          "loading our own stream: consumed %zu", st.pos);
    st.pos = 0;
    CHECK("state", l->state_load(s, 5, stream_read, &st) < 0, "version 5 accepted");
    CHECK("state", l->state_load(s, 0, stream_read, &st) < 0, "version 0 accepted");
    bad = st;
    bad.len = 40, bad.pos = 0;
    CHECK("state", l->state_load(s, 4, stream_read, &bad) < 0, "a truncated stream accepted");
    bad = st;
    bad.buf[0] = 42, bad.pos = 0;
    CHECK("state", l->state_load(s, 4, stream_read, &bad) < 0, "a bogus socket record accepted");
    st.fail_write = 1, st.len = 0;
    l->state_save(s, stream_write, &st); /* a failing writer: no crash */
    ok("state save/load");
}

/* Migrates a DHCP table from one library to the other: the MAC leased on
 * the source keeps its address on the destination, so a second MAC is
 * offered the next one. */
static void migrate(struct lib *from, struct lib *to, const char *name)
{
    const uint8_t mac1[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56}, mac2[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x57};
    SlirpConfig c = default_config();
    struct host hs = {.thread = pthread_self()}, hd = {.thread = pthread_self()};
    struct stream st = {0};
    Slirp *src, *dst;
    uint32_t a1, a2;

    src = from->new_(&c, &full_cb, &hs);
    CHECK(name, src != NULL, "%s: slirp_new", from->path);
    a1 = lease(from, src, &hs, mac1, name);
    CHECK(name, a1 == htonl(0x0a00020f), "first lease is not 10.0.2.15");
    from->state_save(src, stream_write, &st);
    from->cleanup(src);

    dst = to->new_(&c, &full_cb, &hd);
    CHECK(name, dst != NULL, "%s: slirp_new", to->path);
    CHECK(name, to->state_load(dst, to->state_version(), stream_read, &st) == 0 && st.pos == st.len,
          "%s could not load %s's %zu-byte stream", to->path, from->path, st.len);
    a2 = offer(to, dst, &hd, mac2, name);
    CHECK(name, a2 == htonl(0x0a000210), "after migration a new MAC was offered %s, not 10.0.2.16",
          inet_ntoa((struct in_addr){a2}));
    CHECK(name, offer(to, dst, &hd, mac1, name) == a1, "the migrated MAC lost its address");
    to->cleanup(dst);
    ok(name);
}

int main(int argc, char **argv)
{
    struct lib ours = {0}, real = {0};
    SlirpConfig c = default_config();
    struct host h = {.thread = pthread_self()}, h2 = {.thread = pthread_self()};
    sigset_t mask;
    Slirp *s, *s2;
    pthread_t t;
    struct thread_arg ta;

    if (argc < 2) {
        fprintf(stderr, "usage: %s SLIPWAY_LIBSLIRP [REAL_LIBSLIRP]\n", argv[0]);
        return 2;
    }
    /* The host's mask, as QEMU sets it on its main loop thread. */
    blocked_mask(&mask);
    pthread_sigmask(SIG_SETMASK, &mask, NULL);

    load(&ours, argv[1]);
    ok("symbols");
    CHECK("version", ours.state_version() == 4, "slirp_state_version() = %d", ours.state_version());
    CHECK("version", strstr(ours.version_string(), "slipway") != NULL, "version string %s",
          ours.version_string());
    ok("version");
    null_handles(&ours);
    bad_configs(&ours);

    s = ours.new_(&c, &full_cb, &h);
    CHECK("slirp_new", s != NULL, "slirp_new failed");
    CHECK("slirp_new", h.inited == 1, "init_completed called %d times", h.inited);
    ok("slirp_new");
    check_mask("mask on the host's thread, first call");
    frames(&ours, s, &h);
    check_mask("mask on the host's thread, later calls");
    ok("signal mask kept");

    ta.l = &ours, ta.s = s;
    pthread_create(&t, NULL, other_thread, &ta);
    pthread_join(t, NULL);
    ok("second thread");

    s2 = ours.new_(&c, &full_cb, &h2);
    CHECK("two instances", s2 != NULL, "a second slirp_new failed");
    ours.cleanup(s2);
    ok("two instances");

    forwards(&ours, s);
    states(&ours, s);
    ours.cleanup(s);
    ok("cleanup");
    short_callbacks(&ours);

    if (argc > 2) {
        load(&real, argv[2]);
        migrate(&ours, &real, "migration slipway -> libslirp");
        migrate(&real, &ours, "migration libslirp -> slipway");
    }
    printf("PASS\n");
    return 0;
}
