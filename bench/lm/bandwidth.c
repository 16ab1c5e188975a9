/*
 * Read bandwidth of main memory, the ceiling for single-token decoding,
 * which reads every weight once per token. Sums a buffer of 64-bit words
 * far larger than the caches, once per repeat, and keeps the fastest
 * repeat for each thread count, as STREAM reports its best time.
 *
 *     bench_bandwidth [--mib N] [--threads N] [--repeats N]
 *
 * Defaults: a 1024 MiB buffer, 1 and then 2 threads (--threads N measures
 * only N), 10 repeats. Prints one line per thread count:
 *
 *     bandwidth threads N read_gb_s X
 *
 * where X is 10^9 bytes per second. The sum is printed too, so that the
 * compiler cannot drop the reads.
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* Sums words [0, n) on the given number of threads. Integer addition is
 * associative, so the compiler may vectorise freely and the result does
 * not depend on the order. */
static uint64_t sum_words(const uint64_t *words, int64_t n, int threads) {
    uint64_t total = 0;
#pragma omp parallel for schedule(static) num_threads(threads) reduction(+ : total)
    for (int64_t i = 0; i < n; i++) {
        total += words[i];
    }
    return total;
}

/* Returns the best read bandwidth over repeats, in 10^9 bytes per second. */
static double measure(const uint64_t *words, int64_t n, int threads, int repeats,
                      uint64_t *checksum) {
    double best = 0.0;
    for (int r = 0; r < repeats; r++) {
        double start = seconds();
        *checksum += sum_words(words, n, threads);
        double elapsed = seconds() - start;
        double rate = (double)n * sizeof *words / elapsed / 1e9;
        best = rate > best ? rate : best;
    }
    return best;
}

int main(int argc, char **argv) {
    int mib = 1024, only_threads = 0, repeats = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--mib") == 0) {
            mib = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--threads") == 0) {
            only_threads = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--repeats") == 0) {
            repeats = atoi(argv[i + 1]);
        } else {
            fprintf(stderr, "bench_bandwidth: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (argc % 2 == 0 || mib < 64 || only_threads < 0 || repeats < 1) {
        fprintf(stderr, "usage: bench_bandwidth [--mib N (at least 64, default 1024)] "
                        "[--threads N (default: 1, then 2)] [--repeats N (default 10)]\n");
        return 2;
    }

    int64_t n = (int64_t)mib * 1024 * 1024 / (int64_t)sizeof(uint64_t);
    uint64_t *words = malloc((size_t)n * sizeof *words);
    if (words == NULL) {
        fprintf(stderr, "bench_bandwidth: cannot allocate %d MiB; pass a smaller --mib\n", mib);
        return 1;
    }

    /* Writing every word first maps the pages, so the timed loops only
     * read. Each thread writes the part it later reads. */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        words[i] = (uint64_t)i;
    }

    uint64_t checksum = 0;
    int first = only_threads > 0 ? only_threads : 1;
    int last = only_threads > 0 ? only_threads : 2;
    for (int threads = first; threads <= last; threads++) {
        double rate = measure(words, n, threads, repeats, &checksum);
        printf("bandwidth threads %d read_gb_s %.2f\n", threads, rate);
    }
    printf("checksum %llu\n", (unsigned long long)checksum);
    free(words);
    return 0;
}
