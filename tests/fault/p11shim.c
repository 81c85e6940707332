/*
 * p11shim.c - a test-only PKCS#11 module (never installed) that forwards
 * every call to a real module and, on request, makes the real module fail
 * under the process that loaded it.
 *
 * SoftHSM keeps login and session state per process, so another process
 * cannot log ours out or close our sessions; this shim, loaded in our
 * process in place of the real module, can. Environment:
 *
 *   DKIMHSM_SHIM_TARGET  path of the real module (libsofthsm2.so)
 *   DKIMHSM_SHIM_CTL     a directory; before each call the shim looks for
 *     closeall    consumed: C_CloseAllSessions on every slot with a token
 *     logout      consumed: C_Logout (through a session of its own)
 *     removed     while it exists, every call below answers
 *                 CKR_DEVICE_REMOVED (C_Initialize, C_Finalize, C_GetInfo
 *                 and C_GetFunctionList still reach the real module)
 *     notpresent  the same with CKR_TOKEN_NOT_PRESENT
 *   A consumed fault appends a line to NAME.done in the same directory, so a
 *   test can wait until it has happened. Only the thread whose unlink()
 *   succeeds performs it.
 *
 * A consumed fault runs between calls, never during one: SoftHSM frees a
 * session that C_CloseAllSessions closes even while another thread is inside
 * C_Sign on it (PKCS#11 leaves concurrent use of one session to the
 * application), so every wrapped call holds a read lock and a fault the
 * write lock. A real token that resets does the same from the inside.
 *
 * Calls dkimhsm never makes are forwarded untouched.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST *real; /* the target's own list */
static CK_FUNCTION_LIST shim;  /* a copy with our wrappers in */
static const char *ctl;        /* DKIMHSM_SHIM_CTL, NULL: no faults */
static CK_RV load_rv = CKR_OK; /* why loading the target failed */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_rwlock_t calls; /* read: a call in the real module; write: a fault */

static int ctl_path(const char *name, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", ctl, name);
    return n > 0 && (size_t)n < cap;
}

static int ctl_exists(const char *name)
{
    char p[PATH_MAX];
    return ctl_path(name, p, sizeof p) && access(p, F_OK) == 0;
}

/* 1 for the one caller that removed the file. */
static int ctl_consume(const char *name)
{
    char p[PATH_MAX];
    return ctl_path(name, p, sizeof p) && unlink(p) == 0;
}

static void ctl_done(const char *name, CK_RV rv)
{
    char p[PATH_MAX], n[64], line[64];
    snprintf(n, sizeof n, "%s.done", name);
    if (!ctl_path(n, p, sizeof p))
        return;
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    int len = snprintf(line, sizeof line, "rv=0x%lx\n", (unsigned long)rv);
    if (write(fd, line, (size_t)len) != len)
        fprintf(stderr, "p11shim: cannot write %s\n", p);
    close(fd);
}

/* Slots with a token, from the real module. */
static CK_ULONG token_slots(CK_SLOT_ID *slots, CK_ULONG max)
{
    CK_ULONG n = max;
    return real->C_GetSlotList(CK_TRUE, slots, &n) == CKR_OK ? n : 0;
}

static CK_RV close_all(void)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = token_slots(slots, 16);
    CK_RV rv = n ? CKR_OK : CKR_SLOT_ID_INVALID;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_RV r = real->C_CloseAllSessions(slots[i]);
        if (r != CKR_OK)
            rv = r;
    }
    return rv;
}

/* Login is per application and token: a logout through any session of this
 * process logs out every session. The spare uninitialized slot says
 * CKR_USER_NOT_LOGGED_IN; only a token we were logged in to counts. */
static CK_RV logout_all(void)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = token_slots(slots, 16);
    CK_RV rv = CKR_USER_NOT_LOGGED_IN;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_SESSION_HANDLE s;
        if (real->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
            continue;
        if (real->C_Logout(s) == CKR_OK)
            rv = CKR_OK;
        real->C_CloseSession(s);
    }
    return rv;
}

/* Before every wrapped call: the fault asked for, if any. */
static CK_RV fault(void)
{
    if (ctl == NULL)
        return CKR_OK;
    if (ctl_exists("removed"))
        return CKR_DEVICE_REMOVED;
    if (ctl_exists("notpresent"))
        return CKR_TOKEN_NOT_PRESENT;
    if (ctl_consume("closeall")) {
        pthread_rwlock_wrlock(&calls);
        CK_RV rv = close_all();
        pthread_rwlock_unlock(&calls);
        ctl_done("closeall", rv);
    }
    if (ctl_consume("logout")) {
        pthread_rwlock_wrlock(&calls);
        CK_RV rv = logout_all();
        pthread_rwlock_unlock(&calls);
        ctl_done("logout", rv);
    }
    return CKR_OK;
}

/* shim_C_x: the fault, else the real C_x. */
#define WRAP(name, params, args)                                                                   \
    static CK_RV shim_##name params                                                                \
    {                                                                                              \
        CK_RV rv = fault();                                                                        \
        if (rv != CKR_OK)                                                                          \
            return rv;                                                                             \
        pthread_rwlock_rdlock(&calls);                                                             \
        rv = real->name args;                                                                      \
        pthread_rwlock_unlock(&calls);                                                             \
        return rv;                                                                                 \
    }

WRAP(C_GetSlotList, (CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n), (present, list, n))
WRAP(C_GetSlotInfo, (CK_SLOT_ID slot, CK_SLOT_INFO_PTR info), (slot, info))
WRAP(C_GetTokenInfo, (CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info), (slot, info))
WRAP(C_GetMechanismList, (CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n),
     (slot, list, n))
WRAP(C_GetMechanismInfo, (CK_SLOT_ID slot, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR info),
     (slot, t, info))
WRAP(C_OpenSession,
     (CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR s),
     (slot, flags, app, notify, s))
WRAP(C_CloseSession, (CK_SESSION_HANDLE s), (s))
WRAP(C_CloseAllSessions, (CK_SLOT_ID slot), (slot))
WRAP(C_GetSessionInfo, (CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info), (s, info))
WRAP(C_Login, (CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG len),
     (s, u, pin, len))
WRAP(C_Logout, (CK_SESSION_HANDLE s), (s))
WRAP(C_CreateObject, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o),
     (s, t, n, o))
WRAP(C_DestroyObject, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o), (s, o))
WRAP(C_GetAttributeValue, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n),
     (s, o, t, n))
WRAP(C_SetAttributeValue, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n),
     (s, o, t, n))
WRAP(C_FindObjectsInit, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n), (s, t, n))
WRAP(C_FindObjects, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR n),
     (s, o, max, n))
WRAP(C_FindObjectsFinal, (CK_SESSION_HANDLE s), (s))
WRAP(C_SignInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (s, m, k))
WRAP(C_Sign,
     (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR sig, CK_ULONG_PTR len),
     (s, in, inlen, sig, len))
WRAP(C_GenerateKeyPair,
     (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub, CK_ULONG npub,
      CK_ATTRIBUTE_PTR priv, CK_ULONG npriv, CK_OBJECT_HANDLE_PTR hpub, CK_OBJECT_HANDLE_PTR hpriv),
     (s, m, pub, npub, priv, npriv, hpub, hpriv))
WRAP(C_GenerateRandom, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG len), (s, out, len))

static void load_target(void)
{
    /* Writer first: under steady load the readers would never all be out. */
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&calls, &a);
    pthread_rwlockattr_destroy(&a);
    const char *path = getenv("DKIMHSM_SHIM_TARGET");
    ctl = getenv("DKIMHSM_SHIM_CTL");
    void *lib = path != NULL ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
    CK_C_GetFunctionList get =
        lib != NULL ? (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList") : NULL;
    if (get == NULL || get(&real) != CKR_OK || real == NULL) {
        fprintf(stderr, "p11shim: cannot load DKIMHSM_SHIM_TARGET=%s: %s\n",
                path != NULL ? path : "(unset)", lib == NULL && path != NULL ? dlerror() : "");
        load_rv = CKR_GENERAL_ERROR;
        return;
    }
    shim = *real;
    shim.C_GetFunctionList = C_GetFunctionList;
#define SET(name) shim.name = shim_##name
    SET(C_GetSlotList);
    SET(C_GetSlotInfo);
    SET(C_GetTokenInfo);
    SET(C_GetMechanismList);
    SET(C_GetMechanismInfo);
    SET(C_OpenSession);
    SET(C_CloseSession);
    SET(C_CloseAllSessions);
    SET(C_GetSessionInfo);
    SET(C_Login);
    SET(C_Logout);
    SET(C_CreateObject);
    SET(C_DestroyObject);
    SET(C_GetAttributeValue);
    SET(C_SetAttributeValue);
    SET(C_FindObjectsInit);
    SET(C_FindObjects);
    SET(C_FindObjectsFinal);
    SET(C_SignInit);
    SET(C_Sign);
    SET(C_GenerateKeyPair);
    SET(C_GenerateRandom);
#undef SET
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_once(&once, load_target);
    if (load_rv != CKR_OK)
        return load_rv;
    *list = &shim;
    return CKR_OK;
}
