/* The calls of an exported graphrnn library: every tensor checked against the program's
 * ports (dtype, rank, dims, one shared B and T, strides, sizes, id and length values) before
 * the native entry point runs; the arena sized per call from B and T; the stateful step's
 * carried state; the typed calls' layout. Follows cruntime_context.c in the generated source.
 */

/* ---------------------------------------------------------------- checks */

#define GRNN_T (-1)             /* a port dim of size T, the call's step count */
#define GRNN_B (-2)             /* a port dim of size B, the call's batch size */

static void grnn_shape_text(char *buf, size_t n, int rank, const int64_t *dims, int sym) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int a = 0; a < rank && k < n; a++) {
        const char *sep = a ? "," : "";
        if (sym && dims[a] == GRNN_T) k += (size_t)snprintf(buf + k, n - k, "%sT", sep);
        else if (sym && dims[a] == GRNN_B) k += (size_t)snprintf(buf + k, n - k, "%sB", sep);
        else k += (size_t)snprintf(buf + k, n - k, "%s%lld", sep, (long long)dims[a]);
    }
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* One tensor against its port; binds size[0] (B) and size[1] (T), shared by every port. */
static int grnn_check_tensor(grnn_ctx *ctx, const char *what, const grnn_port *port,
                             const grnn_tensor *t, int64_t *size) {
    char want[160], got[160];
    grnn_shape_text(want, sizeof want, port->rank, port->dims, 1);
    if (t->dtype != port->dtype)
        return grnn_fail(ctx, GRNN_E_DTYPE, "%s %s: expected dtype %s, got %s", what, port->name,
                         port->dtype == GRNN_F32 ? "float32" : "int64", t->dtype == GRNN_F32
                         ? "float32" : t->dtype == GRNN_I64 ? "int64" : "another dtype");
    if (t->rank != port->rank) {
        return grnn_fail(ctx, GRNN_E_SHAPE, "%s %s: expected %s (rank %d), got rank %lld", what,
                         port->name, want, port->rank, (long long)t->rank);
    }
    grnn_shape_text(got, sizeof got, (int)t->rank, t->shape, 0);
    int64_t expect = 1, count = 1;
    int contiguous_default = 1;
    for (int a = 0; a < port->rank; a++) if (t->strides[a] != 0) contiguous_default = 0;
    for (int a = port->rank - 1; a >= 0; a--) {
        int64_t s = t->shape[a], d = port->dims[a];
        if (s < 0 || s >= GRNN_MAX_DIM)
            return grnn_fail(ctx, GRNN_E_SHAPE, "%s %s: dim %d is %lld, outside [0, 2**31)",
                             what, port->name, a, (long long)s);
        if (d == GRNN_B || d == GRNN_T) {
            int64_t *bound = &size[d == GRNN_B ? 0 : 1];
            if (*bound < 0) *bound = s;
            else if (s != *bound)
                return grnn_fail(ctx, GRNN_E_SHAPE, "%s %s: expected %s with %s=%lld (as in the "
                                 "other tensors), got %s", what, port->name, want,
                                 d == GRNN_B ? "B" : "T", (long long)*bound, got);
        } else if (s != d) {
            return grnn_fail(ctx, GRNN_E_SHAPE, "%s %s: expected %s, got %s (dim %d should be "
                             "%lld)", what, port->name, want, got, a, (long long)d);
        }
        if (!contiguous_default && s > 1 && t->strides[a] != expect)
            return grnn_fail(ctx, GRNN_E_STRIDE, "%s %s: strides must be C-contiguous "
                             "(element stride %lld on dim %d, expected %lld); copy it first",
                             what, port->name, (long long)t->strides[a], a, (long long)expect);
        if (s && expect > GRNN_MAX_FLOATS / s)
            return grnn_fail(ctx, GRNN_E_SHAPE, "%s %s: %s is too large", what, port->name, got);
        expect *= s ? s : 1;
        count *= s;
    }
    if (!t->data && count)
        return grnn_fail(ctx, GRNN_E_ARG, "%s %s: null data pointer", what, port->name);
    return GRNN_OK;
}

static int grnn_check_values(grnn_ctx *ctx, const grnn_program *p, const grnn_tensor *in,
                             int64_t steps) {
    for (int i = 0; i < p->n_checks; i++) {
        const grnn_check *c = &p->checks[i];
        if (c->kind == 2) {             /* an entry or range of the time axis is read */
            if (steps < c->c)
                return grnn_fail(ctx, GRNN_E_SHAPE, "the model reads step %lld of its time "
                                 "axis: it needs at least %lld steps, got %lld",
                                 (long long)(c->c - 1), (long long)c->c, (long long)steps);
            continue;
        }
        const grnn_tensor *t = &in[c->input];
        int64_t n = 1, hi = c->kind == 0 ? c->c - 1 : c->c + c->s * steps;
        for (int a = 0; a < t->rank; a++) n *= t->shape[a];
        const int64_t *v = (const int64_t *)t->data;
        for (int64_t k = 0; k < n; k++) {
            if (v[k] < 0 || v[k] > hi)
                return grnn_fail(ctx, GRNN_E_VALUE, "input %s: %s must lie in [0, %lld], got %lld "
                                 "at element %lld", p->ins[c->input].name,
                                 c->kind == 0 ? "ids" : "lengths", (long long)hi,
                                 (long long)v[k], (long long)k);
        }
    }
    return GRNN_OK;
}

/* Floats of arena a call of `batch` rows and `steps` steps needs (the contract's regions:
   fixed, per step, per row, per row and step), or -1 past GRNN_MAX_FLOATS. */
static int64_t grnn_arena_floats(const grnn_program *p, int64_t batch, int64_t steps) {
    int64_t left = GRNN_MAX_FLOATS - p->arena_fixed;
    if (p->arena_step && steps > left / p->arena_step) return -1;
    left -= p->arena_step * steps;
    if (p->arena_row_step && steps > GRNN_MAX_FLOATS / p->arena_row_step) return -1;
    int64_t per_row = p->arena_row + p->arena_row_step * steps;
    if (per_row && batch > left / per_row) return -1;
    return GRNN_MAX_FLOATS - left + per_row * batch;
}

/* Check the caller's tensors against program p: every input and output, then the sizes;
   size[0] and size[1] become the call's B and T (0 where no port has them). */
static int grnn_check_call(grnn_ctx *ctx, const grnn_program *p, const grnn_tensor *in,
                           int n_in, grnn_tensor *out, int n_out, int64_t *size) {
    int want_in = p->n_in - p->n_state, want_out = p->n_out - p->n_state;
    if (n_in != want_in || n_out != want_out)
        return grnn_fail(ctx, GRNN_E_ARG, "the %s call takes %d inputs and %d outputs, got %d "
                         "and %d", grnn_kind_name(p->kind), want_in, want_out, n_in, n_out);
    if ((n_in && !in) || (n_out && !out))
        return grnn_fail(ctx, GRNN_E_ARG, "null tensor array");
    size[0] = size[1] = -1;
    for (int i = 0; i < n_in; i++) {
        int code = grnn_check_tensor(ctx, "input", &p->ins[i], &in[i], size);
        if (code) return code;
    }
    for (int i = 0; i < n_out; i++) {
        int code = grnn_check_tensor(ctx, "output", &p->outs[i], &out[i], size);
        if (code) return code;
    }
    if (size[0] < 0) size[0] = 0;
    if (size[1] < 0) size[1] = 0;
    if (grnn_arena_floats(p, size[0], size[1]) < 0)
        return grnn_fail(ctx, GRNN_E_SHAPE, "B=%lld, T=%lld is too large: the scratch arena "
                         "would exceed 2**36 floats", (long long)size[0], (long long)size[1]);
    return grnn_check_values(ctx, p, in, size[1]);
}

/* The program of `kind`, or an error saying the library has none. */
static int grnn_find(grnn_ctx *ctx, int kind, int *found) {
    *found = grnn_of_kind(kind);
    if (*found >= 0) return GRNN_OK;
    return grnn_fail(ctx, GRNN_E_UNSUPPORTED, "this library has no %s program (export it "
                     "with %s)", grnn_kind_name(kind),
                     kind == GRNN_KIND_TRAIN ? "a loss" : "a model with top-level loops");
}

/* ---------------------------------------------------------------- calling */

static int grnn_prepare(grnn_ctx *ctx, int i, int64_t batch, int64_t steps, float **params) {
    const grnn_program *p = &grnn_programs[i];
    grnn_prog_state *s = &ctx->progs[i];
    size_t bytes = (size_t)GRNN_N_PARAMS * sizeof(float);
    *params = ctx->params;
    if ((p->pack || p->n_remap) && memcmp(ctx->params, ctx->seen, bytes) != 0) {
        memcpy(ctx->seen, ctx->params, bytes);      /* written since: repack, regather */
        ctx->version++;
    }
    if (p->n_remap) {
        if (s->gathered != ctx->version) {
            for (int k = 0; k < p->n_remap; k++)
                memcpy(s->own + p->remap[k][1], ctx->params + p->remap[k][0],
                       (size_t)p->remap[k][2] * sizeof(float));
            s->gathered = ctx->version;
        }
        *params = s->own;
    }
    if (p->pack && s->packed != ctx->version) {
        p->pack(*params, s->persistent);
        s->packed = ctx->version;
    }
    int64_t need = grnn_arena_floats(p, batch, steps);
    if (need > ctx->arena_floats) {
        float *a = grnn_alloc(need);
        if (!a) return grnn_fail(ctx, GRNN_E_NOMEM, "out of memory (arena of %lld floats)",
                                 (long long)need);
        free(ctx->arena);
        ctx->arena = a;
        ctx->arena_floats = need;
    }
    return GRNN_OK;
}

/* The native call: io = inputs, then state in, outputs, state out, then the extras. */
static int grnn_call(grnn_ctx *ctx, int i, const grnn_tensor *in, grnn_tensor *out,
                     void *const *state_in, void *const *state_out, int64_t batch,
                     int64_t steps) {
    const grnn_program *p = &grnn_programs[i];
    float *params;
    void *io[GRNN_MAX_IO];
    int code = grnn_prepare(ctx, i, batch, steps, &params);
    if (code) return code;
    int k = 0, n_in = p->n_in - p->n_state, n_out = p->n_out - p->n_state;
    for (int j = 0; j < n_in; j++) io[k++] = in[j].data;
    for (int j = 0; j < p->n_state; j++) io[k++] = state_in[j];
    for (int j = 0; j < n_out; j++) io[k++] = out[j].data;
    for (int j = 0; j < p->n_state; j++) io[k++] = state_out[j];
    void *extras[3] = {ctx->progs[i].persistent, ctx->run, ctx->counters};
    for (int j = 0; j < p->extras && j < 3; j++) io[k++] = extras[j];
    ctx->run[0] = 0;
    ctx->run[1] = p->kind == GRNN_KIND_TRAIN;
    ctx->run[2] = batch;
    p->entry(params, ctx->arena, io, steps);
    return GRNN_OK;
}

/* The stateful step's state blocks (in, out) as per-port pointers, made for `batch` rows. */
static int grnn_state(grnn_ctx *ctx, const grnn_program *p, int64_t batch, void **in,
                      void **out) {
    int64_t total = 0, offset[GRNN_MAX_IO];
    for (int j = 0; j < p->n_state; j++) {
        const grnn_port *port = &p->outs[p->n_out - p->n_state + j];
        int64_t n = 1;
        for (int a = 0; a < port->rank; a++)
            n *= port->dims[a] == GRNN_B ? batch : port->dims[a];
        offset[j] = total;
        total += (n + 15) & ~(int64_t)15;       /* each state on 64 bytes */
    }
    if (total > ctx->state_floats) {
        float *a = grnn_alloc(total), *b = grnn_alloc(total);
        if (!a || !b) { free(a); free(b); return grnn_fail(ctx, GRNN_E_NOMEM, "out of memory"); }
        free(ctx->state[0]);
        free(ctx->state[1]);
        ctx->state[0] = a;
        ctx->state[1] = b;
        ctx->state_floats = total;
    }
    for (int j = 0; j < p->n_state; j++) {
        in[j] = ctx->state[0] + offset[j];
        out[j] = ctx->state[1] + offset[j];
    }
    return GRNN_OK;
}

static int grnn_step(grnn_ctx *ctx, int i, const grnn_tensor *in, grnn_tensor *out,
                     int64_t batch, int64_t steps) {
    const grnn_program *p = &grnn_programs[i];
    void *s_in[GRNN_MAX_IO], *s_out[GRNN_MAX_IO];
    if (ctx->state_batch >= 0 && ctx->state_batch != batch)
        return grnn_fail(ctx, GRNN_E_STATE, "the state kept from the previous call has batch "
                         "size %lld, this call %lld: call reset to start a new stream",
                         (long long)ctx->state_batch, (long long)batch);
    int code = grnn_state(ctx, p, batch, s_in, s_out);
    if (code) return code;
    if (ctx->state_batch < 0) {         /* a new stream: its initial state, from these inputs */
        grnn_tensor outs[GRNN_MAX_IO];
        for (int j = 0; j < p->n_state; j++) outs[j].data = s_in[j];
        code = grnn_call(ctx, grnn_of_kind(GRNN_KIND_INIT), in, outs, NULL, NULL, batch, steps);
        if (code) return code;
    }
    code = grnn_call(ctx, i, in, out, s_in, s_out, batch, steps);
    if (code) return code;
    float *t = ctx->state[0];           /* this call's final state is the next call's start */
    ctx->state[0] = ctx->state[1];
    ctx->state[1] = t;
    ctx->state_batch = batch;
    return GRNN_OK;
}

static int grnn_train(grnn_ctx *ctx, int i, const grnn_tensor *in, grnn_tensor *out,
                      int64_t batch, int64_t steps) {
    const grnn_program *p = &grnn_programs[i];
    if (!p->n_remap) return grnn_call(ctx, i, in, out, NULL, NULL, batch, steps);
    if (!ctx->grad && !(ctx->grad = grnn_alloc(GRNN_N_PARAMS)))
        return grnn_fail(ctx, GRNN_E_NOMEM, "out of memory");
    grnn_tensor own[2] = {out[0], out[1]};
    own[1].data = ctx->grad;
    int code = grnn_call(ctx, i, in, own, NULL, NULL, batch, steps);
    if (code) return code;
    float *grad = (float *)out[1].data;
    for (int k = 0; k < p->n_remap; k++)    /* back into the model's layout */
        memcpy(grad + p->remap[k][0], ctx->grad + p->remap[k][1],
               (size_t)p->remap[k][2] * sizeof(float));
    return GRNN_OK;
}

static int grnn_dispatch(grnn_ctx *ctx, int i, const grnn_tensor *in, grnn_tensor *out,
                         const int64_t *size) {
    switch (grnn_programs[i].kind) {
    case GRNN_KIND_STEP: return grnn_step(ctx, i, in, out, size[0], size[1]);
    case GRNN_KIND_TRAIN: return grnn_train(ctx, i, in, out, size[0], size[1]);
    default: return grnn_call(ctx, i, in, out, NULL, NULL, size[0], size[1]);
    }
}

int GRNN_API(run)(grnn_ctx *ctx, int kind, const grnn_tensor *inputs, int n_inputs,
                  grnn_tensor *outputs, int n_outputs) {
    if (!ctx) return GRNN_E_ARG;
    ctx->error[0] = 0;
    if (kind != GRNN_KIND_FORWARD && kind != GRNN_KIND_STEP && kind != GRNN_KIND_TRAIN)
        return grnn_fail(ctx, GRNN_E_ARG, "unknown call kind %d", kind);
    int found = -1;
    int64_t size[2];
    int code = grnn_find(ctx, kind, &found);
    if (!code) code = grnn_check_call(ctx, &grnn_programs[found], inputs, n_inputs, outputs,
                                      n_outputs, size);
    if (code) return code;
    return grnn_dispatch(ctx, found, inputs, outputs, size);
}

/* The typed calls: the program of `kind`, tensors laid out from its ports with B and T. */
static int grnn_typed(grnn_ctx *ctx, int kind, int64_t batch, int64_t steps,
                      const void *const *ins, void *const *outs) {
    if (!ctx) return GRNN_E_ARG;
    ctx->error[0] = 0;
    int found = -1;
    int code = grnn_find(ctx, kind, &found);
    if (code) return code;
    const grnn_program *p = &grnn_programs[found];
    int64_t fixed = grnn_fixed_batch(p);
    if (batch < 0 || batch >= GRNN_MAX_DIM || (fixed >= 0 && batch != fixed))
        return grnn_fail(ctx, GRNN_E_SHAPE, fixed >= 0 ? "B=%lld: the model's batch size is "
                         "fixed at %lld" : "B=%lld: must lie in [0, 2**31)", (long long)batch,
                         (long long)fixed);
    if (steps < 0 || steps >= GRNN_MAX_DIM || (!p->has_time && steps != 0))
        return grnn_fail(ctx, GRNN_E_SHAPE, p->has_time ? "T=%lld: must lie in [0, 2**31)"
                         : "T=%lld: the model has no time dim, pass T=0", (long long)steps);
    grnn_tensor in[GRNN_MAX_IO], out[GRNN_MAX_IO];
    int n_in = p->n_in - p->n_state, n_out = p->n_out - p->n_state;
    for (int j = 0; j < n_in + n_out; j++) {
        const grnn_port *port = j < n_in ? &p->ins[j] : &p->outs[j - n_in];
        grnn_tensor *t = j < n_in ? &in[j] : &out[j - n_in];
        memset(t, 0, sizeof *t);
        t->data = j < n_in ? (void *)ins[j] : outs[j - n_in];
        t->dtype = port->dtype;
        t->rank = port->rank;
        for (int a = 0; a < port->rank; a++)
            t->shape[a] = port->dims[a] == GRNN_T ? steps
                          : port->dims[a] == GRNN_B ? batch : port->dims[a];
    }
    int64_t size[2];
    code = grnn_check_call(ctx, p, in, n_in, out, n_out, size);
    if (code) return code;
    size[0] = p->has_batch ? batch : size[0];
    return grnn_dispatch(ctx, found, in, out, size);
}

/* ---------------------------------------------------------------- introspection */

int GRNN_API(num_inputs)(int kind) {
    int i = kind == GRNN_KIND_INIT ? -1 : grnn_of_kind(kind);
    return i >= 0 ? grnn_programs[i].n_in - grnn_programs[i].n_state : -1;
}

int GRNN_API(num_outputs)(int kind) {
    int i = kind == GRNN_KIND_INIT ? -1 : grnn_of_kind(kind);
    return i >= 0 ? grnn_programs[i].n_out - grnn_programs[i].n_state : -1;
}

int GRNN_API(port)(int kind, int64_t batch, int output, int i, const char **name,
                   int32_t *dtype, int32_t *rank, int64_t *dims) {
    int k = kind == GRNN_KIND_INIT ? -1 : grnn_of_kind(kind);
    if (k < 0) return GRNN_E_UNSUPPORTED;
    const grnn_program *p = &grnn_programs[k];
    if (batch >= 0 && !GRNN_API(supports)(kind, batch)) return GRNN_E_SHAPE;
    int n = output ? p->n_out - p->n_state : p->n_in - p->n_state;
    if (i < 0 || i >= n) return GRNN_E_ARG;
    const grnn_port *port = output ? &p->outs[i] : &p->ins[i];
    if (name) *name = port->name;
    if (dtype) *dtype = port->dtype;
    if (rank) *rank = port->rank;
    if (dims)
        for (int a = 0; a < port->rank; a++)
            dims[a] = port->dims[a] == GRNN_B && batch >= 0 ? batch : port->dims[a];
    return GRNN_OK;
}
