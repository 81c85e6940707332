#include "common/isotime.h"

#include <time.h>

void dh_iso_time(long long t, char out[DH_ISO_TIME_LEN])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL ||
        strftime(out, DH_ISO_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        out[0] = '\0';
}
