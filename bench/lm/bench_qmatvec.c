/*
 * Same-process comparison of the two single-row product paths for
 * quantised weights: mr_qmatvec, which keeps x in float, and
 * mr_qmatvec_int8, which quantises x to int8 blocks and sums each block
 * in integers. Both run on the same matrices, interleaved, so that load
 * from other processes affects both alike and the ratio stays meaningful
 * when absolute times are not.
 *
 *     bench_qmatvec [--type q8_0|q4_0] [--threads N] [--repeats N]
 *                   [--calls N] [--footprint-mib N]
 *
 * Shapes (rows x n, that is out x in): 4096 x 1024 and 1024 x 4096 (the
 * SwiGLU matrices of bench_lm's 500m preset), 1536 x 576 and 576 x 1536
 * (those of its 135m preset). Each matrix is copied until the copies fill
 * --footprint-mib MiB (default 256, far beyond the caches, so that each
 * product streams its weights from memory as decoding does; 0 keeps one
 * copy, which stays in cache and measures the kernels' arithmetic). Each
 * repeat times --calls products (default 200) with each path, cycling
 * through the copies, and alternates which path goes first. Defaults: 1
 * thread, 9 repeats. Prints one line per shape:
 *
 *     qmatvec type TYPE threads THREADS rows R n N copies C float_us F
 *         int8_us I float_gb_s G1 int8_gb_s G2 speedup S cpu_speedup P
 *         max_rel_diff D
 *
 * (one line). F and I are the median wall-clock microseconds per product.
 * G1 and G2 are the weight bytes per product over those times (10^9 bytes
 * per second). S is the median over repeats of the float path's wall time
 * over the integer path's, and P the same ratio of process CPU times,
 * which other processes taking the core affect less. D is the largest
 * |y_int8 - y_float| over the largest |y_float|.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "multiround/common.h"
#include "multiround/quant.h"
#include "multiround/rng.h"

#define MAX_REPEATS 64

typedef struct shape {
    int64_t rows;
    int64_t n;
} shape;

static const shape shapes[] = {{4096, 1024}, {1024, 4096}, {1536, 576}, {576, 1536}};

/* Returns the seconds of the given clock: CLOCK_MONOTONIC for wall time,
 * CLOCK_PROCESS_CPUTIME_ID for the CPU time of all threads. */
static double seconds(clockid_t clock) {
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* Wall and CPU seconds per product. */
typedef struct timing {
    double wall;
    double cpu;
} timing;

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Returns the median of n values, sorting them in place. */
static double median(double *values, int n) {
    qsort(values, (size_t)n, sizeof *values, compare_doubles);
    return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

/* Times calls products with one path, cycling through the copies, and
 * returns the seconds per product. */
static timing time_path(bool int8, mr_qtype type, const unsigned char *copies, int copy_count,
                        size_t matrix_bytes, shape s, const float *x, float *y, void *scratch,
                        int calls) {
    double wall_start = seconds(CLOCK_MONOTONIC);
    double cpu_start = seconds(CLOCK_PROCESS_CPUTIME_ID);
    for (int c = 0; c < calls; c++) {
        const unsigned char *w = copies + (size_t)(c % copy_count) * matrix_bytes;
        if (int8) {
            mr_qmatvec_int8(type, w, s.rows, s.n, x, y, scratch);
        } else {
            mr_qmatvec(type, w, s.rows, s.n, x, y);
        }
    }
    timing t = {(seconds(CLOCK_MONOTONIC) - wall_start) / calls,
                (seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_start) / calls};
    return t;
}

/* Benchmarks one shape and prints its line. Returns 0, or 1 when memory
 * runs out. */
static int run_shape(mr_qtype type, shape s, int threads, int repeats, int calls,
                     int footprint_mib) {
    size_t row_bytes = mr_qtype_row_bytes(type, s.n);
    size_t matrix_bytes = row_bytes * (size_t)s.rows;
    int copy_count = 1;
    if (footprint_mib > 0) {
        double copies_needed = (double)footprint_mib * 1048576.0 / (double)matrix_bytes;
        copy_count = copies_needed > 1.0 ? (int)ceil(copies_needed) : 1;
    }

    float *w = malloc((size_t)s.n * sizeof *w);
    float *x = malloc((size_t)s.n * sizeof *x);
    float *y_float = malloc((size_t)s.rows * sizeof *y_float);
    float *y_int8 = malloc((size_t)s.rows * sizeof *y_int8);
    void *scratch = malloc(mr_qmatvec_int8_scratch_bytes(s.n));
    unsigned char *copies = malloc(matrix_bytes * (size_t)copy_count);
    if (w == NULL || x == NULL || y_float == NULL || y_int8 == NULL || scratch == NULL ||
        copies == NULL) {
        fprintf(stderr, "bench_qmatvec: no memory for %d copies of a %lld x %lld matrix\n",
                copy_count, (long long)s.rows, (long long)s.n);
        free(w);
        free(x);
        free(y_float);
        free(y_int8);
        free(scratch);
        free(copies);
        return 1;
    }

    /* Weights of standard deviation 0.02 as mr_llama_init draws them, x
     * of standard deviation 1 like a normalised hidden state. */
    mr_rng rng;
    mr_rng_init(&rng, 42);
    for (int64_t r = 0; r < s.rows; r++) {
        for (int64_t i = 0; i < s.n; i++) {
            w[i] = 0.02f * mr_rng_normal(&rng);
        }
        mr_quantize_row(type, w, copies + (size_t)r * row_bytes, s.n);
    }
    for (int c = 1; c < copy_count; c++) {
        memcpy(copies + (size_t)c * matrix_bytes, copies, matrix_bytes);
    }
    for (int64_t i = 0; i < s.n; i++) {
        x[i] = mr_rng_normal(&rng);
    }

    /* Both results once, untimed: the difference, and warm pages. */
    mr_qmatvec(type, copies, s.rows, s.n, x, y_float);
    mr_qmatvec_int8(type, copies, s.rows, s.n, x, y_int8, scratch);
    double largest = 0.0, largest_diff = 0.0;
    for (int64_t r = 0; r < s.rows; r++) {
        largest = fmax(largest, fabs((double)y_float[r]));
        largest_diff = fmax(largest_diff, fabs((double)y_int8[r] - (double)y_float[r]));
    }

    double float_times[MAX_REPEATS], int8_times[MAX_REPEATS];
    double ratios[MAX_REPEATS], cpu_ratios[MAX_REPEATS];
    for (int rep = 0; rep < repeats; rep++) {
        bool float_first = rep % 2 == 0;
        timing float_time = {0.0, 0.0};
        timing int8_time = {0.0, 0.0};
        for (int turn = 0; turn < 2; turn++) {
            bool int8 = float_first ? turn == 1 : turn == 0;
            timing t = time_path(int8, type, copies, copy_count, matrix_bytes, s, x,
                                 int8 ? y_int8 : y_float, scratch, calls);
            if (int8) {
                int8_time = t;
            } else {
                float_time = t;
            }
        }
        float_times[rep] = float_time.wall;
        int8_times[rep] = int8_time.wall;
        ratios[rep] = float_time.wall / int8_time.wall;
        cpu_ratios[rep] = float_time.cpu / int8_time.cpu;
    }

    double float_s = median(float_times, repeats);
    double int8_s = median(int8_times, repeats);
    printf("qmatvec type %s threads %d rows %lld n %lld copies %d float_us %.1f int8_us %.1f "
           "float_gb_s %.2f int8_gb_s %.2f speedup %.3f cpu_speedup %.3f max_rel_diff %.2e\n",
           mr_qtype_name(type), threads, (long long)s.rows, (long long)s.n, copy_count,
           1e6 * float_s, 1e6 * int8_s, (double)matrix_bytes / float_s / 1e9,
           (double)matrix_bytes / int8_s / 1e9, median(ratios, repeats),
           median(cpu_ratios, repeats), largest > 0.0 ? largest_diff / largest : 0.0);
    fflush(stdout);

    free(w);
    free(x);
    free(y_float);
    free(y_int8);
    free(scratch);
    free(copies);
    return 0;
}

static void print_usage(void) {
    fprintf(stderr,
            "usage: bench_qmatvec [--type q8_0|q4_0] [--threads N] [--repeats 1..%d]\n"
            "                     [--calls N] [--footprint-mib N]\n",
            MAX_REPEATS);
}

int main(int argc, char **argv) {
    const char *type_name = "q8_0";
    int threads = 1, repeats = 9, calls = 200, footprint_mib = 256;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 == argc) {
            print_usage();
            return 2;
        }
        const char *value = argv[i + 1];
        if (strcmp(argv[i], "--type") == 0) {
            type_name = value;
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = atoi(value);
        } else if (strcmp(argv[i], "--repeats") == 0) {
            repeats = atoi(value);
        } else if (strcmp(argv[i], "--calls") == 0) {
            calls = atoi(value);
        } else if (strcmp(argv[i], "--footprint-mib") == 0) {
            footprint_mib = atoi(value);
        } else {
            fprintf(stderr, "bench_qmatvec: unknown option %s\n", argv[i]);
            print_usage();
            return 2;
        }
    }

    mr_qtype type;
    if (!mr_qtype_parse(type_name, &type) || (type != MR_QTYPE_Q8_0 && type != MR_QTYPE_Q4_0) ||
        threads < 1 || repeats < 1 || repeats > MAX_REPEATS || calls < 1 || footprint_mib < 0) {
        print_usage();
        return 2;
    }
    mr_threads_set(threads);

    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        if (run_shape(type, shapes[k], threads, repeats, calls, footprint_mib) != 0) {
            return 1;
        }
    }
    return 0;
}
