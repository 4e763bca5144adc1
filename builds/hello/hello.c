/* hello: the smallest workload. Prints its readiness line and exits.
 *
 * When it runs as PID 1 with nothing else in the system (the Lupine-style
 * unikernel form), it reports the guest's own memory view and powers the
 * guest off itself, because there is no init to do it and an init that
 * exits makes the kernel panic. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "../common/pid1.h"

int main(void)
{
    pid1_setup();
    printf("harness-ready hello\n");
    fflush(stdout);
    pid1_report_memory();
    pid1_poweroff();
    return 0;
}
