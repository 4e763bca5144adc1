/* http: a minimal HTTP/1.1 server on port 8080 answering every request with
 * a fixed 612-byte page, the size of nginx's default index page used by the
 * published nginx unikernel experiments. Single-threaded on purpose: the
 * harness measures boot and memory, not throughput. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "../common/pid1.h"

#define PORT 8080
#define BODY_LEN 612

static char body[BODY_LEN + 1];
static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

static void make_body(void)
{
    static const char head[] = "<!DOCTYPE html>\n<html><head><title>harness</title></head>"
                               "<body><h1>harness http workload</h1><p>";
    static const char tail[] = "</p></body></html>\n";
    size_t h = sizeof head - 1, t = sizeof tail - 1;
    memcpy(body, head, h);
    memset(body + h, '.', BODY_LEN - h - t);
    memcpy(body + BODY_LEN - t, tail, t);
    body[BODY_LEN] = '\0';
}

int main(void)
{
    pid1_setup();
    make_body();
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) { perror("socket"); return 1; }
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(PORT);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("bind"); return 1; }
    if (listen(s, 64) < 0) { perror("listen"); return 1; }
    printf("harness-listening http %d\n", PORT);
    fflush(stdout);
    pid1_report_memory();

    char header[256];
    int hlen = snprintf(header, sizeof header,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n", BODY_LEN);
    char req[2048];
    while (!stopping) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            perror("accept");
            break;
        }
        ssize_t n = read(c, req, sizeof req);
        if (n > 0) {
            (void)!write(c, header, (size_t)hlen);
            (void)!write(c, body, BODY_LEN);
        }
        close(c);
    }
    close(s);
    pid1_poweroff();
    return 0;
}
