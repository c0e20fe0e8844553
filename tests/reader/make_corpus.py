#!/usr/bin/env python3
"""Writes the reader corpus: malformed safetensors files, each breaking one
rule, and valid edge cases, plus manifest.tsv with the expected verdict of
each.

    make_corpus.py OUTDIR

manifest.tsv columns (tab-separated):
    file      name of the file in OUTDIR
    expect    "ok" or the mst error code name (FORMAT, OFFSETS, ...)
    message   a substring the reader's message must contain ("" for ok)
    reference what safetensors 0.8.0 (Rust, serde_json) does with the file:
              "ok" or "reject" (see check_reference.py); it differs from
              `expect` only where mst deliberately rejects more.
"""
import os
import struct
import sys

CASES = []


def image(header, data=b"", n=None):
    """8-byte length + header bytes + data buffer."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def pad(text):
    """Header text padded with spaces to a multiple of 8, as writers do."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return text + b" " * ((8 - len(text) % 8) % 8)


def ent(dtype, shape, begin, end):
    return '{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}' % (
        dtype, ",".join(str(d) for d in shape), begin, end)


def bad(name, code, message, content, reference="reject"):
    CASES.append((name, code, message, content, reference))


def good(name, content):
    CASES.append((name, "ok", "", content, "ok"))


def one(entry, data_len):
    """A file with one tensor "a" described by the raw JSON `entry`."""
    return image(pad('{"a":%s}' % entry), b"\0" * data_len)


A4 = ent("F32", [1], 0, 4)  # a valid 4-byte entry

# --- the 8-byte length --------------------------------------------------------
bad("len_empty_file", "FORMAT", "header too small", b"")
bad("len_seven_bytes", "FORMAT", "header too small: the file is 7 bytes", b"\x02\0\0\0\0\0\0")
bad("len_too_large", "HEADER_TOO_LARGE", "header too large",
    image(b"{}", n=100_000_001))
bad("len_u64_max", "HEADER_TOO_LARGE", "is 18446744073709551615",
    image(b"{}", n=2**64 - 1))
bad("len_past_eof", "FORMAT", "invalid header length", image(b"{}      ", n=9))
bad("len_zero", "FORMAT", "at file offset 8: the header must be a JSON object", image(b""))

# --- UTF-8 ----------------------------------------------------------------------
bad("utf8_invalid_byte", "INVALID_UTF8", "header not UTF-8: invalid byte at file offset 10",
    image(pad(b'{"\xff":' + A4.encode() + b"}"), b"\0" * 4))
bad("utf8_overlong", "INVALID_UTF8", "header not UTF-8",
    image(pad(b'{"\xc0\xaf":' + A4.encode() + b"}"), b"\0" * 4))
bad("utf8_surrogate", "INVALID_UTF8", "header not UTF-8",
    image(pad(b'{"\xed\xa0\x80":' + A4.encode() + b"}"), b"\0" * 4))
bad("utf8_truncated", "INVALID_UTF8", "header not UTF-8",
    image(pad(b'{"__metadata__":{"k":"\xe2\x82"}}')))
bad("utf8_above_max", "INVALID_UTF8", "header not UTF-8",
    image(pad(b'{"__metadata__":{"k":"\xf4\x90\x80\x80"}}')))

# --- JSON syntax ----------------------------------------------------------------
bad("json_truncated", "FORMAT", "invalid header", image(b'{"a":'))
bad("json_not_object", "FORMAT", "must be a JSON object", image(pad("[]")))
bad("json_nul_padding", "FORMAT", "trailing characters", image(b"{}\0\0\0\0\0\0"))
bad("json_trailing_garbage", "FORMAT", "trailing characters", image(b"{}x     "))
bad("json_two_objects", "FORMAT", "trailing characters", image(b"{}{}    "))
bad("json_trailing_comma", "FORMAT", "invalid header", one(A4[:-1] + ",}", 4))
bad("json_trailing_comma_top", "FORMAT", "invalid header",
    image(pad('{"a":%s,}' % A4), b"\0" * 4))
bad("json_single_quotes", "FORMAT", "invalid header", image(pad("{'a':1}")))
bad("json_comment", "FORMAT", "invalid header", image(pad("{/* c */}")))
bad("json_bom", "FORMAT", "must be a JSON object", image(pad(b"\xef\xbb\xbf{}")))
bad("json_bad_escape", "FORMAT", "invalid escape",
    image(pad('{"a\\x":%s}' % A4), b"\0" * 4))
bad("json_lone_lead_surrogate", "FORMAT", "lone leading surrogate",
    image(pad('{"a\\ud800":%s}' % A4), b"\0" * 4))
bad("json_lone_trail_surrogate", "FORMAT", "lone trailing surrogate",
    image(pad('{"a\\udc00":%s}' % A4), b"\0" * 4))
bad("json_control_in_string", "FORMAT", "control character",
    image(pad('{"a\tb":%s}' % A4), b"\0" * 4))
bad("json_leading_zero", "FORMAT", "leading zero", one(ent("F32", [1], 0, 4).replace("[0,", "[00,"), 4))
bad("json_too_deep", "FORMAT", "recursion limit exceeded",
    one(A4[:-1] + ',"x":' + "[" * 126 + "]" * 126 + "}", 4))
bad("json_missing_colon", "FORMAT", "expected ':'", image(pad('{"a" %s}' % A4), b"\0" * 4))

# --- types of the fields --------------------------------------------------------
bad("type_entry_string", "FORMAT", 'tensor "a": expected an object', one('"F32"', 0))
bad("type_entry_number", "FORMAT", 'tensor "a": expected an object', one("1", 0))
bad("type_dtype_number", "FORMAT", '"dtype": expected a string', one(A4.replace('"F32"', "17"), 4))
bad("type_shape_string", "FORMAT", '"shape": expected an array', one(A4.replace("[1]", '"1"'), 4))
bad("type_shape_negative", "FORMAT", "shape: expected a non-negative integer without sign",
    one(ent("F32", [-1], 0, 4), 4))
bad("type_shape_float", "FORMAT", "without sign, fraction or exponent", one(A4.replace("[1]", "[1.0]"), 4))
bad("type_shape_exponent", "FORMAT", "without sign, fraction or exponent", one(A4.replace("[1]", "[1e0]"), 4))
bad("type_shape_null", "FORMAT", "shape: expected a non-negative integer", one(A4.replace("[1]", "[null]"), 4))
bad("type_offsets_three", "FORMAT", "exactly two integers", one(A4.replace("[0,4]", "[0,4,4]"), 4))
bad("type_offsets_one", "FORMAT", "expected two integers", one(A4.replace("[0,4]", "[0]"), 4))
bad("type_offsets_object", "FORMAT", "array of two integers", one(A4.replace("[0,4]", '{"a":0}'), 4))
bad("type_offsets_negative", "FORMAT", "data_offsets: expected a non-negative integer",
    one(A4.replace("[0,4]", "[-0,4]"), 4))
bad("type_offset_exponent", "FORMAT", "data_offsets: expected a non-negative integer without",
    one(A4.replace("[0,4]", "[0,4e0]"), 4))
bad("type_offset_u64_overflow", "FORMAT", "data_offsets: integer above 2^53",
    one(A4.replace("[0,4]", "[0,18446744073709551616]"), 4))
bad("type_offset_above_2p53", "FORMAT", "data_offsets: integer above 2^53",
    one(ent("U8", [1], 0, 9007199254740993), 1))
bad("type_shape_above_2p53", "FORMAT", "shape: integer above 2^53",
    one(ent("U8", [0, 9007199254740993], 0, 0), 0), reference="ok")
bad("type_missing_dtype", "FORMAT", 'tensor "a": missing field "dtype"',
    one('{"shape":[1],"data_offsets":[0,4]}', 4))
bad("type_missing_shape", "FORMAT", 'missing field "shape"',
    one('{"dtype":"F32","data_offsets":[0,4]}', 4))
bad("type_missing_offsets", "FORMAT", 'missing field "data_offsets"',
    one('{"dtype":"F32","shape":[1]}', 4))
bad("type_duplicate_field", "FORMAT", 'duplicate field "dtype"',
    one('{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}', 4))
bad("type_array_entry_short", "FORMAT", "tensor array: expected 3 elements",
    one('["F32",[1]]', 4))
bad("type_array_entry_long", "FORMAT", "tensor array: expected exactly 3 elements",
    one('["F32",[1],[0,4],1]', 4))
bad("type_dtype_map_two_keys", "FORMAT", "one-entry variant map",
    one(A4.replace('"F32"', '{"F32":null,"F16":null}'), 4))
bad("type_dtype_map_value", "FORMAT", "a unit variant's value must be null or {}",
    one(A4.replace('"F32"', '{"F32":1}'), 4))
bad("type_dtype_map_empty", "FORMAT", '"dtype": expected a string', one(A4.replace('"F32"', '{}'), 4))
bad("dtype_unknown", "UNKNOWN_DTYPE", 'unknown dtype "F33"', one(A4.replace("F32", "F33"), 4))
bad("dtype_lowercase", "UNKNOWN_DTYPE", 'unknown dtype "f32"', one(A4.replace("F32", "f32"), 4))
bad("dtype_torch_name", "UNKNOWN_DTYPE", 'unknown dtype "float32"', one(A4.replace("F32", "float32"), 4))
bad("dtype_with_nul", "UNKNOWN_DTYPE", "unknown dtype", one(A4.replace('"F32"', '"F32\\u0000"'), 4))

# --- __metadata__ ---------------------------------------------------------------
bad("meta_value_number", "FORMAT", 'value of key "k" is not a string',
    image(pad('{"__metadata__":{"k":1}}')))
bad("meta_value_null", "FORMAT", "is not a string", image(pad('{"__metadata__":{"k":null}}')))
bad("meta_value_object", "FORMAT", "is not a string", image(pad('{"__metadata__":{"k":{}}}')))
bad("meta_array", "FORMAT", "must be an object of strings", image(pad('{"__metadata__":["k"]}')))
bad("meta_string", "FORMAT", "must be an object of strings", image(pad('{"__metadata__":"k"}')))
bad("meta_duplicate", "FORMAT", 'duplicate "__metadata__"',
    image(pad('{"__metadata__":{},"__metadata__":{}}')))
bad("meta_tensor_named_metadata", "FORMAT", "must be an object of strings",
    image(pad('{"__metadata__":["F32",[1],[0,4]]}'), b"\0" * 4))
bad("meta_duplicate_key", "FORMAT", 'duplicate metadata key: "__metadata__" key "k" appears twice',
    image(pad('{"__metadata__":{"k":"1","k":"2"}}')), reference="ok")

# --- data_offsets against shapes and the file ---------------------------------
bad("offs_first_not_zero", "OFFSETS", "the first tensor must begin at 0",
    one(ent("F32", [1], 4, 8), 8))
bad("offs_hole", "OFFSETS", 'invalid offsets: tensor "b" (file offset 62): data_offsets [8, 12] but the data must continue at 4: a hole',
    image(pad('{"a":%s,"b":%s}' % (A4, ent("F32", [1], 8, 12))), b"\0" * 12))
bad("offs_overlap", "OFFSETS", "it overlaps the previous tensor",
    image(pad('{"a":%s,"b":%s}' % (ent("F32", [2], 0, 8), ent("F32", [1], 4, 8))), b"\0" * 8))
bad("offs_end_before_begin", "OFFSETS", "end before begin",
    image(pad('{"a":%s,"b":%s}' % (A4, ent("F32", [0], 4, 0))), b"\0" * 4))
bad("offs_size_mismatch", "OFFSETS", "size mismatch: tensor \"a\" (file offset 9): data_offsets [0, 4] span 4 bytes but F32 [2] needs 8", one(ent("F32", [2], 0, 4), 4))
bad("offs_scalar_mismatch", "OFFSETS", "span 0 bytes but F64 [] needs 8", one(ent("F64", [], 0, 0), 0))
bad("offs_zero_dim_mismatch", "OFFSETS", "needs 0", one(ent("F32", [4, 0], 0, 4), 4))
bad("offs_trailing_bytes", "OFFSETS", "incomplete buffer: the tensors end at data offset 4 but the data buffer is 5 bytes (trailing bytes after the last tensor)", one(A4, 5))
bad("offs_file_short", "OFFSETS", "the file is shorter than its header says", one(A4, 3))
bad("offs_no_tensors_trailing", "OFFSETS", "trailing bytes", image(pad("{}"), b"\0"))
bad("offs_duplicate_name", "DUPLICATE_NAME", 'duplicate tensor name: tensor "a" appears twice in the header (file offsets 9 and 62)',
    image(pad('{"a":%s,"a":%s}' % (A4, ent("F32", [1], 4, 8))), b"\0" * 8))
bad("size_overflow_elements", "SIZE_OVERFLOW", "size overflow: tensor \"a\" (file offset 9)",
    one(ent("U8", [4294967296, 4294967296, 2], 0, 0), 0))
bad("size_overflow_bits", "SIZE_OVERFLOW", "overflows 64 bits",
    one(ent("F64", [2147483648, 2147483648], 0, 0), 0))
bad("partial_f4_odd", "PARTIAL_BYTES", "partial bytes: tensor \"a\" (file offset 9): F4 [3] is 12 bits, not a whole number of bytes",
    one(ent("F4", [3], 0, 1), 1))
bad("partial_f6", "PARTIAL_BYTES", "F6_E2M3 [1] is 6 bits", one(ent("F6_E2M3", [1], 0, 1), 1))

# --- valid edge cases -------------------------------------------------------------
good("ok_empty_canonical", image(b"{}      "))
good("ok_empty_unpadded", image(b"{}"))
good("ok_metadata_only", image(pad('{"__metadata__":{"format":"pt"}}')))
good("ok_metadata_null", image(pad('{"__metadata__":null}')))
good("ok_metadata_empty", image(pad('{"__metadata__":{}}')))
good("ok_metadata_escapes", image(pad('{"__metadata__":{"a\\n\\u00e9\\/":"\\"q\\" \\ud83d\\ude00"}}')))
good("ok_scalar", one(ent("F64", [], 0, 8), 8))
good("ok_zero_size", image(pad('{"a":%s,"b":%s,"c":%s}' % (
    ent("F32", [0], 0, 0), ent("I8", [3, 0, 5], 0, 0), ent("U8", [2], 0, 2))), b"\0" * 2))
good("ok_only_zero_size", one(ent("BF16", [0, 9007199254740992], 0, 0), 0))
good("ok_leading_whitespace", image(pad(' \n\t\r{"a":%s}' % A4), b"\0" * 4))
good("ok_trailing_whitespace", image(b'{"a":%s}\n\t\r   ' % A4.encode(), b"\0" * 4))
good("ok_whitespace_everywhere", image(pad(
    ' { "a" : { "dtype" : "F32" , "shape" : [ 1 ] , "data_offsets" : [ 0 , 4 ] } } '), b"\0" * 4))
good("ok_extra_fields", one('{"dtype":"F32","note":{"x":[1,2.5e3,-1,null,true,false,"s"]},'
                            '"shape":[1],"data_offsets":[0,4],"z":[]}', 4))
good("ok_keys_any_order", one('{"data_offsets":[0,4],"shape":[1],"dtype":"F32"}', 4))
good("ok_tensors_any_order", image(pad('{"b":%s,"__metadata__":{"k":"v"},"a":%s}' % (
    ent("F32", [1], 4, 8), A4)), b"\0" * 8))
good("ok_array_entry", one('["F32",[1],[0,4]]', 4))
good("ok_dtype_variant_map", one(A4.replace('"F32"', '{ "F32" : null }'), 4))
good("ok_dtype_variant_map_empty", one(A4.replace('"F32"', '{"F32":{}}'), 4))
good("ok_empty_name", image(pad('{"":%s}' % A4), b"\0" * 4))
good("ok_name_nul_unicode", image(pad('{"a\\u0000b\\u00e9\\ud83d\\ude00":%s,"日":%s}' % (
    A4, ent("U8", [1], 4, 5))), b"\0" * 5))
good("ok_escaped_slash", image(pad('{"a\\/b":%s}' % A4), b"\0" * 4))
good("ok_f4_f6", image(pad('{"a":%s,"b":%s}' % (ent("F4", [2, 3], 0, 3), ent("F6_E3M2", [4], 3, 6))),
                       b"\0" * 6))
good("ok_depth_127", one(A4[:-1] + ',"x":' + "[" * 125 + "]" * 125 + "}", 4))
good("ok_large_padding", image(b"{}" + b" " * 4094))
good("ok_unaligned_data_start", image(b'{"a":%s}' % ent("U8", [3], 0, 3).encode(), b"abc"))

DTYPES = [("BOOL", 8), ("F4", 4), ("F6_E2M3", 6), ("F6_E3M2", 6), ("U8", 8), ("I8", 8),
          ("F8_E5M2", 8), ("F8_E4M3", 8), ("F8_E8M0", 8), ("F8_E4M3FNUZ", 8), ("F8_E5M2FNUZ", 8),
          ("I16", 16), ("U16", 16), ("F16", 16), ("BF16", 16), ("I32", 32), ("U32", 32),
          ("F32", 32), ("C64", 64), ("F64", 64), ("I64", 64), ("U64", 64)]


def all_dtypes():
    parts, at = [], 0
    for name, bits in DTYPES:
        nbytes = 4 * bits // 8  # shape [4]: whole bytes for every dtype
        parts.append('"t_%s":%s' % (name, ent(name, [4], at, at + nbytes)))
        at += nbytes
    return image(pad("{" + ",".join(parts) + "}"), bytes(range(256)) * (at // 256) + bytes(at % 256))


good("ok_all_dtypes", all_dtypes())


def main():
    if len(sys.argv) != 2:
        print("usage: make_corpus.py OUTDIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    names = set()
    with open(os.path.join(out, "manifest.tsv"), "w", encoding="utf-8") as m:
        for name, code, message, content, reference in CASES:
            assert name not in names, name
            names.add(name)
            assert "\t" not in message and "\n" not in message
            with open(os.path.join(out, name + ".safetensors"), "wb") as f:
                f.write(content)
            m.write("%s.safetensors\t%s\t%s\t%s\n" % (name, code, message, reference))
    nbad = sum(1 for c in CASES if c[1] != "ok")
    print("%d files: %d malformed, %d valid" % (len(CASES), nbad, len(CASES) - nbad))
    return 0


if __name__ == "__main__":
    sys.exit(main())
