/* Hand one end of a new socketpair to slipway as a stream link; keep the
 * other end for the VM's NIC. Build: cc -o addlink addlink.c */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Sends POST /v1/links with fd attached; returns the HTTP status, or -1. */
static int slipway_add_link(const char *api, int fd, const char *kind,
                            const char *name, char *answer, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char body[256], req[512];
	int s, n, m;

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", api);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0)
		return -1;
	n = snprintf(body, sizeof body, "{\"kind\":\"%s\",\"name\":\"%s\"}", kind, name);
	m = snprintf(req, sizeof req,
		     "POST /v1/links HTTP/1.1\r\n"
		     "Host: slipway\r\n"
		     "Content-Type: application/json\r\n"
		     "Content-Length: %d\r\n"
		     "Connection: close\r\n"
		     "\r\n%s", n, body);

	/* The whole request and the descriptor in one sendmsg. */
	union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } c;
	struct iovec iov = { .iov_base = req, .iov_len = m };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = c.buf, .msg_controllen = sizeof c.buf };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	if (sendmsg(s, &msg, 0) != m) {
		close(s);
		return -1;
	}

	/* The answer: "HTTP/1.1 201 Created" ... then the link as JSON. */
	size_t got = 0;
	while (got + 1 < len && (n = read(s, answer + got, len - 1 - got)) > 0)
		got += n;
	answer[got] = 0;
	close(s);
	int status = -1;
	sscanf(answer, "HTTP/1.%*d %d", &status);
	return status;
}

int main(int argc, char **argv)
{
	char answer[4096];
	int sv[2];

	if (argc != 2) {
		fprintf(stderr, "usage: %s API-SOCKET\n", argv[0]);
		return 2;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 1;
	int status = slipway_add_link(argv[1], sv[1], "stream", "vm1-net1", answer, sizeof answer);
	close(sv[1]); /* slipway holds its own copy now */
	printf("%d\n%s\n", status, answer);
	/* sv[0] is the VM's end: QMP getfd + netdev_add socket,fd=... */
	return status == 201 ? 0 : 1;
}
