/* run_model: run an exported graphrnn library on tensors read from a binary file.

     run_model forward in.bin out.bin       the forward pass
     run_model step in.bin out.bin K        the stateful step, on chunks of K time steps
     run_model train in.bin out.bin         inputs + target -> loss and the flat gradient
     run_model time in.bin N                the median time of N forward calls, in µs
     run_model info                         what the library is

   A tensor file is "GRT1", int32 count, then per tensor: int32 dtype (1 float32, 2 int64),
   int32 rank, int64 shape[rank], the data (C order, little endian). The outputs are written
   in the same format. Errors: the library's code and message on stderr, exit status 2.

   Build against a library exported with name NAME (here through the macro MODEL):
     cc -O2 -DMODEL=reader -I out run_model.c -L out -lreader -lm -Wl,-rpath,out -o run_model
*/
#define _POSIX_C_SOURCE 199309L            /* clock_gettime */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define API(x) CAT(MODEL, x)
#define STR2(x) #x
#define STR(x) STR2(x)
#include STR(MODEL.h)

#define MAXT 16
#define FORWARD_KIND 0
#define STEP_KIND 2              /* <NAME>_STEP; FORWARD is 0, TRAIN 3 */
typedef API(tensor) tensor;

static int64_t count(const tensor *t) {
    int64_t n = 1;
    for (int a = 0; a < t->rank; a++) n *= t->shape[a];
    return n;
}

static size_t nbytes(const tensor *t) { return (size_t)count(t) * (t->dtype == 2 ? 8 : 4); }

static int read_tensors(const char *path, tensor *ts, int *n) {
    FILE *f = fopen(path, "rb");
    char magic[4];
    int32_t k = 0;
    if (!f || fread(magic, 1, 4, f) != 4 || memcmp(magic, "GRT1", 4) || fread(&k, 4, 1, f) != 1
        || k < 0 || k > MAXT) {
        fprintf(stderr, "%s: not a tensor file\n", path);
        return 1;
    }
    for (int i = 0; i < k; i++) {
        memset(&ts[i], 0, sizeof ts[i]);
        if (fread(&ts[i].dtype, 4, 1, f) != 1 || fread(&ts[i].rank, 4, 1, f) != 1
            || ts[i].rank < 0 || ts[i].rank > 8
            || fread(ts[i].shape, 8, (size_t)ts[i].rank, f) != (size_t)ts[i].rank) {
            fprintf(stderr, "%s: truncated\n", path);
            return 1;
        }
        ts[i].data = malloc(nbytes(&ts[i]) + 1);
        if (fread(ts[i].data, 1, nbytes(&ts[i]), f) != nbytes(&ts[i])) {
            fprintf(stderr, "%s: truncated data\n", path);
            return 1;
        }
    }
    *n = k;
    fclose(f);
    return 0;
}

static int write_tensors(const char *path, const tensor *ts, int n) {
    FILE *f = fopen(path, "wb");
    int32_t k = n;
    if (!f) return 1;
    fwrite("GRT1", 1, 4, f);
    fwrite(&k, 4, 1, f);
    for (int i = 0; i < n; i++) {
        fwrite(&ts[i].dtype, 4, 1, f);
        fwrite(&ts[i].rank, 4, 1, f);
        fwrite(ts[i].shape, 8, (size_t)ts[i].rank, f);
        fwrite(ts[i].data, 1, nbytes(&ts[i]), f);
    }
    return fclose(f) != 0;
}

/* The outputs of a call of `kind` on inputs of batch B and T steps, allocated (a wrong B is
   left for the call itself to report). */
static int make_outputs(int kind, int64_t B, int64_t T, tensor *out, int *n) {
    *n = API(num_outputs)(kind);
    for (int i = 0; i < *n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        int code = API(port)(kind, -1, 1, i, NULL, &out[i].dtype, &out[i].rank, out[i].shape);
        if (code) return code;
        for (int a = 0; a < out[i].rank; a++)       /* -1 stands for T, -2 for B */
            if (out[i].shape[a] < 0) out[i].shape[a] = out[i].shape[a] == -1 ? T : B;
        out[i].data = calloc(1, nbytes(&out[i]) + 1);
    }
    return 0;
}

/* The time axis of port i (-1: none). */
static int time_axis(int kind, int output, int i) {
    int32_t rank = 0;
    int64_t dims[8];
    if (API(port)(kind, -1, output, i, NULL, NULL, &rank, dims)) return -1;
    for (int a = 0; a < rank; a++) if (dims[a] == -1) return a;
    return -1;
}

/* The size of the dim the ports mark `which` (-1: T, -2: B) in the first input that has it. */
static int64_t size_of(int kind, const tensor *in, int n_in, int64_t which) {
    for (int i = 0; i < n_in; i++) {
        int32_t rank = 0;
        int64_t dims[8];
        if (API(port)(kind, -1, 0, i, NULL, NULL, &rank, dims)) return 0;
        for (int a = 0; a < rank && a < in[i].rank; a++)
            if (dims[a] == which) return in[i].shape[a];
    }
    return 0;
}

/* Copy steps [t0, t0 + len) of `src` along `axis` into `dst` (to == 0) or back (to == 1). */
static void slice(tensor *full, tensor *part, int axis, int64_t t0, int64_t len, int back) {
    size_t item = full->dtype == 2 ? 8 : 4, inner = item;
    int64_t outer = 1;
    for (int a = 0; a < axis; a++) outer *= full->shape[a];
    for (int a = axis + 1; a < full->rank; a++) inner *= (size_t)full->shape[a];
    for (int64_t o = 0; o < outer; o++) {
        char *f = (char *)full->data + ((size_t)o * (size_t)full->shape[axis] + (size_t)t0) * inner;
        char *p = (char *)part->data + (size_t)o * (size_t)len * inner;
        if (back) memcpy(f, p, (size_t)len * inner);
        else memcpy(p, f, (size_t)len * inner);
    }
}

static int fail(API(ctx) *ctx, int code) {
    fprintf(stderr, "error %d (%s): %s\n", code, API(error_string)(code), API(last_error)(ctx));
    API(destroy)(ctx);
    return 2;
}

static int stream(API(ctx) *ctx, tensor *in, int n_in, tensor *out, int n_out, int64_t chunk) {
    int64_t T = size_of(STEP_KIND, in, n_in, -1), t0 = 0;
    do {
        int64_t len = T - t0 < chunk ? T - t0 : chunk;
        tensor pin[MAXT], pout[MAXT];
        for (int i = 0; i < n_in + n_out; i++) {
            tensor *full = i < n_in ? &in[i] : &out[i - n_in];
            tensor *part = i < n_in ? &pin[i] : &pout[i - n_in];
            int ax = time_axis(STEP_KIND, i >= n_in, i < n_in ? i : i - n_in);
            *part = *full;
            if (ax >= 0) part->shape[ax] = len;
            part->data = malloc(nbytes(part) + 1);
            if (ax >= 0 && i < n_in) slice(full, part, ax, t0, len, 0);
            else if (i < n_in) memcpy(part->data, full->data, nbytes(part));
        }
        int code = API(run)(ctx, STEP_KIND, pin, n_in, pout, n_out);
        for (int i = 0; i < n_out; i++) {
            int ax = time_axis(STEP_KIND, 1, i);
            if (!code && ax >= 0) slice(&out[i], &pout[i], ax, t0, len, 1);
            else if (!code) memcpy(out[i].data, pout[i].data, nbytes(&out[i]));
        }
        for (int i = 0; i < n_in; i++) free(pin[i].data);
        for (int i = 0; i < n_out; i++) free(pout[i].data);
        if (code) return code;
        t0 += len;
    } while (t0 < T);
    return 0;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median wall time of n forward calls, in microseconds (outputs allocated once). */
static int time_calls(API(ctx) *ctx, tensor *in, int n_in, tensor *out, int n_out, int n) {
    double *us = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    for (int k = 0; k < n; k++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int code = API(run)(ctx, FORWARD_KIND, in, n_in, out, n_out);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (code) { free(us); return code; }
        us[k] = (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
    }
    qsort(us, (size_t)n, sizeof(double), cmp);
    printf("%.3f\n", n ? us[n / 2] : 0.0);
    free(us);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "info")) {
        printf("%s\n", API(manifest)());
        return 0;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: %s forward|step|train in.bin out.bin [chunk] | time in.bin N "
                "| info\n", argv[0]);
        return 1;
    }
    int timing = !strcmp(argv[1], "time");
    int kind = !strcmp(argv[1], "forward") || timing ? 0 : !strcmp(argv[1], "step") ? 2
               : !strcmp(argv[1], "train") ? 3 : -1;
    tensor in[MAXT], out[MAXT];
    int n_in = 0, n_out = 0;
    if (kind < 0 || read_tensors(argv[2], in, &n_in)) return 1;
    API(ctx) *ctx = NULL;
    int code = API(create)(&ctx, getenv("WEIGHTS"));
    if (code) return fail(ctx, code);
    int64_t B = size_of(kind, in, n_in, -2), T = size_of(kind, in, n_in, -1);
    if ((code = make_outputs(kind, B, T, out, &n_out))) return fail(ctx, code);
    if (timing) code = time_calls(ctx, in, n_in, out, n_out, atoi(argv[3]));
    else if (kind == 2) code = stream(ctx, in, n_in, out, n_out, argc > 4 ? atoll(argv[4]) : T);
    else code = API(run)(ctx, kind, in, n_in, out, n_out);
    if (code) return fail(ctx, code);
    API(destroy)(ctx);
    return timing ? 0 : write_tensors(argv[3], out, n_out);
}
