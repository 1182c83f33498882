/*
 * TEST DOUBLE: a store plugin that breaks the ABI on purpose, one way per
 * build, chosen with -D:
 *
 *   KIND="..."        the kind it declares (default "misbehaving")
 *   NULL_FNS          every function pointer NULL (only the header and kind)
 *   NULL_FREE_BUF     only free_buf NULL
 *   CRASH_IN_ENTRY    the entry point writes to NULL (SIGSEGV)
 *   ERR_PTR, ERR_LEN  open fails with this err buffer (e.g. 0x10, 1 << 30)
 *
 * Without any, it is a well-formed empty store whose open succeeds.
 */
#include <stdint.h>
#include <stdlib.h>

#include "damocles_objstore.h"

#ifndef KIND
#define KIND "misbehaving"
#endif

/* Some builds leave functions out of the table. */
#define FN static __attribute__((unused))

FN int32_t p_open(const uint8_t *config, size_t config_len, void **store,
                      damocles_objstore_buf *err) {
    (void)config; (void)config_len; (void)store;
#ifdef ERR_PTR
    err->ptr = (uint8_t *)(uintptr_t)(ERR_PTR);
    err->len = (size_t)(ERR_LEN);
    err->cap = 0;
    return DAMOCLES_OBJSTORE_CONFIG;
#else
    (void)err;
    *store = (void *)KIND;
    return DAMOCLES_OBJSTORE_OK;
#endif
}

FN void p_close(void *store) { (void)store; }

FN int32_t p_info(void *store, damocles_objstore_info *out, damocles_objstore_buf *err) {
    (void)store; (void)err;
    out->total = out->free = out->used = 0;
    return DAMOCLES_OBJSTORE_OK;
}

FN int32_t p_stat(void *store, const uint8_t *path, size_t path_len, uint64_t *size,
                      damocles_objstore_buf *err) {
    (void)store; (void)path; (void)path_len; (void)size; (void)err;
    return DAMOCLES_OBJSTORE_NOT_FOUND;
}

FN int32_t p_get(void *store, const uint8_t *path, size_t path_len, uint64_t offset,
                     uint64_t len, void **reader, damocles_objstore_buf *err) {
    (void)store; (void)path; (void)path_len; (void)offset; (void)len; (void)reader; (void)err;
    return DAMOCLES_OBJSTORE_NOT_FOUND;
}

FN int32_t p_read(void *reader, uint8_t *buf, size_t cap, size_t *n,
                      damocles_objstore_buf *err) {
    (void)reader; (void)buf; (void)cap; (void)err;
    *n = 0;
    return DAMOCLES_OBJSTORE_OK;
}

FN void p_reader_close(void *reader) { (void)reader; }

FN int32_t p_put(void *store, const uint8_t *path, size_t path_len,
                     damocles_objstore_read_fn src, void *src_ctx, uint64_t *written,
                     damocles_objstore_buf *err) {
    (void)store; (void)path; (void)path_len; (void)src; (void)src_ctx; (void)written; (void)err;
    return DAMOCLES_OBJSTORE_READ_ONLY;
}

FN int32_t p_del(void *store, const uint8_t *path, size_t path_len,
                     damocles_objstore_buf *err) {
    (void)store; (void)path; (void)path_len; (void)err;
    return DAMOCLES_OBJSTORE_NOT_FOUND;
}

FN int32_t p_list(void *store, const uint8_t *prefix, size_t prefix_len,
                      damocles_objstore_buf *out, damocles_objstore_buf *err) {
    (void)store; (void)prefix; (void)prefix_len; (void)out; (void)err;
    return DAMOCLES_OBJSTORE_OK;
}

FN int32_t p_full_path(void *store, const uint8_t *path, size_t path_len,
                           damocles_objstore_buf *out, damocles_objstore_buf *err) {
    (void)store; (void)path; (void)path_len; (void)out; (void)err;
    return DAMOCLES_OBJSTORE_OTHER;
}

FN void p_free_buf(damocles_objstore_buf buf) { free(buf.ptr); }

static const damocles_objstore_table TABLE = {
    DAMOCLES_OBJSTORE_ABI_VERSION,
    sizeof(damocles_objstore_table),
    KIND,
#ifndef NULL_FNS
    p_open,
    p_close,
    p_info,
    p_stat,
    p_get,
    p_read,
    p_reader_close,
    p_put,
    p_del,
    p_list,
    p_full_path,
#ifndef NULL_FREE_BUF
    p_free_buf,
#endif
#endif
};

#ifdef CRASH_IN_ENTRY
/* Volatile, so the compiler cannot see the store below is to NULL. */
static int *volatile NOWHERE = NULL;
#endif

const damocles_objstore_table *damocles_objstore_plugin(void) {
#ifdef CRASH_IN_ENTRY
    /* A real fault, not raise(SIGSEGV): a host's own SIGSEGV handler (Rust
     * installs one to spot stack overflows) returns from a raised signal,
     * but a faulting store runs again with the default action and kills. */
    *NOWHERE = 1;
#endif
    return &TABLE;
}
