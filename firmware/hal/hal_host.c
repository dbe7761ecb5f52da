/*
 * Host HAL: the firmware built for the host (mcuquant/device/hostfw.py), its "UART" a TCP socket.
 *
 * mq_hal_init listens on 127.0.0.1, port MCUQUANT_HOSTFW_PORT (0 or unset: any free port),
 * prints "MCUQUANT_HOSTFW_PORT=<port>" on stdout and accepts one connection, within
 * MCUQUANT_HOSTFW_ACCEPT_TIMEOUT_MS (default 30000; then it exits with status 2, so a harness
 * that died never leaves it behind). The peer closing the connection ends the process (status 0).
 * The harness reaches it with pyserial's socket:// URL, the same path as QEMU's -serial tcp:.
 * MCUQUANT_HOSTFW_RX_BUFFER=N makes it announce an N-byte receive buffer (mq_hal_rx_buffer).
 * Counter: CLOCK_MONOTONIC in microseconds.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mq_hal.h"

/* The host's stand-in for a UART peripheral: one connection and a receive buffer. */
static struct {
    int fd;
    uint8_t buf[4096];
    size_t len, pos;
} uart = {-1, {0}, 0, 0};

static void die(const char *what)
{
    fprintf(stderr, "hostfw: %s: %s\n", what, strerror(errno));
    exit(1);
}

static long env_long(const char *name, long fallback)
{
    const char *text = getenv(name);
    char *end = NULL;
    long v;
    if (text == NULL || *text == '\0') return fallback;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 0) {
        fprintf(stderr, "hostfw: %s=%s is not a non-negative integer\n", name, text);
        exit(1);
    }
    return v;
}

void mq_hal_init(void)
{
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    struct pollfd pfd;
    long port = env_long("MCUQUANT_HOSTFW_PORT", 0);
    long timeout_ms = env_long("MCUQUANT_HOSTFW_ACCEPT_TIMEOUT_MS", 30000);
    int one = 1;
    int listener;

    signal(SIGPIPE, SIG_IGN); /* a closed peer shows up as a write error instead */
    if (port > 65535) {
        fprintf(stderr, "hostfw: MCUQUANT_HOSTFW_PORT=%ld is not a TCP port\n", port);
        exit(1);
    }
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) die("socket");
    if (setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) die("setsockopt");
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind 127.0.0.1");
    if (listen(listener, 1) != 0) die("listen");
    if (getsockname(listener, (struct sockaddr *)&addr, &addr_len) != 0) die("getsockname");
    printf("MCUQUANT_HOSTFW_PORT=%u\n", (unsigned)ntohs(addr.sin_port));
    fflush(stdout);

    pfd.fd = listener;
    pfd.events = POLLIN;
    pfd.revents = 0;
    for (;;) {
        int r = poll(&pfd, 1, timeout_ms > 2147483647L ? 2147483647 : (int)timeout_ms);
        if (r > 0) break;
        if (r == 0) {
            fprintf(stderr, "hostfw: no connection within %ld ms, exiting\n", timeout_ms);
            exit(2);
        }
        if (errno != EINTR) die("poll");
    }
    uart.fd = accept(listener, NULL, NULL);
    if (uart.fd < 0) die("accept");
    close(listener);
    /* Small request/reply frames: without this, Nagle + delayed ACK add ~40 ms per exchange. */
    if (setsockopt(uart.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) die("setsockopt TCP_NODELAY");
}

int mq_hal_read_byte(uint8_t *byte)
{
    if (uart.pos == uart.len) {
        struct pollfd pfd;
        ssize_t n;
        pfd.fd = uart.fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        /* Wait a little instead of spinning: the main loop polls, the host CPU is shared. */
        if (poll(&pfd, 1, 20) <= 0) return 0;
        n = recv(uart.fd, uart.buf, sizeof uart.buf, 0);
        if (n == 0) exit(0); /* the harness closed the link: done */
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) return 0;
            die("recv");
        }
        uart.len = (size_t)n;
        uart.pos = 0;
    }
    *byte = uart.buf[uart.pos++];
    return 1;
}

void mq_hal_write(const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(uart.fd, data, len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE || errno == ECONNRESET) exit(0); /* the harness went away */
            die("send");
        }
        data += n;
        len -= (size_t)n;
    }
}

static uint64_t monotonic_us(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint32_t mq_hal_counter(void) { return (uint32_t)(monotonic_us() & 0xffffffffu); }
const char *mq_hal_counter_unit(void) { return "microseconds"; }
/* A TCP socket: the kernel holds what the firmware has not read yet and the sender waits.
 * MCUQUANT_HOSTFW_RX_BUFFER=N announces N bytes instead, as a board with a plain UART would. */
uint32_t mq_hal_rx_buffer(void)
{
    long n = env_long("MCUQUANT_HOSTFW_RX_BUFFER", -1);
    return n < 0 || n > 0xFFFFFFFEl ? 0xFFFFFFFFu : (uint32_t)n;
}

uint32_t mq_hal_millis(void) { return (uint32_t)((monotonic_us() / 1000u) & 0xffffffffu); }
