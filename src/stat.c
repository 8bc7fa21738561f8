/* stat: placeholder until the stat tool lands. */
#include "stat.h"

#include <stdio.h>

int stat_main(const char *admin_url, int interval_ms, int iterations)
{
    (void)interval_ms, (void)iterations;
    fprintf(stderr, "usergate -s %s: not available\n", admin_url);
    return 1;
}
