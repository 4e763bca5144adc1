/* Behaviour shared by the workloads when they run as the only process of a
 * guest kernel (PID 1, no init system). In a container or a full VM these
 * calls do nothing: the process is not PID 1 of a kernel of its own, or it
 * lacks the capability to reboot. */
#ifndef HARNESS_PID1_H
#define HARNESS_PID1_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>

static int pid1_is_guest_init(void)
{
    /* A container's first process is PID 1 too; only a guest kernel's has
     * no /proc mounted and may mount one itself. */
    return getpid() == 1 && access("/proc/self", F_OK) != 0;
}

static int pid1_active;

static void pid1_setup(void)
{
    if (!pid1_is_guest_init())
        return;
    mkdir("/proc", 0555);
    if (mount("proc", "/proc", "proc", 0, NULL) == 0)
        pid1_active = 1;
}

/* Prints "harness-meminfo total=<bytes> available=<bytes>" so the host can
 * record the guest's own view of its memory after readiness. */
static void pid1_report_memory(void)
{
    if (!pid1_active)
        return;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return;
    char line[256];
    unsigned long long total = 0, avail = 0, v;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemTotal: %llu kB", &v) == 1)
            total = v * 1024ULL;
        else if (sscanf(line, "MemAvailable: %llu kB", &v) == 1)
            avail = v * 1024ULL;
    }
    fclose(f);
    printf("harness-meminfo total=%llu available=%llu\n", total, avail);
    fflush(stdout);
}

static void pid1_poweroff(void)
{
    if (!pid1_active)
        return;
    sync();
    reboot(RB_POWER_OFF);
}

#endif
