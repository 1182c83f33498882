/*
 * A minimal store plugin in C: a read-only store holding one object,
 * "hello.txt". Build: cc -shared -fPIC -I crates/objstore/include \
 *   -o libhello_store.so examples/objstore-c-plugin/hello_store.c
 */
#include <stdlib.h>
#include <string.h>

#include "damocles_objstore.h"

#ifndef PLUGIN_ABI_VERSION
#define PLUGIN_ABI_VERSION DAMOCLES_OBJSTORE_ABI_VERSION
#endif

static const char NAME[] = "hello.txt";
static const char TEXT[] = "hello from a C plugin\n";
#define TEXT_LEN (sizeof(TEXT) - 1)

struct reader {
    size_t at, end;
};

/* A plugin-owned copy of `s`, for outputs and error messages. */
static damocles_objstore_buf buf_of(const char *s) {
    damocles_objstore_buf b = {0, 0, 0};
    size_t n = strlen(s);
    b.ptr = malloc(n ? n : 1);
    if (b.ptr) {
        memcpy(b.ptr, s, n);
        b.len = b.cap = n;
    }
    return b;
}

static int32_t fail(damocles_objstore_buf *err, int32_t code, const char *msg) {
    if (err) *err = buf_of(msg);
    return code;
}

static int is_hello(const uint8_t *path, size_t len) {
    return len == strlen(NAME) && memcmp(path, NAME, len) == 0;
}

static int32_t p_open(const uint8_t *config, size_t config_len, void **store,
                      damocles_objstore_buf *err) {
    (void)config; (void)config_len; (void)err;
    *store = (void *)NAME; /* no state to keep */
    return DAMOCLES_OBJSTORE_OK;
}

static void p_close(void *store) { (void)store; }

static int32_t p_info(void *store, damocles_objstore_info *out, damocles_objstore_buf *err) {
    (void)store; (void)err;
    out->total = TEXT_LEN;
    out->free = 0;
    out->used = TEXT_LEN;
    return DAMOCLES_OBJSTORE_OK;
}

static int32_t p_stat(void *store, const uint8_t *path, size_t path_len, uint64_t *size,
                      damocles_objstore_buf *err) {
    (void)store;
    if (!is_hello(path, path_len)) return fail(err, DAMOCLES_OBJSTORE_NOT_FOUND, "no such object");
    *size = TEXT_LEN;
    return DAMOCLES_OBJSTORE_OK;
}

static int32_t p_get(void *store, const uint8_t *path, size_t path_len, uint64_t offset,
                     uint64_t len, void **reader, damocles_objstore_buf *err) {
    (void)store;
    if (!is_hello(path, path_len)) return fail(err, DAMOCLES_OBJSTORE_NOT_FOUND, "no such object");
    if (len == DAMOCLES_OBJSTORE_TO_END) len = offset <= TEXT_LEN ? TEXT_LEN - offset : 0;
    if (offset > TEXT_LEN || len > TEXT_LEN - offset)
        return fail(err, DAMOCLES_OBJSTORE_INVALID_RANGE, "range past the end of hello.txt");
    struct reader *r = malloc(sizeof *r);
    if (!r) return fail(err, DAMOCLES_OBJSTORE_IO, "out of memory");
    r->at = (size_t)offset;
    r->end = (size_t)(offset + len);
    *reader = r;
    return DAMOCLES_OBJSTORE_OK;
}

static int32_t p_read(void *reader, uint8_t *buf, size_t cap, size_t *n,
                      damocles_objstore_buf *err) {
    (void)err;
    struct reader *r = reader;
    size_t k = r->end - r->at;
    if (k > cap) k = cap;
    memcpy(buf, TEXT + r->at, k);
    r->at += k;
    *n = k;
    return DAMOCLES_OBJSTORE_OK;
}

static void p_reader_close(void *reader) { free(reader); }

static int32_t p_put(void *store, const uint8_t *path, size_t path_len,
                     damocles_objstore_read_fn src, void *src_ctx, uint64_t *written,
                     damocles_objstore_buf *err) {
    (void)store; (void)path; (void)path_len; (void)src; (void)src_ctx; (void)written;
    return fail(err, DAMOCLES_OBJSTORE_READ_ONLY, "the hello store is read-only");
}

static int32_t p_del(void *store, const uint8_t *path, size_t path_len,
                     damocles_objstore_buf *err) {
    (void)store; (void)path; (void)path_len;
    return fail(err, DAMOCLES_OBJSTORE_READ_ONLY, "the hello store is read-only");
}

static int32_t p_list(void *store, const uint8_t *prefix, size_t prefix_len,
                      damocles_objstore_buf *out, damocles_objstore_buf *err) {
    (void)store; (void)err;
    int all = prefix_len == 0 || (prefix_len <= strlen(NAME) && memcmp(prefix, NAME, prefix_len) == 0);
    *out = buf_of(all ? NAME : "");
    return DAMOCLES_OBJSTORE_OK;
}

static int32_t p_full_path(void *store, const uint8_t *path, size_t path_len,
                           damocles_objstore_buf *out, damocles_objstore_buf *err) {
    (void)store; (void)err;
    char s[256] = "hello://";
    size_t n = path_len < sizeof s - 9 ? path_len : sizeof s - 9;
    memcpy(s + 8, path, n);
    s[8 + n] = 0;
    *out = buf_of(s);
    return DAMOCLES_OBJSTORE_OK;
}

static void p_free_buf(damocles_objstore_buf buf) { free(buf.ptr); }

static const damocles_objstore_table TABLE = {
    PLUGIN_ABI_VERSION,
    sizeof(damocles_objstore_table),
    "hello",
    p_open, p_close, p_info, p_stat, p_get, p_read, p_reader_close,
    p_put, p_del, p_list, p_full_path, p_free_buf,
};

const damocles_objstore_table *damocles_objstore_plugin(void) { return &TABLE; }
