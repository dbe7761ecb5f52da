/*
 * mcuquant builtin runtime: initialization and invocation (implements mq_runtime.h).
 *
 * Design: the device reads the .tflite flatbuffer itself, with a bounds-checked reader
 * (mq_flatbuffer.c), instead of tables precomputed at export time. Why:
 *  - One artifact. The exported C array is the .tflite file byte for byte, the same one the TFLM
 *    backend consumes and whose SHA-256 the serial handshake reports; there is no second model
 *    format whose version, generator and struct layout (32- vs 64-bit, compiler packing) would
 *    have to be kept in step with the runtime.
 *  - A model can come from anywhere at run time (flash partition, serial upload), not only from
 *    a build that ran the exporter.
 *  - Safety does not depend on trusting a generator: every offset, length and index is checked
 *    when the model is loaded, so a corrupted or hostile array yields an error code, and the
 *    kernels' check() functions validate shapes and quantization against what eval() indexes.
 *  - Cost: about 3 KB of code for the reader and loader, an init-time parse, and the metadata in
 *    RAM, inside the arena: 44 B per tensor and 36 B per operator on a 32-bit core, plus 4 B per
 *    operand reference. Weights, shapes and quantization vectors are never copied: tensors point
 *    into the model, and operator options are read from it again whenever mq_init needs them
 *    (eval() finds what it uses in its prepared data). What operators derive from the model once (prepare(): multipliers, folded biases)
 *    is the one exception to "no second artifact": the export may put it in flash, made by this
 *    same code on the host and bound to the model by SHA-256 (mq_init_prepared), or mq_init
 *    computes it into the arena.
 *
 * mq_init in two passes: the first validates the whole model without memory and counts what the
 * metadata needs; if the arena can hold the metadata, the second stores it there, derives the
 * tensor lifetimes (checking the data flow), runs every operator's check(), places the
 * activations (mq_planner.c) and points the tensors at them.
 */
#include <string.h>

#include "mq_internal.h"
#include "mq_sha256.h"

/* The prepared-data blob's header: magic, data bytes, SHA-256(model || data), zeros. */
static const uint8_t prepared_magic[4] = {'M', 'Q', 'P', '1'};

/* a + b, saturating (layout sizes computed from hostile counts must not wrap). */
static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t section(uint64_t count, uint64_t size)
{
    if (size != 0 && count > UINT64_MAX / size) return UINT64_MAX;
    return add_sat(count * size, MQ_ARENA_ALIGN - 1u) & ~(uint64_t)(MQ_ARENA_ALIGN - 1u);
}

void mq_compute_layout(uint32_t ntensors, uint32_t nops, uint64_t nio, uint32_t nindices, uint32_t nplanned,
                       uint64_t sizeof_tensor, uint64_t sizeof_op, uint64_t sizeof_ptr,
                       uint64_t sizeof_plan_entry, mq_layout *out)
{
    uint64_t off = 0;
    out->tensors = off;
    off = add_sat(off, section(ntensors, sizeof_tensor));
    out->ops = off;
    off = add_sat(off, section(nops, sizeof_op));
    out->io = off;
    off = add_sat(off, section(nio, sizeof_ptr));
    out->indices = off;
    off = add_sat(off, section(nindices, sizeof(int32_t)));
    out->total = off;
    out->plan_entries = section((uint64_t)ntensors + nops, sizeof(uint16_t));
    out->plan = add_sat(out->plan_entries, section(nplanned, sizeof_plan_entry));
}

/* Metadata, a work area of max(activations, plan entries), the prepared data. */
static uint64_t arena_total(const mq_layout *layout, uint64_t activations, uint64_t prepared)
{
    return add_sat(add_sat(layout->total, activations > layout->plan ? activations : layout->plan), prepared);
}

uint64_t mq_arena_bytes(const mq_interpreter *it, uint32_t sizeof_tensor, uint32_t sizeof_op,
                        uint32_t sizeof_ptr, uint32_t sizeof_plan_entry)
{
    mq_layout layout;
    uint64_t nio = 0;
    if (it == NULL || !it->ready) return 0;
    for (uint32_t i = 0; i < it->nops; ++i) nio += (uint64_t)it->ops[i].ctx.ninputs + it->ops[i].ctx.noutputs;
    mq_compute_layout(it->ntensors, it->nops, nio, it->ninputs + it->noutputs, mq_plan_count(it), sizeof_tensor,
                      sizeof_op, sizeof_ptr, sizeof_plan_entry, &layout);
    return arena_total(&layout, it->activation_bytes, it->prepared_bytes);
}

static mq_status fail(mq_interpreter *it, mq_status s, const char *detail)
{
    it->error_detail = detail;
    return s;
}

/* What a check() or eval() failure means, for error_detail (the modules return a status only). */
static const char *op_failure_detail(mq_status s)
{
    switch (s) {
    case MQ_ERR_MALFORMED: return "operator inputs or outputs malformed (count, missing tensor)";
    case MQ_ERR_UNSUPPORTED_OPTION: return "option value not supported by this operator";
    case MQ_ERR_UNSUPPORTED_TYPE: return "tensor type not supported by this operator";
    case MQ_ERR_SHAPE: return "tensor shapes inconsistent for this operator";
    case MQ_ERR_QUANTIZATION: return "missing or invalid scale or zero point for this operator";
    case MQ_ERR_LIMIT: return "size limit of this operator exceeded";
    default: return "operator failed";
    }
}

/* Bytes of an operator's prepared data, 4-byte aligned (0 without prepare()). After check(). */
static mq_status prepared_size(const mq_op *op, uint32_t *aligned)
{
    uint32_t bytes = 0;
    mq_status s = op->kernel->prepare != NULL ? op->kernel->prepare(&op->ctx, NULL, &bytes) : MQ_OK;
    *aligned = (bytes + 3u) & ~3u; /* bytes <= 9 x a tensor dimension: far from wrapping */
    return s;
}

mq_status mq_init(mq_interpreter *it, const uint8_t *model, size_t model_len, uint8_t *arena, size_t arena_len)
{
    return mq_init_ex(it, model, model_len, NULL, 0, arena, arena_len, 0);
}

mq_status mq_init_prepared(mq_interpreter *it, const uint8_t *model, size_t model_len, const uint8_t *prepared,
                           size_t prepared_len, uint8_t *arena, size_t arena_len)
{
    if (prepared == NULL) {
        if (it != NULL) memset(it, 0, sizeof *it);
        return MQ_ERR_BAD_ARGUMENT;
    }
    return mq_init_ex(it, model, model_len, prepared, prepared_len, arena, arena_len, 0);
}

static uint32_t load_u32_le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The blob holds `data_bytes` of prepared data made for this model, undamaged. */
static int prepared_blob_ok(const mq_interpreter *it, const uint8_t *blob, size_t len, uint64_t data_bytes)
{
    uint8_t digest[32];
    if (len < MQ_PREPARED_HEADER_BYTES || (uint64_t)(len - MQ_PREPARED_HEADER_BYTES) != data_bytes) return 0;
    if (memcmp(blob, prepared_magic, 4) != 0 || load_u32_le(blob + 4) != data_bytes) return 0;
    mq_sha256_pair(it->model, it->model_len, blob + MQ_PREPARED_HEADER_BYTES, (size_t)data_bytes, digest);
    return memcmp(digest, blob + 8, 32) == 0;
}

size_t mq_prepared_export(const mq_interpreter *it, uint8_t *out, size_t cap)
{
    const uint8_t *data;
    size_t n;
    if (it == NULL || !it->ready || it->prepared_external) return 0;
    n = MQ_PREPARED_HEADER_BYTES + it->prepared_bytes;
    if (out == NULL || cap < n) return n;
    data = it->arena + (it->arena_required - it->prepared_bytes);
    memset(out, 0, MQ_PREPARED_HEADER_BYTES);
    memcpy(out, prepared_magic, 4);
    out[4] = (uint8_t)it->prepared_bytes;
    out[5] = (uint8_t)(it->prepared_bytes >> 8);
    out[6] = (uint8_t)(it->prepared_bytes >> 16);
    out[7] = (uint8_t)(it->prepared_bytes >> 24);
    memcpy(out + MQ_PREPARED_HEADER_BYTES, data, it->prepared_bytes);
    mq_sha256_pair(it->model, it->model_len, data, it->prepared_bytes, out + 8);
    return n;
}

mq_status mq_init_ex(mq_interpreter *it, const uint8_t *model, size_t model_len, const uint8_t *prepared_blob,
                     size_t prepared_len, uint8_t *arena, size_t arena_len, uint32_t flags)
{
    mq_model m;
    mq_layout layout;
    mq_status s;

    if (it == NULL) return MQ_ERR_BAD_ARGUMENT;
    memset(it, 0, sizeof *it);
    it->error_op = -1;
    it->error_detail = "";
    /* 4-byte alignment of the model keeps int32 constants (biases, paddings) aligned. */
    if (model == NULL) return fail(it, MQ_ERR_BAD_ARGUMENT, "model is NULL");
    if ((uintptr_t)model % 4u != 0) return fail(it, MQ_ERR_BAD_ARGUMENT, "model not 4-byte aligned");
    if (arena == NULL && arena_len != 0) return fail(it, MQ_ERR_BAD_ARGUMENT, "arena is NULL");
    if ((uintptr_t)arena % MQ_ARENA_ALIGN != 0) return fail(it, MQ_ERR_BAD_ARGUMENT, "arena not 16-byte aligned");
    it->model = model;
    it->model_len = model_len;
    it->arena = arena;
    it->arena_len = arena_len;

    /* Pass 1: validate and count, no memory needed. */
    s = mq_model_open(it, &m);
    if (s == MQ_OK) s = mq_model_load(it, &m, NULL);
    if (s != MQ_OK) return s;
    const uint64_t nindices = (uint64_t)m.inputs.len + m.outputs.len;
    if (m.nio > UINT32_MAX || nindices > UINT32_MAX) return fail(it, MQ_ERR_LIMIT, "too many tensor references");
    if (m.operators.len > MQ_PLAN_MAX_OPS || m.nplanned > MQ_PLAN_MAX_ENTRIES)
        return fail(it, MQ_ERR_LIMIT, "more than 32766 operators or 32767 activation tensors and scratch blocks");
    mq_compute_layout(m.tensors.len, m.operators.len, m.nio, (uint32_t)nindices, (uint32_t)m.nplanned,
                      sizeof(mq_tensor), sizeof(mq_op), sizeof(mq_tensor *), sizeof(mq_plan_entry), &layout);
    if (layout.total > (uint64_t)SIZE_MAX / 2u) return fail(it, MQ_ERR_LIMIT, "model metadata too large");
    if (arena_len < add_sat(layout.total, layout.plan)) {
        /* Without room for the metadata and the planner the plan cannot be made: report an upper
         * bound (every activation in its own slot); an arena of that size yields the exact figure. */
        const uint64_t bound = arena_total(&layout, m.activation_bound, m.prepared_bound);
        it->arena_required = (uint64_t)(size_t)bound == bound ? (size_t)bound : SIZE_MAX;
        return fail(it, MQ_ERR_ARENA_TOO_SMALL, "arena too small for the model metadata (arena_required is an upper bound)");
    }

    /* Pass 2: the metadata into the arena. */
    mq_model_dest dest;
    dest.tensors = (mq_tensor *)(void *)(arena + layout.tensors);
    dest.ops = (mq_op *)(void *)(arena + layout.ops);
    dest.io = (mq_tensor **)(void *)(arena + layout.io);
    dest.indices = (int32_t *)(void *)(arena + layout.indices);
    mq_plan plan; /* in the work area, until placed */
    plan.slot = (uint16_t *)(void *)(arena + layout.total);
    plan.entry = (mq_plan_entry *)(void *)(arena + layout.total + layout.plan_entries);
    it->tensors = dest.tensors;
    it->ntensors = m.tensors.len;
    it->ops = dest.ops;
    it->nops = m.operators.len;
    it->input_index = dest.indices;
    it->ninputs = m.inputs.len;
    it->output_index = dest.indices + m.inputs.len;
    it->noutputs = m.outputs.len;
    s = mq_model_load(it, &m, &dest);
    if (s != MQ_OK) return s;

    s = mq_plan_lifetimes(it, &plan, (flags & MQ_INIT_PRESERVE_ALL) != 0);
    if (s != MQ_OK) return s;
    uint64_t prepared = 0;
    for (uint32_t i = 0; i < it->nops; ++i) {
        mq_op *op = &it->ops[i];
        mq_op_options options;
        uint32_t bytes = 0;
        uint32_t scratch = 0;
        s = mq_model_options(it, &m, i, &options);
        op->ctx.options = &options;
        if (s == MQ_OK) s = op->kernel->check(&op->ctx);
        if (s == MQ_OK) s = prepared_size(op, &bytes);
        /* Writing over an input loses it: never when every tensor is to be kept. */
        if (s == MQ_OK && op->kernel->in_place != NULL && !(flags & MQ_INIT_PRESERVE_ALL)) {
            const int32_t k = op->kernel->in_place(&op->ctx);
            if (k >= 0 && (uint32_t)k < op->ctx.ninputs && op->ctx.inputs[k] != NULL && op->ctx.noutputs > 0)
                op->ctx.in_place = mq_plan_share(it, &plan, i, (uint32_t)(op->ctx.inputs[k] - it->tensors),
                                                 (uint32_t)(op->ctx.outputs[0] - it->tensors));
        }
        if (s == MQ_OK && op->kernel->scratch != NULL) s = op->kernel->scratch(&op->ctx, &scratch);
        if (s == MQ_OK && scratch > m.scratch_limit) s = MQ_ERR_LIMIT;
        op->ctx.options = NULL;
        if (s != MQ_OK) {
            it->error_op = (int32_t)i;
            return fail(it, s, op_failure_detail(s));
        }
        mq_plan_scratch(it, &plan, i, scratch);
        prepared = add_sat(prepared, bytes);
    }
    prepared = (prepared + (MQ_ARENA_ALIGN - 1u)) & ~(uint64_t)(MQ_ARENA_ALIGN - 1u);
    if ((uint64_t)(size_t)prepared != prepared) return fail(it, MQ_ERR_LIMIT, "prepared data larger than the address space");
    if (prepared_blob != NULL) { /* computed ahead (flash): nothing of it in the arena */
        if ((uintptr_t)prepared_blob % 4u != 0) return fail(it, MQ_ERR_BAD_ARGUMENT, "prepared data not 4-byte aligned");
        if (!prepared_blob_ok(it, prepared_blob, prepared_len, prepared))
            return fail(it, MQ_ERR_PREPARED, "prepared data not made for this model, or damaged");
        it->prepared_external = 1;
        prepared = 0;
    }
    it->prepared_bytes = (size_t)prepared;

    s = mq_plan_place(it, &plan);
    if (s != MQ_OK) return s;
    const uint64_t required = arena_total(&layout, it->activation_bytes, prepared);
    if ((uint64_t)(size_t)required != required) return fail(it, MQ_ERR_LIMIT, "arena larger than the address space");
    it->arena_required = (size_t)required;
    if (arena_len < required) return fail(it, MQ_ERR_ARENA_TOO_SMALL, "arena too small for the activations");

    /* The activations overlay the plan: every offset is read before any activation is written. */
    uint8_t *activations = arena + layout.total;
    for (uint32_t t = 0; t < it->ntensors; ++t) {
        mq_tensor *tensor = &it->tensors[t];
        if (!tensor->is_constant) tensor->data = mq_plan_address(&plan, t, activations);
    }
    for (uint32_t i = 0; i < it->nops; ++i) it->ops[i].ctx.scratch = mq_plan_address(&plan, it->ntensors + i, activations);
    for (uint32_t t = 0; t < it->ntensors; ++t) {
        mq_tensor *tensor = &it->tensors[t];
        /* A variable tensor starts at zero, an int8 one at its zero point (TFLM's ResetVariableTensors). */
        if (tensor->reserved && tensor->data != NULL && !tensor->is_constant)
            memset(tensor->data, tensor->type == MQ_INT8 ? tensor->zero_point : 0, tensor->bytes);
    }

    /* What each operator computes once: after the work area (dead plan entries are not in the way),
     * or already in the blob, in the same layout. */
    uint8_t *next = it->prepared_external ? (uint8_t *)(uintptr_t)(prepared_blob + MQ_PREPARED_HEADER_BYTES)
                                          : arena + (required - prepared);
    for (uint32_t i = 0; i < it->nops; ++i) {
        mq_op *op = &it->ops[i];
        mq_op_options options;
        uint32_t bytes = 0, unused;
        if (op->kernel->prepare == NULL) continue;
        s = mq_model_options(it, &m, i, &options); /* read in the check loop already */
        op->ctx.options = &options;
        if (s == MQ_OK) s = prepared_size(op, &bytes);
        if (s == MQ_OK && !it->prepared_external) s = op->kernel->prepare(&op->ctx, next, &unused);
        op->ctx.options = NULL;
        if (s != MQ_OK) {
            it->error_op = (int32_t)i;
            return fail(it, s, op_failure_detail(s));
        }
        op->ctx.prepared = next;
        next += bytes;
    }
    it->ready = 1;
    return MQ_OK;
}

mq_status mq_invoke(mq_interpreter *it)
{
    if (it == NULL) return MQ_ERR_BAD_ARGUMENT;
    if (!it->ready) return MQ_ERR_NOT_READY;
    it->error_op = -1;
    it->error_detail = "";
    for (uint32_t i = 0; i < it->nops; ++i) {
        const mq_op *op = &it->ops[i];
        const mq_status s = op->kernel->eval(&op->ctx);
        if (s != MQ_OK) {
            it->error_op = (int32_t)i;
            return fail(it, s, op_failure_detail(s));
        }
        if (it->progress != NULL) it->progress(it->progress_ctx);
    }
    return MQ_OK;
}

size_t mq_interpreter_size(void) { return sizeof(mq_interpreter); }

void mq_set_progress(mq_interpreter *it, void (*fn)(void *ctx), void *ctx)
{
    if (it == NULL) return;
    it->progress = fn;
    it->progress_ctx = ctx;
}

uint32_t mq_input_count(const mq_interpreter *it)
{
    return it != NULL && it->ready ? it->ninputs : 0;
}

uint32_t mq_output_count(const mq_interpreter *it)
{
    return it != NULL && it->ready ? it->noutputs : 0;
}

mq_tensor *mq_input(mq_interpreter *it, uint32_t i)
{
    if (it == NULL || !it->ready || i >= it->ninputs) return NULL;
    return &it->tensors[it->input_index[i]];
}

mq_tensor *mq_output(mq_interpreter *it, uint32_t i)
{
    if (it == NULL || !it->ready || i >= it->noutputs) return NULL;
    return &it->tensors[it->output_index[i]];
}

float mq_tensor_scale_at(const mq_tensor *t, uint32_t i)
{
    float scale;
    if (t == NULL || i >= t->nscales) return 0.0f;
    const uint32_t bits = mq_fb_load_u32(t->scales_raw + 4u * (size_t)i);
    memcpy(&scale, &bits, sizeof scale);
    return scale;
}

int64_t mq_tensor_zero_point_at(const mq_tensor *t, uint32_t i)
{
    int64_t zero_point;
    if (t == NULL || t->nzero_points == 0) return 0;
    /* As in TFLM: a single zero point applies to every channel. */
    const uint32_t k = t->nzero_points == t->nscales ? i : 0u;
    if (k >= t->nzero_points) return 0;
    const uint64_t bits = mq_fb_load_u64(t->zero_points_raw + 8u * (size_t)k);
    memcpy(&zero_point, &bits, sizeof zero_point);
    return zero_point;
}

uint32_t mq_tensor_elements(const mq_tensor *t)
{
    uint32_t n = 1;
    for (uint8_t d = 0; d < t->ndims && d < MQ_MAX_DIMS; ++d) n *= (uint32_t)t->dims[d];
    return n;
}

const char *mq_status_name(mq_status s)
{
    switch (s) {
    case MQ_OK: return "MQ_OK";
    case MQ_ERR_BAD_ARGUMENT: return "MQ_ERR_BAD_ARGUMENT";
    case MQ_ERR_TRUNCATED: return "MQ_ERR_TRUNCATED";
    case MQ_ERR_MALFORMED: return "MQ_ERR_MALFORMED";
    case MQ_ERR_UNSUPPORTED_VERSION: return "MQ_ERR_UNSUPPORTED_VERSION";
    case MQ_ERR_UNSUPPORTED_OP: return "MQ_ERR_UNSUPPORTED_OP";
    case MQ_ERR_UNSUPPORTED_OPTION: return "MQ_ERR_UNSUPPORTED_OPTION";
    case MQ_ERR_UNSUPPORTED_TYPE: return "MQ_ERR_UNSUPPORTED_TYPE";
    case MQ_ERR_SHAPE: return "MQ_ERR_SHAPE";
    case MQ_ERR_QUANTIZATION: return "MQ_ERR_QUANTIZATION";
    case MQ_ERR_LIMIT: return "MQ_ERR_LIMIT";
    case MQ_ERR_ARENA_TOO_SMALL: return "MQ_ERR_ARENA_TOO_SMALL";
    case MQ_ERR_NOT_READY: return "MQ_ERR_NOT_READY";
    case MQ_ERR_PREPARED: return "MQ_ERR_PREPARED";
    }
    return "MQ_ERR_UNKNOWN";
}
