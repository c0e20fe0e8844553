/* UTF-8 validation with the rules of Rust's str::from_utf8 (the reference
 * reader's): no overlong forms, no surrogates, nothing above U+10FFFF. */
#ifndef MST_UTF8_H
#define MST_UTF8_H

#include <stddef.h>

/* Length (1-4) of the valid UTF-8 sequence at s, or 0 if invalid/truncated. */
size_t mst_utf8_seq_len(const char *s, size_t len);

/* Returns len if all of s is valid, else the offset of the first bad byte. */
size_t mst_utf8_check(const char *s, size_t len);

#endif
