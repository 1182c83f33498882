/* Prints the header's layout and constants, for the test that compares them
 * with the Rust definitions. */
#include <stddef.h>
#include <stdio.h>
#include "damocles_objstore.h"

#define FIELD(f) printf("%s %zu\n", #f, offsetof(damocles_objstore_table, f))

int main(void) {
    printf("abi_version_const %d\n", DAMOCLES_OBJSTORE_ABI_VERSION);
    printf("entry %s\n", DAMOCLES_OBJSTORE_ENTRY);
    printf("sizeof_table %zu\n", sizeof(damocles_objstore_table));
    printf("sizeof_buf %zu\n", sizeof(damocles_objstore_buf));
    printf("sizeof_info %zu\n", sizeof(damocles_objstore_info));
    FIELD(abi_version);
    FIELD(struct_size);
    FIELD(kind);
    FIELD(open);
    FIELD(close);
    FIELD(info);
    FIELD(stat);
    FIELD(get);
    FIELD(read);
    FIELD(reader_close);
    FIELD(put);
    FIELD(del);
    FIELD(list);
    FIELD(full_path);
    FIELD(free_buf);
    printf("code_ok %d\n", DAMOCLES_OBJSTORE_OK);
    printf("code_not_found %d\n", DAMOCLES_OBJSTORE_NOT_FOUND);
    printf("code_invalid_path %d\n", DAMOCLES_OBJSTORE_INVALID_PATH);
    printf("code_read_only %d\n", DAMOCLES_OBJSTORE_READ_ONLY);
    printf("code_not_regular_file %d\n", DAMOCLES_OBJSTORE_NOT_REGULAR_FILE);
    printf("code_invalid_range %d\n", DAMOCLES_OBJSTORE_INVALID_RANGE);
    printf("code_io %d\n", DAMOCLES_OBJSTORE_IO);
    printf("code_config %d\n", DAMOCLES_OBJSTORE_CONFIG);
    printf("code_panic %d\n", DAMOCLES_OBJSTORE_PANIC);
    printf("code_other %d\n", DAMOCLES_OBJSTORE_OTHER);
    printf("to_end %llu\n", (unsigned long long)DAMOCLES_OBJSTORE_TO_END);
    return 0;
}
