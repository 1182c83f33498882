/*
 * damocles store plugins: the C ABI, version 1.
 *
 * A plugin is a shared library exporting
 *
 *     const damocles_objstore_table *damocles_objstore_plugin(void);
 *
 * which returns a pointer to a static table. The host checks `abi_version`
 * and `struct_size` (the first two fields, in every version) before using
 * anything else, and refuses the library otherwise. It also refuses a table
 * with any function pointer NULL, and a `kind` that is not a plain
 * identifier ([a-z0-9_-], 1 to 64 bytes) or that is a builtin kind ("fs").
 *
 * Memory: every damocles_objstore_buf a plugin fills belongs to the plugin;
 * the host hands it back through `free_buf`. Everything the host passes in
 * (config, paths, buffers) belongs to the host and is valid during the call
 * only. Stores and readers are opaque handles released through `close` and
 * `reader_close`.
 *
 * Strings are UTF-8 with an explicit length, not NUL-terminated. Paths are
 * relative to the store, '/'-separated, with no empty, "." or ".." segment.
 *
 * Threads: every function may be called from many threads at once on one
 * store; a reader is used by one thread at a time.
 *
 * Errors: functions return DAMOCLES_OBJSTORE_OK or an error code, and may
 * fill `err` with a message of at most 64 KiB; the host reads neither a
 * longer one nor one with a NULL `ptr` and a nonzero `len`.
 */
#ifndef DAMOCLES_OBJSTORE_H
#define DAMOCLES_OBJSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DAMOCLES_OBJSTORE_ABI_VERSION 1
#define DAMOCLES_OBJSTORE_ENTRY "damocles_objstore_plugin"

#define DAMOCLES_OBJSTORE_OK 0
#define DAMOCLES_OBJSTORE_NOT_FOUND 1
#define DAMOCLES_OBJSTORE_INVALID_PATH 2
#define DAMOCLES_OBJSTORE_READ_ONLY 3
#define DAMOCLES_OBJSTORE_NOT_REGULAR_FILE 4
#define DAMOCLES_OBJSTORE_INVALID_RANGE 5
#define DAMOCLES_OBJSTORE_IO 6
#define DAMOCLES_OBJSTORE_CONFIG 7
#define DAMOCLES_OBJSTORE_PANIC 8
#define DAMOCLES_OBJSTORE_OTHER 9

/* `len` for get: read to the end of the object. */
#define DAMOCLES_OBJSTORE_TO_END UINT64_MAX

/* Bytes owned by the plugin; `cap` is for the plugin's allocator. */
typedef struct damocles_objstore_buf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} damocles_objstore_buf;

typedef struct damocles_objstore_info {
    uint64_t total;
    uint64_t free;
    uint64_t used;
} damocles_objstore_info;

/* The host's data source for put: fill up to `cap` bytes of `buf`, set `*n`
 * (0 at the end), return DAMOCLES_OBJSTORE_OK or an error code. */
typedef int32_t (*damocles_objstore_read_fn)(void *ctx, uint8_t *buf, size_t cap, size_t *n);

typedef struct damocles_objstore_table {
    uint32_t abi_version;   /* DAMOCLES_OBJSTORE_ABI_VERSION */
    uint32_t struct_size;   /* sizeof(damocles_objstore_table) */
    const char *kind;       /* static, NUL-terminated: "s3", ... */

    /* config: JSON {"Name","Path","Meta":{...},"Strict","ReadOnly","Weight"} */
    int32_t (*open)(const uint8_t *config, size_t config_len, void **store,
                    damocles_objstore_buf *err);
    void (*close)(void *store);
    int32_t (*info)(void *store, damocles_objstore_info *out, damocles_objstore_buf *err);
    int32_t (*stat)(void *store, const uint8_t *path, size_t path_len, uint64_t *size,
                    damocles_objstore_buf *err);
    /* A reader over `len` bytes (DAMOCLES_OBJSTORE_TO_END: to the end) from
     * `offset`; a range past the end is DAMOCLES_OBJSTORE_INVALID_RANGE. */
    int32_t (*get)(void *store, const uint8_t *path, size_t path_len, uint64_t offset,
                   uint64_t len, void **reader, damocles_objstore_buf *err);
    /* Up to `cap` bytes into `buf`; `*n` = 0 at the end. */
    int32_t (*read)(void *reader, uint8_t *buf, size_t cap, size_t *n,
                    damocles_objstore_buf *err);
    void (*reader_close)(void *reader);
    /* The object appears whole or not at all. */
    int32_t (*put)(void *store, const uint8_t *path, size_t path_len,
                   damocles_objstore_read_fn src, void *src_ctx, uint64_t *written,
                   damocles_objstore_buf *err);
    int32_t (*del)(void *store, const uint8_t *path, size_t path_len,
                   damocles_objstore_buf *err);
    /* Object paths under `prefix` (all when prefix_len is 0), one per line. */
    int32_t (*list)(void *store, const uint8_t *prefix, size_t prefix_len,
                    damocles_objstore_buf *out, damocles_objstore_buf *err);
    int32_t (*full_path)(void *store, const uint8_t *path, size_t path_len,
                         damocles_objstore_buf *out, damocles_objstore_buf *err);
    void (*free_buf)(damocles_objstore_buf buf);
} damocles_objstore_table;

const damocles_objstore_table *damocles_objstore_plugin(void);

#ifdef __cplusplus
}
#endif

#endif /* DAMOCLES_OBJSTORE_H */
