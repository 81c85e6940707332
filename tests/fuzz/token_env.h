/*
 * token_env.h - what the fuzz targets that need a token share: the SoftHSM
 * token and state database tests/lib/with-token.sh made for this run.
 */
#ifndef TESTS_FUZZ_TOKEN_ENV_H
#define TESTS_FUZZ_TOKEN_ENV_H

#include "hsm/hsm.h"
#include "keystore/keystore.h"

/* Opens the token (a pool of 2 sessions) and DKIMHSM_TEST_DIR/state; exits 2
 * naming who when not run through with-token.sh, aborts when either fails.
 * Returns DKIMHSM_TEST_DIR. */
const char *fuzz_token_env(const char *who, hsm **h, ks **store);

#endif
