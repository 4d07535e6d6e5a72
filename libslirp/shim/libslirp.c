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
 * an eventfd (inproc), or the server sends them on the frames socket
 * (process); the shim registers that descriptor in every
 * slirp_pollfds_fill.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <slirp/libslirp.h>

#include "core.h"
#include "proc.h"

extern char **environ;

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
    int efd_idx; /* add_poll's index of efd (process: data) in this iteration, or -1 */
    int frames_idx; /* process: add_poll's index of frames, or -1 */
    int more;       /* frames left waiting by the last poll */
    uint8_t *slots;
    int sizes[SLIPWAY_SLOTS];
    struct in_addr vnetwork;
    struct gfwd gfwd[MAX_GFWD];
    /* The process shape: the server's pid and sockets (see proc.h);
     * ctl_mu keeps one request and its reply together. tftp_dir is the
     * host's TFTP directory (O_PATH), in which the shim opens the files
     * the server asks for, or -1. dead: the server has gone (its data
     * or frames socket ended), reaped: and its status was collected. */
    int proc;
    pid_t pid;
    int ctl, data, frames;
    pthread_mutex_t ctl_mu;
    int tftp_dir;
    int dead, reaped;
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

/* say, the first time *flag is seen clear: what holds for the whole
 * process (a seccomp filter, refused namespaces) is said once, not for
 * every netdev. */
static void say_once(int *flag, const char *fmt, const char *arg)
{
    if (!__atomic_exchange_n(flag, 1, __ATOMIC_SEQ_CST))
        say(fmt, arg);
}

static int said_seccomp, said_namespaces, said_ids, said_weaker, said_openat2;

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
    return s && s->magic == SLIRP_MAGIC && (s->proc || core_loaded);
}

static void copy4(uint8_t dst[4], struct in_addr a)
{
    memcpy(dst, &a.s_addr, 4);
}

/* ---- The process shape (proc.h) ------------------------------------- */

/* The directory this library was loaded from, for its companions. */
static void beside_library(char *path, size_t n, const char *name)
{
    Dl_info info;
    const char *slash;
    if (!dladdr((void *)beside_library, &info) || !info.dli_fname ||
        !(slash = strrchr(info.dli_fname, '/')))
        snprintf(path, n, "%s", name);
    else
        snprintf(path, n, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname, name);
}

/* Sends msg on sock with the descriptor fd attached (SCM_RIGHTS), or
 * none when fd < 0. */
static ssize_t send_fd(int sock, const struct iovec *iov, int iovcnt, int fd, int flags)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    if (fd >= 0) {
        memset(&cm, 0, sizeof(cm));
        m.msg_control = cm.buf;
        m.msg_controllen = sizeof(cm.buf);
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(h), &fd, sizeof(int));
    }
    return sendmsg(sock, &m, flags | MSG_NOSIGNAL);
}

/* Sends a request (with descriptor fd, if >= 0) and receives its reply
 * (at most cap bytes); returns the reply's length, or -1 when the server
 * is gone. ctl_mu held. */
static ssize_t rpc_locked(Slirp *s, const struct iovec *iov, int iovcnt, int fd, uint8_t *rep,
                          size_t cap)
{
    ssize_t n;
    if (send_fd(s->ctl, iov, iovcnt, fd, 0) < 0)
        return -1;
    do
        n = recv(s->ctl, rep, cap, 0);
    while (n < 0 && errno == EINTR);
    return n > 0 ? n : -1;
}

/* A request (with descriptor fd, if >= 0) whose reply is 'R' i32; a
 * dead server is -EIO. */
static int rpc_int_fd(Slirp *s, const struct iovec *iov, int iovcnt, int fd)
{
    uint8_t rep[8];
    int32_t r = -EIO;
    pthread_mutex_lock(&s->ctl_mu);
    ssize_t n = rpc_locked(s, iov, iovcnt, fd, rep, sizeof(rep));
    pthread_mutex_unlock(&s->ctl_mu);
    if (n == 5 && rep[0] == 'R')
        memcpy(&r, rep + 1, 4);
    return r;
}

static int rpc_int(Slirp *s, const struct iovec *iov, int iovcnt)
{
    return rpc_int_fd(s, iov, iovcnt, -1);
}

/* A request whose reply is 'S' bytes, returned malloc()ed and
 * NUL-terminated (*len without the NUL), or NULL. */
static char *rpc_bytes(Slirp *s, const struct iovec *iov, int iovcnt, size_t *len)
{
    uint8_t *rep = malloc(SLIPWAY_PROC_MAX_MSG + 1);
    char *out = NULL;
    if (!rep)
        return NULL;
    pthread_mutex_lock(&s->ctl_mu);
    ssize_t n = rpc_locked(s, iov, iovcnt, -1, rep, SLIPWAY_PROC_MAX_MSG);
    pthread_mutex_unlock(&s->ctl_mu);
    if (n >= 1 && rep[0] == 'S' && (out = malloc((size_t)n))) {
        memcpy(out, rep + 1, (size_t)n - 1);
        out[n - 1] = 0;
        if (len)
            *len = (size_t)n - 1;
    }
    free(rep);
    return out;
}

static int put_addr(FILE *f, const char *key, int family, const void *a)
{
    char buf[INET6_ADDRSTRLEN];
    if (!inet_ntop(family, a, buf, sizeof(buf)))
        return -1;
    return fprintf(f, "%s=%s\n", key, buf) < 0 ? -1 : 0;
}

static int put_str(FILE *f, const char *key, const char *v)
{
    if (!v)
        return 0;
    if (strchr(v, '\n')) {
        say("slirp_new: %s holds a newline", key);
        return -1;
    }
    return fprintf(f, "%s=%s\n", key, v) < 0 ? -1 : 0;
}

/* The config as the server reads it: "key=value" lines. */
static char *config_text(const struct slipway_cfg *c, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    int bad = 0;
    if (!f)
        return NULL;
    fprintf(f, "version=%d\nrestricted=%d\nin_enabled=%d\nin6_enabled=%d\nvprefix_len=%d\n"
               "if_mtu=%zu\nif_mru=%zu\ndisable_host_loopback=%d\nenable_emu=%d\n"
               "disable_dns=%d\ndisable_dhcp=%d\n",
            c->version, c->restricted, c->in_enabled, c->in6_enabled, c->vprefix_len, c->if_mtu,
            c->if_mru, c->disable_host_loopback, c->enable_emu, c->disable_dns, c->disable_dhcp);
    bad |= put_addr(f, "vnetwork", AF_INET, c->vnetwork);
    bad |= put_addr(f, "vnetmask", AF_INET, c->vnetmask);
    bad |= put_addr(f, "vhost", AF_INET, c->vhost);
    bad |= put_addr(f, "vdhcp_start", AF_INET, c->vdhcp_start);
    bad |= put_addr(f, "vnameserver", AF_INET, c->vnameserver);
    bad |= put_addr(f, "vprefix_addr6", AF_INET6, c->vprefix_addr6);
    bad |= put_addr(f, "vhost6", AF_INET6, c->vhost6);
    bad |= put_addr(f, "vnameserver6", AF_INET6, c->vnameserver6);
    if (c->has_outbound_addr)
        bad |= put_addr(f, "outbound_addr", AF_INET, c->outbound_addr);
    if (c->has_outbound_addr6)
        bad |= put_addr(f, "outbound_addr6", AF_INET6, c->outbound_addr6);
    bad |= put_str(f, "vhostname", c->vhostname);
    bad |= put_str(f, "tftp_server_name", c->tftp_server_name);
    bad |= put_str(f, "tftp_path", c->tftp_path);
    bad |= put_str(f, "bootfile", c->bootfile);
    bad |= put_str(f, "vdomainname", c->vdomainname);
    for (int i = 0; c->vdnssearch && c->vdnssearch[i] && i < 64; i++)
        bad |= put_str(f, "vdnssearch", c->vdnssearch[i]);
    if (fclose(f) != 0 || bad) {
        free(text);
        return NULL;
    }
    return text;
}

/* Moves fd to target without O_CLOEXEC (in the child, before exec). */
static int place_fd(int fd, int target)
{
    if (fd == target)
        return fcntl(fd, F_SETFD, 0);
    return dup2(fd, target) < 0 ? -1 : 0;
}

/* proc_start's failures: the server refused the settings (inproc would
 * too), or it never ran. */
#define PROC_REFUSED (-1)
#define PROC_NOT_STARTED (-2)

/* Whether a seccomp filter confines this process (/proc/self/status). */
static int under_seccomp(void)
{
    char line[256];
    int mode = 0;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "Seccomp: %d", &mode) == 1)
            break;
    fclose(f);
    return mode != 0;
}

/* ---- The server's sandbox: its namespaces and host ids ---------------- */

#define NOBODY 65534

/* Whether id is mapped in this process's user namespace (map_file is
 * /proc/self/uid_map or gid_map). */
static int id_mapped(unsigned id, const char *map_file)
{
    char line[128];
    unsigned inside, outside, n;
    int found = 0;
    FILE *f = fopen(map_file, "re");
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof(line), f))
        if (sscanf(line, "%u %u %u", &inside, &outside, &n) == 3 && id >= inside &&
            id - inside < n)
            found = 1;
    fclose(f);
    return found;
}

/* Whether a user with no right but "others" can execute path: every
 * directory on the way searchable, the file executable. */
static int executable_by_others(const char *path)
{
    char real[PATH_MAX];
    struct stat st;
    if (!realpath(path, real))
        return 0;
    for (;;) {
        char *slash = strrchr(real, '/');
        if (stat(real, &st) != 0 || !(st.st_mode & S_IXOTH))
            return 0;
        if (!slash || slash == real)
            break;
        *slash = 0;
    }
    return stat("/", &st) == 0 && (st.st_mode & S_IXOTH);
}

/*
 * The host uid and gid the server runs as, and why (its sandbox report
 * names them): the host's own, but nobody in place of root, as slipway's
 * engine does (README, Security): even outside its namespaces it could
 * then read no root file and signal no root process. Its files come from
 * the shim, which keeps the host's rights.
 */
struct ids {
    uid_t uid;
    gid_t gid;
    char why[PATH_MAX + 128];
};

static void plan_ids(const char *path, struct ids *p)
{
    p->uid = geteuid();
    p->gid = getegid();
    if (p->uid != 0) {
        snprintf(p->why, sizeof(p->why), "the host's own");
    } else if (!id_mapped(NOBODY, "/proc/self/uid_map") || !id_mapped(NOBODY, "/proc/self/gid_map")) {
        /* Root of a user namespace that maps only itself. */
        snprintf(p->why, sizeof(p->why), "root: nobody has no uid in this user namespace");
    } else if (!executable_by_others(path)) {
        snprintf(p->why, sizeof(p->why),
                 "root: nobody could not execute %s (a directory or the file is not executable by "
                 "others)",
                 path);
    } else {
        p->uid = NOBODY;
        p->gid = NOBODY;
        snprintf(p->why, sizeof(p->why), "nobody, not the host's root");
    }
}

static int write_proc(pid_t pid, const char *file, const char *text)
{
    char path[64];
    size_t len = strlen(text);
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, len);
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)len ? 0 : -1;
}

/* Maps uid and gid 0 of the server's new user namespace to p's ids on
 * the host. Root may map any id (and the server then drops root's
 * supplementary groups); anyone else only their own, with setgroups
 * denied, as the kernel requires. */
static int map_ids(pid_t pid, const struct ids *p)
{
    char line[64];
    if (geteuid() != 0 && write_proc(pid, "setgroups", "deny") < 0)
        return -1;
    snprintf(line, sizeof(line), "0 %u 1\n", (unsigned)p->uid);
    if (write_proc(pid, "uid_map", line) < 0)
        return -1;
    snprintf(line, sizeof(line), "0 %u 1\n", (unsigned)p->gid);
    return write_proc(pid, "gid_map", line);
}

/* Everything the child uses, made before the clone or fork. */
struct child_args {
    const char *path;
    char **argv;
    int ctl, data, frames, cfg, devnull, keep_stderr;
    int sync;  /* the parent writes a byte once the id maps are written */
    int in_ns; /* born in its namespaces: become their root */
    uid_t uid; /* else the host ids to take (the host is root) */
    gid_t gid;
    int drop_groups;
    sigset_t none;
};

/*
 * The child between clone (or fork) and execve. Only system calls here,
 * the id changes raw: the host is multithreaded, and after a raw clone
 * glibc's set*id would try to reach threads this process does not have.
 * It is killed when the thread that made it ends (PR_SET_PDEATHSIG: QEMU
 * creates netdevs on its main thread; set after the id changes, which
 * clear it), starts with no signal blocked, and holds its three sockets
 * (and the config file) beside stdin, stdout and stderr.
 */
__attribute__((noreturn)) static void child(const struct child_args *a)
{
    char b;
    if (a->sync >= 0 && read(a->sync, &b, 1) != 1)
        _exit(126); /* the parent could not map the ids, or died */
    uid_t u = a->in_ns ? 0 : a->uid;
    gid_t g = a->in_ns ? 0 : a->gid;
    /* Best effort: where setgroups is denied the groups are the user's
     * own already. */
    if (a->drop_groups)
        syscall(SYS_setgroups, 0, NULL);
    if ((a->in_ns || g != getegid()) && syscall(SYS_setresgid, g, g, g) != 0)
        _exit(126);
    if ((a->in_ns || u != geteuid()) && syscall(SYS_setresuid, u, u, u) != 0)
        _exit(126);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* High numbers first, so that none lands on another. */
    int c1 = fcntl(a->ctl, F_DUPFD_CLOEXEC, 10), d1 = fcntl(a->data, F_DUPFD_CLOEXEC, 10);
    int r1 = fcntl(a->frames, F_DUPFD_CLOEXEC, 10);
    int f1 = a->cfg >= 0 ? fcntl(a->cfg, F_DUPFD_CLOEXEC, 10) : -1;
    /* /dev/null too: another thread of the host may have closed a low
     * descriptor before it was opened, so it may sit on 3..6. */
    int n1 = fcntl(a->devnull, F_DUPFD_CLOEXEC, 10);
    if (c1 < 0 || d1 < 0 || r1 < 0 || n1 < 0 || (a->cfg >= 0 && f1 < 0) || place_fd(c1, 3) < 0 ||
        place_fd(d1, 4) < 0 || place_fd(r1, 5) < 0 || (f1 >= 0 && place_fd(f1, 6) < 0))
        _exit(126);
    if (dup2(n1, 0) < 0 || dup2(n1, 1) < 0 || (!a->keep_stderr && dup2(n1, 2) < 0))
        _exit(126);
    sigprocmask(SIG_SETMASK, &a->none, NULL);
    execve(a->path, a->argv, environ);
    _exit(127);
}

/* Whether clone failed because the host does not let this user create
 * the namespaces (unprivileged user namespaces off, an AppArmor or
 * seccomp rule, the namespace limit). */
static int namespaces_refused(int err)
{
    return err == EPERM || err == EINVAL || err == ENOSPC || err == EUSERS || err == EACCES;
}

/*
 * Starts the server in new user, mount, IPC, UTS and PID namespaces, its
 * root mapped to ids on the host (slipway's engine's; a Go program cannot
 * unshare a user namespace itself, so the shim creates them). Where the
 * host refuses them, a plain fork, said once on standard error: the
 * server then keeps the host's file system in view and says so, and its
 * other layers (Landlock, seccomp, no_new_privs, ...) still hold, as with
 * slipway's engine. Returns the server's pid, or -1.
 */
static pid_t spawn(struct child_args *a, const struct ids *ids, char **argv_ns, char **argv_plain)
{
    int sync[2], err;
    pid_t pid;
    char why[256];
    if (pipe2(sync, O_CLOEXEC) < 0)
        return -1;
    a->in_ns = 1;
    a->sync = sync[0];
    a->argv = argv_ns;
    a->drop_groups = geteuid() == 0;
    pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS |
                                        CLONE_NEWPID | SIGCHLD,
                         NULL, NULL, NULL, NULL);
    if (pid == 0) {
        close(sync[1]);
        child(a);
    }
    err = errno;
    close(sync[0]);
    if (pid > 0) {
        if (map_ids(pid, ids) == 0 && write(sync[1], "g", 1) == 1) {
            close(sync[1]);
            return pid;
        }
        err = errno;
        close(sync[1]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        snprintf(why, sizeof(why), "its user namespace's ids could not be mapped (%s)", strerror(err));
        say_once(&said_ids, "the slipway server's namespaces: %s; it runs without them, in this "
                            "process's, with the host's file system in view", why);
    } else {
        close(sync[1]);
        if (!namespaces_refused(err)) {
            errno = err;
            return -1;
        }
        snprintf(why, sizeof(why), "refused by the host (%s)", strerror(err));
        say_once(&said_namespaces, "the slipway server's namespaces were %s; it runs without them, "
                                   "in this process's, with the host's file system in view", why);
    }
    a->in_ns = 0;
    a->sync = -1;
    a->argv = argv_plain;
    pid = fork();
    if (pid == 0)
        child(a);
    return pid;
}

/*
 * Waits for the server to end, at most ticks of 10 ms, then SIGKILLs it,
 * and says in why how it ended (empty: status 0, or killed here).
 */
static void proc_reap(Slirp *s, int ticks, char *why, size_t n)
{
    struct timespec tick = {0, 10 * 1000 * 1000};
    int st = 0;
    pid_t r = 0;
    why[0] = 0;
    if (s->reaped)
        return;
    for (int i = 0; i < ticks && (r = waitpid(s->pid, &st, WNOHANG)) == 0; i++)
        nanosleep(&tick, NULL);
    if (r == 0)
        r = waitpid(s->pid, &st, WNOHANG);
    if (r == 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->reaped = 1;
        return;
    }
    s->reaped = 1;
    if (r != s->pid)
        return;
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
        snprintf(why, n, "killed by its seccomp filter (a system call outside its allow-list; "
                         "SLIPWAY_SECCOMP=trap or =log shows which)");
    else if (WIFSIGNALED(st))
        snprintf(why, n, "killed by signal %d", WTERMSIG(st));
    else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
        snprintf(why, n, "exited with status %d", WEXITSTATUS(st));
}

/*
 * Starts slipway-slirp-server (SLIPWAY_LIBSLIRP_SERVER, else the one
 * beside this library) in its sandbox (spawn) and hands it the config.
 * The shim opens for it what it may not open itself: SLIPWAY_CONFIG's
 * file now, the TFTP directory's files later (proc_open).
 */
static int proc_start(Slirp *s, const struct slipway_cfg *c)
{
    char path[4096], msg[4096 + 512];
    const char *env = getenv("SLIPWAY_LIBSLIRP_SERVER");
    const char *cfg_path = getenv("SLIPWAY_CONFIG");
    int ctl[2] = {-1, -1}, data[2] = {-1, -1}, frames[2] = {-1, -1}, cfg = -1;
    size_t len = 0;
    char *text = config_text(c, &len);
    if (!text)
        return PROC_REFUSED;
    if (env && *env)
        snprintf(path, sizeof(path), "%s", env);
    else
        beside_library(path, sizeof(path), SLIPWAY_SERVER_NAME);
    if (c->tftp_path && *c->tftp_path) {
        s->tftp_dir = open(c->tftp_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (s->tftp_dir < 0) {
            snprintf(msg, sizeof(msg), "slirp_new: the TFTP directory %s: %s", c->tftp_path,
                     strerror(errno));
            say("%s", msg);
            free(text);
            return PROC_REFUSED;
        }
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, data) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, frames) < 0) {
        say("slirp_new: socketpair: %s", strerror(errno));
        goto fail;
    }
    /* A unix socket's sender is limited by its own send buffer: with the
     * default (about 200 KiB), three frames of a 64 KiB MTU, or a virtio
     * queue's burst of small ones, would fill it and the rest be
     * dropped. The kernel caps this at wmem_max; best effort. */
    int buf = 4 << 20;
    setsockopt(frames[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    /* The server may run as nobody, who cannot open a root host's file:
     * it reads this descriptor. If the host cannot open it either, the
     * server tries and says why. */
    if (cfg_path && *cfg_path)
        cfg = open(cfg_path, O_RDONLY | O_CLOEXEC);
    /* Everything the child needs is made before the clone: after it,
     * only system calls. */
    struct ids ids;
    plan_ids(path, &ids);
    char uid_arg[32], why_arg[sizeof(ids.why) + 32];
    snprintf(uid_arg, sizeof(uid_arg), "--host-uid=%u", (unsigned)ids.uid);
    snprintf(why_arg, sizeof(why_arg), "--host-uid-why=%s", ids.why);
    char *argv_ns[] = {path, "--namespaces", uid_arg, why_arg, cfg >= 0 ? "--config-fd=6" : NULL,
                       NULL};
    char *argv_plain[] = {path, uid_arg, why_arg, cfg >= 0 ? "--config-fd=6" : NULL, NULL};
    struct child_args a = {.path = path, .ctl = ctl[1], .data = data[1], .frames = frames[1], .cfg = cfg,
                           .uid = ids.uid, .gid = ids.gid};
    sigemptyset(&a.none);
    /* The server's standard descriptors are /dev/null, its standard error
     * the host's only when SLIPWAY_LOG_LEVEL asks for its log: a caller
     * waiting for the host's output to end (QEMU -daemonize's parent
     * piped) must not wait for the server. Refusals reach the host's
     * standard error through the shim anyway. */
    a.keep_stderr = getenv("SLIPWAY_LOG_LEVEL") != NULL;
    a.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (a.devnull < 0) {
        say("slirp_new: /dev/null: %s", strerror(errno));
        goto fail;
    }
    pid_t pid = spawn(&a, &ids, argv_ns, argv_plain);
    if (pid < 0) {
        say("slirp_new: fork (is QEMU's -sandbox spawn=deny on?): %s", strerror(errno));
        close(a.devnull);
        goto fail;
    }
    close(a.devnull);
    close(ctl[1]);
    close(data[1]);
    close(frames[1]);
    if (cfg >= 0)
        close(cfg);
    s->pid = pid;
    s->ctl = ctl[0];
    s->data = data[0];
    s->frames = frames[0];
    pthread_mutex_init(&s->ctl_mu, NULL);
    s->proc = 1;
    {
        uint8_t rep[1 + 4 + 2048];
        struct iovec iov[2] = {{(void *)"c", 1}, {text, len}};
        int32_t r = -1;
        pthread_mutex_lock(&s->ctl_mu);
        ssize_t n = rpc_locked(s, iov, 2, -1, rep, sizeof(rep) - 1);
        pthread_mutex_unlock(&s->ctl_mu);
        free(text);
        text = NULL;
        if (n < 5 || rep[0] != 'R') {
            char why[256];
            proc_reap(s, 200, why, sizeof(why));
            snprintf(msg, sizeof(msg), "slirp_new: %s did not start%s%s", path, why[0] ? ": " : "",
                     why);
            say("%s", msg);
            return PROC_NOT_STARTED; /* proc_stop closes its sockets */
        }
        memcpy(&r, rep + 1, 4);
        rep[n > 5 ? n : 5] = 0;
        if (r != 0) {
            say("slirp_new: %s", n > 5 ? (char *)rep + 5 : "settings refused");
            s->dead = 1; /* it exits 1, as it should: nothing more to say */
            return PROC_REFUSED;
        }
        /* The layers of its sandbox that do not hold here. */
        if (n > 5)
            say_once(&said_weaker, "the slipway server's sandbox is weaker than it should be: %s",
                     (char *)rep + 5);
    }
    return 0;
fail:
    free(text);
    if (cfg >= 0)
        close(cfg);
    for (int i = 0; i < 2; i++) {
        if (ctl[i] >= 0)
            close(ctl[i]);
        if (data[i] >= 0)
            close(data[i]);
        if (frames[i] >= 0)
            close(frames[i]);
    }
    return PROC_NOT_STARTED;
}

/* Closes the sockets, which ends the server, and reaps it: SIGKILL if it
 * has not gone within two seconds. An end it did not choose is said. */
static void proc_stop(Slirp *s)
{
    char why[256];
    close(s->ctl);
    close(s->data);
    close(s->frames);
    proc_reap(s, 200, why, sizeof(why));
    if (why[0] && !s->dead)
        say("the slipway server has gone: %s", why);
    pthread_mutex_destroy(&s->ctl_mu);
}

/*
 * Opens what the server asked for ('o' u32 id, u8 kind, name; see
 * proc.h) and answers ('O' u32 id, i32 0 or -errno, the descriptor
 * attached): the host's resolv.conf, or a file of the TFTP directory
 * resolved beneath it (openat2 RESOLVE_BENEATH: no "..", absolute path or
 * symbolic link leads out), a regular file only. The server can open no
 * file itself; what a guest names reaches no further than libslirp's
 * own TFTP server would let it.
 */
static void proc_open(Slirp *s, const uint8_t *m, size_t n)
{
    uint32_t id;
    int32_t r = 0;
    int fd = -1;
    char name[PATH_MAX];
    struct stat st;
    size_t len = n - 6;
    memcpy(&id, m + 1, 4);
    if (m[5] == 'r') {
        fd = open("/etc/resolv.conf", O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    } else if (m[5] == 't' && s->tftp_dir < 0) {
        errno = ENOENT;
    } else if (m[5] == 't' && len < sizeof(name) && !memchr(m + 6, 0, len)) {
        struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
        memcpy(name, m + 6, len);
        name[len] = 0;
        fd = (int)syscall(SYS_openat2, s->tftp_dir, name, &how, sizeof(how));
        if (fd < 0 && errno == ENOSYS)
            say_once(&said_openat2, "%s", "TFTP needs openat2 (Linux 5.6); its files are refused");
    } else {
        errno = EINVAL;
    }
    if (fd >= 0) {
        /* Not a FIFO's or a device's: O_NONBLOCK kept them from
         * blocking the host here. */
        int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        int fl = ok ? fcntl(fd, F_GETFL) : -1;
        if (!ok || fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
            errno = ok || !S_ISDIR(st.st_mode) ? EACCES : EISDIR;
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0)
        r = -errno;
    struct iovec iov[] = {{(void *)"O", 1}, {&id, 4}, {&r, 4}};
    /* A full socket loses the answer; the server stops waiting. */
    send_fd(s->data, iov, 3, fd, MSG_DONTWAIT);
    if (fd >= 0)
        close(fd);
}

/* The server's socket has ended: said once, and its sockets are no
 * longer polled. */
static void proc_gone(Slirp *s)
{
    char why[256];
    s->dead = 1;
    proc_reap(s, 50, why, sizeof(why));
    say("the slipway server has gone: %s", why[0] ? why : "it closed its socket");
}

/* One message from the server's socket fd into s->slots, without
 * waiting: its length, or -1 when none waits or the server has gone. */
static ssize_t proc_recv(Slirp *s, int fd)
{
    ssize_t n = recv(fd, s->slots, SLIPWAY_PROC_MAX_MSG, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        proc_gone(s);
        return -1;
    }
    return n;
}

/* Hands the host the frames the server sent on the frames socket, at
 * most MAX_FRAMES_PER_POLL, received SLIPWAY_SLOTS to a system call; more
 * says that some may be left. An empty message is the server's end (it
 * sends no empty frame). */
static void proc_frames(Slirp *s)
{
    struct mmsghdr m[SLIPWAY_SLOTS];
    struct iovec iov[SLIPWAY_SLOTS];
    int sent = 0;
    while (sent < MAX_FRAMES_PER_POLL) {
        memset(m, 0, sizeof(m));
        for (int i = 0; i < SLIPWAY_SLOTS; i++) {
            iov[i].iov_base = s->slots + (size_t)i * SLIPWAY_SLOT_SIZE;
            iov[i].iov_len = SLIPWAY_SLOT_SIZE;
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(s->frames, m, SLIPWAY_SLOTS, MSG_DONTWAIT, NULL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            proc_gone(s); /* ECONNRESET: it died with frames unread */
            return;
        }
        if (n <= 0)
            return;
        for (int i = 0; i < n; i++) {
            if (m[i].msg_len == 0) {
                proc_gone(s);
                return;
            }
            /* Longer than a slot: not a frame the server's link sends. */
            if (m[i].msg_hdr.msg_flags & MSG_TRUNC)
                continue;
            s->cb.send_packet(iov[i].iov_base, m[i].msg_len, s->opaque);
        }
        sent += n;
        if (n < SLIPWAY_SLOTS)
            return;
    }
    s->more = 1;
}

/* Hands guest-forward bytes the server sent on the data socket to their
 * write_cb, and opens the host files it asks for. */
static void proc_side(Slirp *s)
{
    for (int k = 0; k < MAX_GFWD_PER_POLL; k++) {
        ssize_t n = proc_recv(s, s->data);
        if (n < 0)
            return;
        if (s->slots[0] == 'g' && n > 5) {
            int32_t id;
            memcpy(&id, s->slots + 1, 4);
            for (int i = 0; i < MAX_GFWD; i++)
                if (s->gfwd[i].id == id)
                    s->gfwd[i].write_cb(s->slots + 5, (size_t)n - 5, s->gfwd[i].opaque);
        } else if (s->slots[0] == 'o' && n >= 6) {
            proc_open(s, s->slots, (size_t)n);
        }
    }
    s->more = 1;
}

/* ---- One call per core function, to whichever shape runs ------------- */

/* bind_forward's answer for an address it leaves to the server to
 * refuse (too short, a unix socket's). */
#define NO_SOCKET INT_MIN

/*
 * The listening socket of a host forward, bound here for the server: the
 * host keeps its own rights (a root QEMU's port below 1024), and the
 * sandboxed server binds no port itself. As Go's listeners are: TCP with
 * SO_REUSEADDR, IPv6 sockets IPv6 only, an IPv4-mapped address as IPv4.
 * Returns the socket, -errno, or NO_SOCKET.
 */
static int bind_forward(int flags, const void *h, int hlen)
{
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    const struct sockaddr *sa;
    socklen_t len;
    sa_family_t fam;
    int udp = flags & SLIRP_HOSTFWD_UDP, one = 1, fd;
    if (hlen < (int)sizeof(sa_family_t))
        return NO_SOCKET;
    memcpy(&fam, h, sizeof(fam));
    memset(&in4, 0, sizeof(in4));
    memset(&in6, 0, sizeof(in6));
    /* The lengths the server reads (internal/slirpabi ParseSockaddr). */
    if (fam == AF_INET && hlen >= 8) {
        memcpy(&in4, h, (size_t)hlen < sizeof(in4) ? (size_t)hlen : sizeof(in4));
    } else if (fam == AF_INET6 && hlen >= 24) {
        memcpy(&in6, h, (size_t)hlen < sizeof(in6) ? (size_t)hlen : sizeof(in6));
        if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
            in4.sin_family = AF_INET;
            in4.sin_port = in6.sin6_port;
            memcpy(&in4.sin_addr, in6.sin6_addr.s6_addr + 12, 4);
        }
    } else {
        return NO_SOCKET;
    }
    if (in4.sin_family == AF_INET) {
        sa = (const struct sockaddr *)&in4;
        len = sizeof(in4);
    } else {
        sa = (const struct sockaddr *)&in6;
        len = sizeof(in6);
    }
    fd = socket(sa->sa_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if ((!udp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) ||
        (sa->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
        bind(fd, sa, len) < 0 || (!udp && listen(fd, SOMAXCONN) < 0)) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int be_hostfwd(Slirp *s, int add, int flags, const void *h, int hlen, const void *g,
                      int glen)
{
    int r, fd = -1;
    if (!s->proc) {
        CORE_CALL(r = core.hostfwd(s->handle, add, flags, h, hlen, g, glen));
        return r;
    }
    if (add) {
        fd = bind_forward(flags, h, hlen);
        if (fd == NO_SOCKET)
            fd = -1;
        else if (fd < 0)
            return fd; /* the port is taken, or not this user's to bind */
    }
    int32_t a = add, f = flags;
    uint16_t hl = (uint16_t)hlen, gl = (uint16_t)(g ? glen : 0);
    struct iovec iov[] = {{(void *)"h", 1}, {&a, 4}, {&f, 4}, {&hl, 2}, {(void *)h, hl},
                          {&gl, 2}, {(void *)g, gl}};
    r = rpc_int_fd(s, iov, 7, fd);
    if (fd >= 0)
        close(fd);
    return r;
}

static char *be_info(Slirp *s, int neighbors)
{
    char *r;
    if (!s->proc) {
        CORE_CALL(r = neighbors ? core.neighbor_info(s->handle) : core.connection_info(s->handle));
        return r;
    }
    struct iovec iov[] = {{neighbors ? (void *)"n" : (void *)"i", 1}};
    return rpc_bytes(s, iov, 1, NULL);
}

/* op: 'a' add, 'd' remove, 'o' room. */
static int be_gfwd(Slirp *s, char op, struct in_addr a, int port)
{
    int r;
    const uint8_t *addr = (const uint8_t *)&a.s_addr;
    if (!s->proc) {
        switch (op) {
        case 'a':
            CORE_CALL(r = core.gfwd_add(s->handle, addr, port));
            break;
        case 'd':
            CORE_CALL(r = core.gfwd_remove(s->handle, addr, port));
            break;
        default:
            CORE_CALL(r = core.gfwd_room(s->handle, addr, port));
        }
        return r;
    }
    int32_t p = port;
    char o[1] = {op};
    struct iovec iov[] = {{o, 1}, {(void *)addr, 4}, {&p, 4}};
    return rpc_int(s, iov, 3);
}

static void be_gfwd_input(Slirp *s, struct in_addr a, int port, const uint8_t *buf, int size)
{
    const uint8_t *addr = (const uint8_t *)&a.s_addr;
    if (!s->proc) {
        CORE_CALL(core.gfwd_input(s->handle, addr, port, buf, size));
        return;
    }
    int32_t p = port;
    /* On the control socket, answered: a byte stream may lose nothing,
     * and the room the next slirp_socket_can_recv reports must count
     * these bytes. */
    struct iovec iov[] = {{(void *)"G", 1}, {(void *)addr, 4}, {&p, 4}, {(void *)buf, (size_t)size}};
    rpc_int(s, iov, 4);
}

static void be_input(Slirp *s, const uint8_t *pkt, int len)
{
    if (!s->proc) {
        CORE_CALL(core.input(s->handle, pkt, len));
        return;
    }
    /* A full socket drops the frame, as a full link would. */
    if (len <= SLIPWAY_PROC_MAX_MSG)
        send(s->frames, pkt, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void be_state_save(Slirp *s, SlirpWriteCb write_cb, void *opaque)
{
    if (!s->proc) {
        CORE_CALL(core.state_save(s->handle, (slipway_write_cb)write_cb, opaque));
        return;
    }
    size_t len = 0;
    struct iovec iov[] = {{(void *)"s", 1}};
    char *b = rpc_bytes(s, iov, 1, &len);
    if (b && len > 0)
        write_cb(b, len, opaque);
    free(b);
}

static int be_state_load(Slirp *s, int version, SlirpReadCb read_cb, void *opaque)
{
    int r;
    if (!s->proc) {
        CORE_CALL(r = core.state_load(s->handle, version, (slipway_read_cb)read_cb, opaque));
        return r;
    }
    int32_t v = version;
    uint8_t rep[8];
    uint8_t *buf = malloc(65536 + 1);
    struct iovec req[] = {{(void *)"l", 1}, {&v, 4}};
    r = -EIO;
    if (!buf)
        return -ENOMEM;
    pthread_mutex_lock(&s->ctl_mu);
    ssize_t n = rpc_locked(s, req, 2, -1, rep, sizeof(rep));
    /* The server asks for bytes until it has the whole stream. */
    while (n == 5 && rep[0] == 'r') {
        uint32_t want;
        ssize_t got;
        memcpy(&want, rep + 1, 4);
        if (want > 65536)
            want = 65536;
        buf[0] = 'S';
        got = read_cb(buf + 1, want, opaque);
        struct iovec iov[] = {{buf, 1 + (size_t)(got > 0 ? got : 0)}};
        n = rpc_locked(s, iov, 1, -1, rep, sizeof(rep));
    }
    pthread_mutex_unlock(&s->ctl_mu);
    if (n == 5 && rep[0] == 'R')
        memcpy(&r, rep + 1, 4);
    free(buf);
    return r;
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
    /* The shape (README, "Two shapes"): by default the core runs in a
     * slipway process of its own, unless this process is under a seccomp
     * filter (QEMU's -sandbox, which may forbid fork) or the server cannot
     * be started; then, as with SLIPWAY_LIBSLIRP=inproc, inside it. */
    int proc = 1, chosen = 0;
    if (shape && *shape) {
        chosen = 1;
        if (strcmp(shape, "inproc") == 0) {
            proc = 0;
        } else if (strcmp(shape, "process") != 0) {
            say("SLIPWAY_LIBSLIRP=%s: not a shape (inproc or process)", shape);
            return NULL;
        }
    } else if (under_seccomp()) {
        proc = 0;
        say_once(&said_seccomp, "%s",
                 "this process is under a seccomp filter (QEMU's -sandbox?): the core runs in it "
                 "(the inproc shape), not in a sandboxed slipway server of its own");
    }
    if (!proc && load_core() < 0)
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
    s->tftp_dir = -1;
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
    if (proc) {
        h = 1;
        int r = proc_start(s, &c);
        if (r < 0) {
            if (s->proc)
                proc_stop(s);
            s->proc = 0;
            h = 0;
            if (s->tftp_dir >= 0)
                close(s->tftp_dir);
            s->tftp_dir = -1;
        }
        if (r == PROC_NOT_STARTED && !chosen) {
            say("%s", "the slipway server could not be started; the core runs in this process");
            proc = 0;
            if (load_core() < 0) {
                close(s->efd);
                free(s->slots);
                free(s);
                return NULL;
            }
        }
    }
    if (!proc) {
        CORE_CALL(h = core.new_(&c, err, sizeof(err)));
        if (h <= 0)
            say("%s", err[0] ? err : "slirp_new failed");
    }
    if (h <= 0) {
        close(s->efd);
        free(s->slots);
        free(s);
        return NULL;
    }
    s->magic = SLIRP_MAGIC;
    s->handle = h;
    s->version = (int)cfg->version;
    s->opaque = opaque;
    s->efd_idx = s->frames_idx = -1;
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
    if (s->proc)
        proc_stop(s);
    else
        CORE_CALL(core.cleanup(s->handle));
    if (s->tftp_dir >= 0)
        close(s->tftp_dir);
    s->magic = 0;
    close(s->efd);
    free(s->slots);
    free(s);
}

EXPORT void slirp_pollfds_fill(Slirp *s, uint32_t *timeout, SlirpAddPollCb add_poll, void *opaque)
{
    if (!valid(s) || !add_poll)
        return;
    if (s->proc && s->dead) {
        /* Its sockets' ends would be readable for ever. */
        s->efd_idx = s->frames_idx = -1;
        return;
    }
    s->efd_idx = add_poll(s->proc ? s->data : s->efd, SLIRP_POLL_IN, opaque);
    s->frames_idx = s->proc ? add_poll(s->frames, SLIRP_POLL_IN, opaque) : -1;
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
    int ready = 0, frames = 0;
    if (!valid(s))
        return;
    if (s->efd_idx >= 0 && !select_error && get_revents)
        ready = get_revents(s->efd_idx, opaque) & SLIRP_POLL_IN;
    if (s->frames_idx >= 0 && !select_error && get_revents)
        frames = get_revents(s->frames_idx, opaque) & SLIRP_POLL_IN;
    s->efd_idx = s->frames_idx = -1;
    if (s->proc) {
        int more = s->more;
        s->more = 0;
        if ((frames || more) && !s->dead)
            proc_frames(s);
        if ((ready || more) && !s->dead)
            proc_side(s);
        return;
    }
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
    be_input(s, pkt, pkt_len);
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
    r = be_hostfwd(s, 1, is_udp ? SLIRP_HOSTFWD_UDP : 0, &h, sizeof(h), &g, sizeof(g));
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
    r = be_hostfwd(s, 0, is_udp ? SLIRP_HOSTFWD_UDP : 0, &h, sizeof(h), NULL, 0);
    return ret_errno(r);
}

EXPORT int slirp_add_hostxfwd(Slirp *s, const struct sockaddr *haddr, socklen_t haddrlen,
                              const struct sockaddr *gaddr, socklen_t gaddrlen, int flags)
{
    int r;
    if (!valid(s) || !haddr || !gaddr || haddrlen == 0 || gaddrlen == 0 ||
        haddrlen > sizeof(struct sockaddr_storage) || gaddrlen > sizeof(struct sockaddr_storage))
        return ret_errno(-EINVAL);
    r = be_hostfwd(s, 1, flags, haddr, (int)haddrlen, gaddr, (int)gaddrlen);
    return ret_errno(r);
}

EXPORT int slirp_remove_hostxfwd(Slirp *s, const struct sockaddr *haddr, socklen_t haddrlen,
                                 int flags)
{
    int r;
    if (!valid(s) || !haddr || haddrlen == 0 || haddrlen > sizeof(struct sockaddr_storage))
        return ret_errno(-EINVAL);
    r = be_hostfwd(s, 0, flags, haddr, (int)haddrlen, NULL, 0);
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
    id = be_gfwd(s, 'a', a, guest_port);
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
    r = be_gfwd(s, 'd', g->addr, g->port);
    memset(g, 0, sizeof(*g));
    return ret_errno(r);
}

EXPORT size_t slirp_socket_can_recv(Slirp *s, struct in_addr guest_addr, int guest_port)
{
    int r;
    if (!valid(s) || guest_port < 1 || guest_port > 65535)
        return 0;
    r = be_gfwd(s, 'o', guest_addr, guest_port);
    return r > 0 ? (size_t)r : 0;
}

EXPORT void slirp_socket_recv(Slirp *s, struct in_addr guest_addr, int guest_port,
                              const uint8_t *buf, int size)
{
    if (!valid(s) || !buf || size <= 0 || guest_port < 1 || guest_port > 65535)
        return;
    be_gfwd_input(s, guest_addr, guest_port, buf, size);
}

EXPORT char *slirp_connection_info(Slirp *s)
{
    char *r;
    if (!valid(s))
        return NULL;
    r = be_info(s, 0);
    return r;
}

EXPORT char *slirp_neighbor_info(Slirp *s)
{
    char *r;
    if (!valid(s))
        return NULL;
    r = be_info(s, 1);
    return r;
}

EXPORT void slirp_state_save(Slirp *s, SlirpWriteCb write_cb, void *opaque)
{
    if (!valid(s) || !write_cb)
        return;
    be_state_save(s, write_cb, opaque);
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
    r = be_state_load(s, version_id, read_cb, opaque);
    return r;
}

EXPORT const char *slirp_version_string(void)
{
    return "4.7.0-slipway";
}
