/* The whole userspace of the accelerator probe guest: it proves the kernel
 * reached init by printing a marker, then powers the guest off so QEMU exits
 * at once. With harness_probe=stay on the kernel command line (the kernel
 * passes it as an environment variable) it stays up instead, which tests use
 * as a guest that never becomes ready. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/reboot.h>

int main(void)
{
    printf("harness-probe-ok\n");
    fflush(stdout);
    const char *mode = getenv("harness_probe");
    if (mode && strcmp(mode, "stay") == 0)
        for (;;)
            pause();
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
