/* fuzz_upgrade.c: libFuzzer target for upg_decode (engine/upgrade_msg.c), which reads what
 * another process sent. The input is decoded from an exact-size heap copy (ASan sees any
 * read past it); a message that decodes encodes back to the very same bytes, its fields
 * within their bounds; another version is told apart only for a header with the magic. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "upgrade.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1), out[UPG_MSG_MAX];
    struct upg_msg m;
    int rc, n;

    CHECK(copy);
    memcpy(copy, data, size);
    rc = upg_decode(copy, size, &m);
    free(copy);
    CHECK(rc == 0 || rc == -EBADMSG || rc == -EPROTONOSUPPORT);
    if (rc == -EPROTONOSUPPORT)
        CHECK(size >= UPG_HDR_LEN && !memcmp(data, "RPUG", 4) && (data[4] != 1 || data[5]));
    if (rc)
        return 0;
    CHECK(size <= UPG_MSG_MAX);
    if (m.type == UPG_LISTENERS) {
        CHECK(m.n <= UPG_BATCH && m.total <= UPG_MAX_LISTENERS && m.first + m.n <= m.total);
        for (uint16_t i = 0; i < m.n; i++)
            CHECK(m.e[i].kind <= RP_LISTENER_ADMIN && strlen(m.e[i].addr) <= UPG_ADDR_MAX);
    }
    n = upg_encode(&m, out, sizeof(out));
    CHECK(n == (int)size && !memcmp(out, data, size));
    return 0;
}
