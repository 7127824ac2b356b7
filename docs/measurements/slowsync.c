// Measurement only (docs/measurements/idle.sh with SLOWSYNC_US set): an
// LD_PRELOAD shim that makes every fsync and fdatasync of the process take
// SLOWSYNC_US microseconds longer (default 4000), as on a disk whose cache
// flush is slow (eMMC and SD cards in phones and edge gateways, consumer
// SSDs without power-loss protection).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
static unsigned delay(void) { const char *v = getenv("SLOWSYNC_US"); return v ? (unsigned)atoi(v) : 4000; }
int fdatasync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fdatasync"); usleep(delay()); return real(fd); }
int fsync(int fd) { static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fsync"); usleep(delay()); return real(fd); }
