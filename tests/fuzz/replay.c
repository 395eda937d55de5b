/*
 * tests/fuzz/replay.c - replays a fuzz corpus folder through a libFuzzer entry point, as an
 * ordinary test (sqlite's fuzzcheck idea): every stored input must be handled without a crash
 * or sanitizer report. Built with the same sources as the fuzz target, without -fsanitize=fuzzer.
 * An optional RSS_LIMIT_MB fails the run when the peak resident memory passes it (the corpus
 * holds inputs built to exhaust memory: libFuzzer's -rss_limit_mb, as a test).
 *
 * usage: replay CORPUS_DIR [RSS_LIMIT_MB]
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s CORPUS_DIR [RSS_LIMIT_MB]\n", argv[0]);
        return 2;
    }
    long rss_limit_mb = argc == 3 ? strtol(argv[2], NULL, 10) : 0;
    DIR *d            = opendir(argv[1]);
    if (!d) {
        fprintf(stderr, "cannot open corpus folder %s\n", argv[1]);
        return 1;
    }
    int n = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        struct stat st;
        if (fstat(fileno(f), &st) != 0 || st.st_size > (1 << 24)) {
            fclose(f);
            printf("FAIL %s: unreadable or too large\n", e->d_name);
            failed++;
            continue;
        }
        uint8_t *buf = malloc((size_t)st.st_size + 1);
        size_t len   = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
        fclose(f);
        if (!buf || len != (size_t)st.st_size) {
            free(buf);
            printf("FAIL %s: short read\n", e->d_name);
            failed++;
            continue;
        }
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        if (rss_limit_mb > 0 && ru.ru_maxrss / 1024 > rss_limit_mb) {
            printf("FAIL %s: peak memory %ld MB is over the %ld MB limit\n",
                   e->d_name,
                   ru.ru_maxrss / 1024,
                   rss_limit_mb);
            failed++;
            continue;
        }
        printf("PASS %s (%zu bytes)\n", e->d_name, len);
        n++;
    }
    closedir(d);
    if (n == 0) {
        printf("FAIL: corpus %s is empty\n", argv[1]);
        failed++;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak memory %ld MB\n", ru.ru_maxrss / 1024);
    printf("%d passed, %d failed\n", n, failed);
    return failed ? 1 : 0;
}
