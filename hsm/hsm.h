/*
 * hsm.h - the token layer: the only code in dkimhsm that speaks PKCS#11.
 *
 * A module named in the config is loaded with p11-kit, the token is chosen by
 * an RFC 7512 pkcs11: URI, the user PIN comes from a file (never argv). Keys
 * are generated (or imported) inside the token as CKA_SENSITIVE and
 * non-extractable; nothing here can read private key material back out.
 *
 * Thread safety: an hsm may be used from many threads at once. Each signature
 * in flight takes a session of its own from a bounded pool; a session broken
 * by CKR_SESSION_HANDLE_INVALID / CKR_SESSION_CLOSED / CKR_USER_NOT_LOGGED_IN
 * is reopened (and the token logged in again) once, and a stale key handle
 * (CKR_OBJECT_HANDLE_INVALID, as SoftHSM says after a logout) is found again
 * by CKA_ID once, before the error is returned. Token errors carry the CKR_
 * name in dh_err.
 *
 * Recovery: when the token itself is gone (CKR_DEVICE_REMOVED,
 * CKR_TOKEN_NOT_PRESENT, CKR_SLOT_ID_INVALID, CKR_CRYPTOKI_NOT_INITIALIZED,
 * CKR_DEVICE_ERROR, or a failure after which C_GetTokenInfo fails too - SoftHSM
 * with its token directory moved away says CKR_GENERAL_ERROR), or when the
 * new login a lost session needs is refused (CKR_PIN_INCORRECT etc.), the
 * hsm is marked down and re-initialised: new operations wait while the ones in
 * flight finish, then C_Finalize, C_Initialize, the token is found again by
 * its URI (its slot may change), the user logs in, and every hsm_key finds
 * its object again on first use. No restart and no new hsm_key is needed.
 * The first attempt runs at once; while attempts fail they run at most once
 * per interval, 100 ms doubling to 5 s (reset by an operation that works),
 * and every operation in between fails fast with DH_ETOKEN and "token 'X'
 * unavailable (CKR_...), next attempt in N ms" without touching the token.
 * The loss, each failed attempt and the recovery are logged once each.
 *
 * Fork before hsm_open(), never after: PKCS#11 state is not fork-safe. In a
 * child of the process that opened it, every operation fails with DH_ESTATE
 * and hsm_close() only frees memory.
 *
 * DKIMHSM_PKCS11_TRACE=1 in the environment (read by hsm_open) logs every
 * C_* call with its session, CKR_ result and duration to stderr.
 */
#ifndef HSM_HSM_H
#define HSM_HSM_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

#define HSM_ID_LEN 16 /* CKA_ID of keys we create: random bytes */

enum hsm_keytype { HSM_KEY_RSA = 0, HSM_KEY_ED25519 = 1 };

typedef struct hsm hsm;
typedef struct hsm_key hsm_key;

typedef struct hsm_config {
    const char *module;    /* path of the PKCS#11 module (.so) */
    const char *token_uri; /* "pkcs11:token=dkim" - RFC 7512, token attributes only */
    const char *pin_file;  /* user PIN; must not be readable by group/others */
    unsigned pool_size;    /* sessions kept open; 0 = 4 */
} hsm_config;

/* Custody attributes of a private key as the token reports them. */
typedef struct hsm_custody {
    int sensitive, extractable, always_sensitive, never_extractable, local;
} hsm_custody;

/* Loads the module, finds exactly one token matching the URI (DH_ENOTFOUND
 * naming the URI and the tokens seen when none does), opens the session pool
 * and logs in as user (DH_ELOGIN with CKR_PIN_INCORRECT etc.).
 * *out is owned by the caller: hsm_close(). */
int hsm_open(const hsm_config *cfg, hsm **out, dh_err *e) DH_WUR;
/* No operation may be in flight. hsm_close(NULL) is a no-op. */
void hsm_close(hsm *h);

/* Generates a key pair inside the token. RSA: bits 2048 (0 = default), 3072,
 * 4096; below 1024 refused (RFC 8301); other sizes from 1024 up accepted (the
 * caller prints hsm_rsa_bits_warning() for them). Ed25519: bits ignored. The private key is
 * CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_SIGN = TRUE, CKA_EXTRACTABLE = FALSE; both halves
 * carry label and a fresh random CKA_ID, which is written to id. */
int hsm_generate(hsm *h, enum hsm_keytype type, unsigned bits, const char *label,
                 uint8_t id[HSM_ID_LEN], dh_err *e) DH_WUR;

/* NULL when bits is a size to use silently, else a warning sentence. */
const char *hsm_rsa_bits_warning(unsigned bits);

/* Imports a PEM private key (PKCS#1, PKCS#8 or OpenSSL's "PRIVATE KEY"; RSA
 * >= 1024 bits or Ed25519) as a sensitive, non-extractable token object plus
 * its public half, with label and a fresh CKA_ID written to id. *type and
 * *bits describe the key. Key material read from the file is wiped. */
int hsm_import_pem(hsm *h, const char *pem_path, const char *label, uint8_t id[HSM_ID_LEN],
                   enum hsm_keytype *type, unsigned *bits, dh_err *e) DH_WUR;

/* Finds the private key with this CKA_ID (1 to 64 bytes). *out is owned by the caller
 * (hsm_key_free) and may be shared by threads for signing. */
int hsm_key_open(hsm *h, const uint8_t *id, size_t idlen, hsm_key **out, dh_err *e) DH_WUR;
void hsm_key_free(hsm_key *k);
enum hsm_keytype hsm_key_type(const hsm_key *k);
unsigned hsm_key_bits(const hsm_key *k); /* RSA modulus bits; 256 for Ed25519 */

/* Appends the public key: SubjectPublicKeyInfo DER for RSA, the raw 32-byte
 * key for Ed25519 (RFC 8463 §4) - exactly what goes into p=. */
int hsm_key_public(hsm *h, const hsm_key *k, dh_buf *out, dh_err *e) DH_WUR;

/* Signs a SHA-256 digest. RSA: CKM_RSA_PKCS over the DER DigestInfo. Ed25519:
 * CKM_EDDSA over the 32 digest bytes themselves (RFC 8463 §3). Appends the
 * signature to sig. Safe to call from many threads at once. */
int hsm_sign_digest(hsm *h, hsm_key *k, const uint8_t digest[32], dh_buf *sig, dh_err *e) DH_WUR;

/* Reads CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_ALWAYS_SENSITIVE,
 * CKA_NEVER_EXTRACTABLE, CKA_LOCAL of the private key: 1 or 0 each, -1 for
 * one the token does not report. */
int hsm_key_custody(hsm *h, const hsm_key *k, hsm_custody *out, dh_err *e) DH_WUR;

/* Deletes both halves of the key pair with this CKA_ID from the token. */
int hsm_key_destroy(hsm *h, const uint8_t *id, size_t idlen, dh_err *e) DH_WUR;

/* Appends a pkcs11: URI naming the private key for other programs, e.g.
 * OpenSSL with the libp11 engine: "pkcs11:token=<label>;id=%AB%01...;type=private",
 * percent-encoded per RFC 7512 (p11-kit writes uppercase hex, RFC 3986 §2.1). */
int hsm_key_uri(hsm *h, const uint8_t *id, size_t idlen, dh_buf *out, dh_err *e) DH_WUR;

/* What the hsm knows of its token, without asking it (hsm_probe asks). */
typedef struct hsm_health_info {
    int usable;               /* 1 unless the token is down (see Recovery above) */
    unsigned long ckr;        /* why it is down: a CKR_ value for hsm_ckr_name(); 0 if usable */
    long long since;          /* when it went down, seconds since the epoch; 0 if usable */
    unsigned attempts;        /* recovery attempts that failed since then */
    unsigned next_attempt_ms; /* until the next attempt is allowed; 0: the next operation */
    unsigned long recoveries; /* successful re-initialisations since hsm_open */
} hsm_health_info;

/* Fills *out; never blocks on the token (safe on an event loop thread). */
void hsm_health(hsm *h, hsm_health_info *out);

/* Asks the token whether it is there and we are logged in (C_GetTokenInfo,
 * C_GetSessionInfo, C_Login when logged out), recovering as any operation
 * does. No C_* call when an operation worked less than max_age_ms ago, or
 * while the backoff says wait (DH_ETOKEN then). For an idle caller that
 * wants a lost token noticed and brought back without traffic. */
int hsm_probe(hsm *h, unsigned max_age_ms, dh_err *e) DH_WUR;

/* "CKR_PIN_INCORRECT" etc.; "CKR_0x%08lx" (static buffer per thread) for
 * unknown values. */
const char *hsm_ckr_name(unsigned long rv);

#endif
