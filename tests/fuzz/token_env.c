#include "tests/fuzz/token_env.h"

#include <stdio.h>
#include <stdlib.h>

const char *fuzz_token_env(const char *who, hsm **h, ks **store)
{
    hsm_config hc = {getenv("DKIMHSM_TEST_MODULE"), getenv("DKIMHSM_TEST_TOKEN"),
                     getenv("DKIMHSM_TEST_PIN_FILE"), 2};
    const char *dir = getenv("DKIMHSM_TEST_DIR");
    char state[512];
    dh_err e = {0};
    if (hc.module == NULL || dir == NULL) {
        fprintf(stderr, "%s: run through tests/lib/with-token.sh\n", who);
        exit(2);
    }
    snprintf(state, sizeof(state), "%s/state", dir);
    if (hsm_open(&hc, h, &e) != DH_OK || ks_open(state, store, &e) != DH_OK) {
        fprintf(stderr, "%s: %s\n", who, e.msg);
        abort();
    }
    return dir;
}
