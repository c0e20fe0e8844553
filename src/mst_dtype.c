/* The dtype table: names and bits, indexed by the reference enum order. */
#include <string.h>

#include "mst_reader.h"

static const struct {
    const char *name;
    int bits;
} dtype_table[MST_DTYPE_COUNT] = {
    [MST_BOOL] = {"BOOL", 8},
    [MST_F4] = {"F4", 4},
    [MST_F6_E2M3] = {"F6_E2M3", 6},
    [MST_F6_E3M2] = {"F6_E3M2", 6},
    [MST_U8] = {"U8", 8},
    [MST_I8] = {"I8", 8},
    [MST_F8_E5M2] = {"F8_E5M2", 8},
    [MST_F8_E4M3] = {"F8_E4M3", 8},
    [MST_F8_E8M0] = {"F8_E8M0", 8},
    [MST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [MST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [MST_I16] = {"I16", 16},
    [MST_U16] = {"U16", 16},
    [MST_F16] = {"F16", 16},
    [MST_BF16] = {"BF16", 16},
    [MST_I32] = {"I32", 32},
    [MST_U32] = {"U32", 32},
    [MST_F32] = {"F32", 32},
    [MST_C64] = {"C64", 64},
    [MST_F64] = {"F64", 64},
    [MST_I64] = {"I64", 64},
    [MST_U64] = {"U64", 64},
};

const char *mst_dtype_name(mst_dtype dtype)
{
    if ((unsigned)dtype >= MST_DTYPE_COUNT)
        return NULL;
    return dtype_table[dtype].name;
}

int mst_dtype_bits(mst_dtype dtype)
{
    if ((unsigned)dtype >= MST_DTYPE_COUNT)
        return 0;
    return dtype_table[dtype].bits;
}

int mst_dtype_from_name(const char *name, mst_dtype *out)
{
    if (!name || !out)
        return MST_ERR_INVALID_ARGUMENT;
    for (int i = 0; i < MST_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (mst_dtype)i;
            return MST_OK;
        }
    }
    return MST_ERR_UNKNOWN_DTYPE;
}
