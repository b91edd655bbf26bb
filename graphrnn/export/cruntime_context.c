/* The fixed part of an exported graphrnn library, first half: contexts, the CPU check,
 * parameters (cruntime_call.c, the second half, checks and runs the calls).
 *
 * The generated part before this text defines GRNN_API(x) (the library's prefix), the
 * program, port, check, parameter and CPU tables, and the embedded parameters. Everything
 * here is static except the functions named through GRNN_API, declared in the header.
 * Every shape, stride, dtype and value is checked before any native code runs.
 */

#define GRNN_MAX_FLOATS ((int64_t)1 << 36)   /* 256 GiB: larger buffers are refused */
#define GRNN_MAX_DIM ((int64_t)1 << 31)

typedef struct {
    float *persistent;      /* packed weights of this program */
    float *own;             /* the parameters in this program's own layout, when it differs */
    uint64_t packed;        /* params version the packed weights were made from (0: never) */
    uint64_t gathered;
} grnn_prog_state;

struct GRNN_CTX_TAG {
    char error[512];
    float *params;
    float *seen;            /* the parameters as the last call found them */
    uint64_t version;       /* moves on whenever the parameters changed */
    grnn_prog_state progs[GRNN_N_PROGRAMS > 0 ? GRNN_N_PROGRAMS : 1];
    float *arena;
    int64_t arena_floats;
    int64_t run[3];         /* dropout seed, training flag, batch size */
    int64_t counters[2];
    float *state[2];        /* the carried state, in and out, one block each */
    int64_t state_floats;
    int64_t state_batch;    /* -1: no state yet (the next step starts a stream) */
    float *grad;            /* a training step's gradient in its own layout, when it differs */
};

static int grnn_fail(grnn_ctx *ctx, int code, const char *fmt, ...) {
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
        va_end(ap);
    }
    return code;
}

static void *grnn_alloc(int64_t floats) {
    void *p = NULL;
    size_t bytes = (size_t)(floats > 16 ? floats : 16) * sizeof(float);
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    memset(p, 0, bytes);
    return p;
}

static const char *grnn_kind_name(int kind) {
    static const char *names[] = {"forward", "init", "step", "train"};
    return kind >= 0 && kind < 4 ? names[kind] : "?";
}

/* ---------------------------------------------------------------- the CPU */

static int grnn_check_cpu(grnn_ctx *ctx) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    uint64_t xcr0 = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 27))) {     /* OSXSAVE */
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((uint64_t)hi << 32) | lo;
    }
    for (int i = 0; i < GRNN_N_CPU_CHECKS; i++) {
        const grnn_cpu_check *k = &grnn_cpu_checks[i];
        unsigned r[4] = {0, 0, 0, 0};
        int has = __get_cpuid_count(k->leaf, k->subleaf, &r[0], &r[1], &r[2], &r[3])
                  && ((r[k->reg] >> k->bit) & 1u) && (xcr0 & k->xcr0) == k->xcr0;
        if (!has)
            return grnn_fail(ctx, GRNN_E_CPU, "this CPU lacks %s (or the OS does not enable "
                             "it): the library was compiled for %s with %s", k->name,
                             GRNN_TARGET_CPU, GRNN_TARGET_FEATURES);
    }
#endif
    return GRNN_OK;
}

/* ---------------------------------------------------------------- parameters */

/* CRC-32 (zlib's), bit by bit: a weights file is read once per context. */
static uint64_t grnn_crc32(const unsigned char *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

int GRNN_API(load_params)(grnn_ctx *ctx, const char *path) {
    if (!ctx || !path) return grnn_fail(ctx, GRNN_E_ARG, "load_params: null argument");
    FILE *f = fopen(path, "rb");
    if (!f) return grnn_fail(ctx, GRNN_E_WEIGHTS, "%s: cannot open the weights file", path);
    unsigned char head[24];
    uint64_t n = 0, sum = 0;
    int code = GRNN_OK;
    size_t bytes = (size_t)GRNN_N_PARAMS * sizeof(float);
    float *buf = grnn_alloc(GRNN_N_PARAMS);
    if (!buf) { fclose(f); return grnn_fail(ctx, GRNN_E_NOMEM, "out of memory"); }
    if (fread(head, 1, 24, f) != 24 || memcmp(head, "GRNNPAR1", 8) != 0) {
        code = grnn_fail(ctx, GRNN_E_WEIGHTS, "%s: not a graphrnn weights file", path);
    } else {
        memcpy(&n, head + 8, 8);
        memcpy(&sum, head + 16, 8);
        if (n != (uint64_t)GRNN_N_PARAMS)
            code = grnn_fail(ctx, GRNN_E_WEIGHTS, "%s: holds %llu parameters, the model has %lld",
                             path, (unsigned long long)n, (long long)GRNN_N_PARAMS);
        else if (fread(buf, 1, bytes, f) != bytes || fgetc(f) != EOF)
            code = grnn_fail(ctx, GRNN_E_WEIGHTS, "%s: wrong size", path);
        else if (grnn_crc32((const unsigned char *)buf, bytes) != sum)
            code = grnn_fail(ctx, GRNN_E_WEIGHTS, "%s: checksum mismatch (corrupted file)", path);
    }
    fclose(f);
    if (code == GRNN_OK) { memcpy(ctx->params, buf, bytes); ctx->version++; }
    free(buf);
    return code;
}

int GRNN_API(save_params)(grnn_ctx *ctx, const char *path) {
    if (!ctx || !path) return grnn_fail(ctx, GRNN_E_ARG, "save_params: null argument");
    size_t bytes = (size_t)GRNN_N_PARAMS * sizeof(float);
    uint64_t n = (uint64_t)GRNN_N_PARAMS;
    uint64_t sum = grnn_crc32((const unsigned char *)ctx->params, bytes);
    FILE *f = fopen(path, "wb");
    if (!f) return grnn_fail(ctx, GRNN_E_WEIGHTS, "%s: cannot write", path);
    int ok = fwrite("GRNNPAR1", 1, 8, f) == 8 && fwrite(&n, 8, 1, f) == 1
             && fwrite(&sum, 8, 1, f) == 1 && fwrite(ctx->params, 1, bytes, f) == bytes;
    ok = (fclose(f) == 0) && ok;
    return ok ? GRNN_OK : grnn_fail(ctx, GRNN_E_WEIGHTS, "%s: write failed", path);
}

/* Writes through this pointer, at any time, are seen by the next call: a call whose program
   packs or regathers the weights first compares the vector with the one it last saw. */
float *GRNN_API(params)(grnn_ctx *ctx) { return ctx ? ctx->params : NULL; }

const float *GRNN_API(params_read)(const grnn_ctx *ctx) { return ctx ? ctx->params : NULL; }

void GRNN_API(params_changed)(grnn_ctx *ctx) { if (ctx) ctx->version++; }

int64_t GRNN_API(num_params)(void) { return GRNN_N_PARAMS; }
int GRNN_API(num_tensors)(void) { return GRNN_N_TENSORS; }

const char *GRNN_API(tensor_name)(int i) {
    return i >= 0 && i < GRNN_N_TENSORS ? grnn_tensors[i].name : NULL;
}

int64_t GRNN_API(tensor_offset)(int i) {
    return i >= 0 && i < GRNN_N_TENSORS ? grnn_tensors[i].offset : -1;
}

int GRNN_API(tensor_rank)(int i) {
    return i >= 0 && i < GRNN_N_TENSORS ? grnn_tensors[i].rank : -1;
}

int64_t GRNN_API(tensor_dim)(int i, int axis) {
    if (i < 0 || i >= GRNN_N_TENSORS || axis < 0 || axis >= grnn_tensors[i].rank) return -1;
    return grnn_tensors[i].dims[axis];
}

/* ---------------------------------------------------------------- contexts */

int GRNN_API(create)(grnn_ctx **out, const char *weights_path) {
    if (!out) return GRNN_E_ARG;
    grnn_ctx *ctx = calloc(1, sizeof *ctx);
    *out = ctx;
    if (!ctx) return GRNN_E_NOMEM;
    ctx->state_batch = -1;
    ctx->version = 1;
    int code = grnn_check_cpu(ctx);
    if (code != GRNN_OK) return code;
    ctx->params = grnn_alloc(GRNN_N_PARAMS);
    ctx->seen = grnn_alloc(GRNN_N_PARAMS);
    if (!ctx->params || !ctx->seen) return grnn_fail(ctx, GRNN_E_NOMEM, "out of memory");
    for (int i = 0; i < GRNN_N_PROGRAMS; i++) {
        const grnn_program *p = &grnn_programs[i];
        ctx->progs[i].persistent = grnn_alloc(p->persistent);
        ctx->progs[i].own = p->n_remap ? grnn_alloc(GRNN_N_PARAMS) : NULL;
        if (!ctx->progs[i].persistent || (p->n_remap && !ctx->progs[i].own))
            return grnn_fail(ctx, GRNN_E_NOMEM, "out of memory");
    }
    if (weights_path) return GRNN_API(load_params)(ctx, weights_path);
#if GRNN_EMBEDDED
    memcpy(ctx->params, GRNN_EMBEDDED_DATA, (size_t)GRNN_N_PARAMS * sizeof(float));
    return GRNN_OK;
#else
    return grnn_fail(ctx, GRNN_E_WEIGHTS, "this library reads its parameters from a file: "
                     "pass the weights file's path to create");
#endif
}

void GRNN_API(destroy)(grnn_ctx *ctx) {
    if (!ctx) return;
    for (int i = 0; i < GRNN_N_PROGRAMS; i++) {
        free(ctx->progs[i].persistent);
        free(ctx->progs[i].own);
    }
    free(ctx->params);
    free(ctx->seen);
    free(ctx->arena);
    free(ctx->state[0]);
    free(ctx->state[1]);
    free(ctx->grad);
    free(ctx);
}

const char *GRNN_API(last_error)(const grnn_ctx *ctx) {
    if (!ctx) return "no context (out of memory, or a null pointer was passed)";
    return ctx->error;
}

int GRNN_API(reset)(grnn_ctx *ctx) {
    if (!ctx) return GRNN_E_ARG;
    ctx->state_batch = -1;
    return GRNN_OK;
}

/* The program of `kind` (one each), or -1. */
static int grnn_of_kind(int kind) {
    for (int i = 0; i < GRNN_N_PROGRAMS; i++)
        if (grnn_programs[i].kind == kind) return i;
    return -1;
}

/* The batch size a program with a fixed batch takes: axis 0 of its first input (-1: any). */
static int64_t grnn_fixed_batch(const grnn_program *p) {
    if (p->has_batch || p->n_in - p->n_state < 1 || p->ins[0].rank < 1) return -1;
    return p->ins[0].dims[0] >= 0 ? p->ins[0].dims[0] : -1;
}

int GRNN_API(supports)(int kind, int64_t batch) {
    int i = grnn_of_kind(kind);
    if (i < 0 || kind == GRNN_KIND_INIT || batch < 0 || batch >= GRNN_MAX_DIM) return 0;
    int64_t fixed = grnn_fixed_batch(&grnn_programs[i]);
    return fixed < 0 || fixed == batch;
}

