/* Helpers shared by the C tests: checks that count failures, the test data
 * rule (mirrored in tests/oracle/reference_writer.py), file and directory checks. */
#ifndef T_UTIL_H
#define T_UTIL_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int t_failures = 0;
static int t_rank = 0;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "[rank %d] %s:%d: CHECK failed: %s\n", t_rank, __FILE__,      \
                    __LINE__, #cond);                                                      \
            t_failures++;                                                                  \
        }                                                                                  \
    } while (0)

#define CHECK_MSG(cond, ...)                                                               \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "[rank %d] %s:%d: CHECK failed: %s: ", t_rank, __FILE__,      \
                    __LINE__, #cond);                                                      \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            t_failures++;                                                                  \
        }                                                                                  \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                 \
    do {                                                                                   \
        long long t_a_ = (long long)(a), t_b_ = (long long)(b);                            \
        if (t_a_ != t_b_) {                                                                \
            fprintf(stderr, "[rank %d] %s:%d: CHECK failed: %s == %s (%lld != %lld)\n",   \
                    t_rank, __FILE__, __LINE__, #a, #b, t_a_, t_b_);                       \
            t_failures++;                                                                  \
        }                                                                                  \
    } while (0)

/* The test data rule: byte j of tensor `name`. Mirrored in
 * tests/oracle/reference_writer.py (data_bytes); change both or neither. */
static inline uint32_t t_name_hash(const char *name)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        h = (h ^ *c) * 16777619u;
    return h;
}

static inline void t_fill(unsigned char *buf, uint64_t off, uint64_t len, const char *name)
{
    uint32_t h = t_name_hash(name);
    for (uint64_t j = 0; j < len; j++) {
        uint32_t x = (uint32_t)((off + j) * 0x9E3779B1ull + h);
        x ^= x >> 15;
        buf[j] = (unsigned char)x;
    }
}

static inline int t_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Number of entries in dir whose name starts with prefix. */
static inline int t_count_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    size_t len = strlen(prefix);
    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, len) == 0)
            n++;
    closedir(d);
    return n;
}

/* Number of temporary files of saves in dir (names holding ".tmp-mst.",
 * MST_TEMP_MARK), whatever the target's name (a long one is cut in the
 * temporary's); -1 if dir cannot be listed. */
static inline int t_count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp-mst.") != NULL;
    closedir(d);
    return n;
}

static inline unsigned char *t_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        *len = (size_t)n;
    return buf;
}

static inline int t_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f)
        return -1;
    ok = fwrite(data, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* JSON string for the spec files read by the Python oracle. */
static inline void t_put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

#endif
