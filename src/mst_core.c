/* Version and error-code texts. */
#include "mst_reader.h"

#define MST_STR2(x) #x
#define MST_STR(x) MST_STR2(x)

unsigned mst_version_number(void)
{
    return MST_VERSION_NUMBER;
}

const char *mst_version_string(void)
{
    return MST_STR(MST_VERSION_MAJOR) "." MST_STR(MST_VERSION_MINOR) "." MST_STR(
        MST_VERSION_PATCH);
}

const char *mst_strerror(int code)
{
    switch (code) {
    case MST_OK: return "success";
    case MST_ERR_INVALID_ARGUMENT: return "invalid argument";
    case MST_ERR_NO_MEMORY: return "out of memory";
    case MST_ERR_STATE: return "call not allowed in this state";
    case MST_ERR_MPI: return "MPI call failed";
    case MST_ERR_EMPTY_NAME: return "empty tensor name";
    case MST_ERR_RESERVED_NAME: return "tensor named __metadata__";
    case MST_ERR_INVALID_UTF8: return "invalid UTF-8";
    case MST_ERR_DUPLICATE_NAME: return "duplicate tensor name";
    case MST_ERR_UNKNOWN_DTYPE: return "unknown dtype";
    case MST_ERR_NEGATIVE_DIM: return "negative dimension";
    case MST_ERR_SIZE_OVERFLOW: return "size overflow";
    case MST_ERR_PARTIAL_BYTES: return "sub-byte tensor is not a whole number of bytes";
    case MST_ERR_NULL_DATA: return "NULL data for a non-empty tensor";
    case MST_ERR_HEADER_TOO_LARGE: return "header too large";
    case MST_ERR_METADATA_CONFLICT: return "conflicting metadata values";
    case MST_ERR_SLICE_MISMATCH: return "slices or replicas disagree";
    case MST_ERR_SLICE_BOUNDS: return "slice outside the tensor";
    case MST_ERR_SLICE_OVERLAP: return "overlapping slices";
    case MST_ERR_SLICE_GAP: return "slices leave a gap";
    case MST_ERR_CALLBACK: return "fill callback failed";
    case MST_ERR_TARGET_DIR: return "target directory missing or not writable";
    case MST_ERR_IO: return "I/O error";
    case MST_ERR_FORMAT: return "invalid safetensors file";
    case MST_ERR_OFFSETS: return "invalid data offsets";
    case MST_ERR_NOT_FOUND: return "tensor not found";
    case MST_ERR_RANGE: return "read outside the tensor";
    case MST_ERR_CHECKSUM: return "checksum mismatch";
    default: return "unknown error code";
    }
}
