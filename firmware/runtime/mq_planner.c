/*
 * Arena planning by tensor lifetimes.
 *
 * A non-constant tensor is live from the first operator step that touches it to the last one
 * (graph inputs and variable tensors from step 0, graph outputs and variable tensors to the last
 * step). Tensors are placed largest first (ties: earlier first use, then lower slot) at the
 * lowest MQ_ARENA_ALIGN-aligned offset that overlaps no already placed tensor whose lifetime
 * overlaps; the activation area is the highest end, rounded up to MQ_ARENA_ALIGN. An operator's
 * scratch memory (an im2col buffer) is placed the same way, as a block live at that operator's
 * step only, so this is all the run-time memory besides the metadata and the prepared data.
 * An operator's output that may be written over an input the graph no longer needs afterwards
 * (mq_plan_share) takes that input's memory: the pair is placed as one block, live from the
 * first to the last step of either, as large as the larger.
 *
 * O(n log n) ordering (heapsort: no recursion) and O(n^2) placement for n planned blocks;
 * working memory is the plan in the arena's work area (see mq_internal.h): entries only for what
 * is placed (non-constant tensors, operators that may ask for scratch memory), 20 bytes each.
 */
#include <string.h>

#include "mq_internal.h"

#define NEVER INT16_MAX /* first step of a block never live, or writer of a tensor never written */

static uint64_t align_up(uint64_t n)
{
    return (n + (MQ_ARENA_ALIGN - 1u)) & ~(uint64_t)(MQ_ARENA_ALIGN - 1u);
}

static void touch(mq_plan_entry *e, int32_t step)
{
    if (step < e->first) e->first = (int16_t)step;
    if (step > e->last) e->last = (int16_t)step;
}

static mq_plan_entry *tensor_entry(const mq_interpreter *it, const mq_plan *plan, const mq_tensor *t)
{
    const uint16_t slot = plan->slot[t - it->tensors];
    return slot == MQ_PLAN_NONE ? NULL : &plan->entry[slot];
}

static mq_status flow_error(mq_interpreter *it, int32_t op, const char *detail)
{
    it->error_op = op;
    it->error_detail = detail;
    return MQ_ERR_MALFORMED;
}

uint32_t mq_plan_count(const mq_interpreter *it)
{
    uint32_t n = 0;
    for (uint32_t t = 0; t < it->ntensors; ++t) n += !it->tensors[t].is_constant;
    for (uint32_t i = 0; i < it->nops; ++i) n += it->ops[i].kernel->scratch != NULL;
    return n;
}

mq_status mq_plan_lifetimes(mq_interpreter *it, mq_plan *plan, int preserve_all)
{
    const int32_t end = it->nops > 0 ? (int32_t)(it->nops - 1u) : 0;
    uint32_t n = 0;

    for (uint32_t k = 0; k < it->ntensors + it->nops; ++k) {
        const int planned = k < it->ntensors ? !it->tensors[k].is_constant
                                             : it->ops[k - it->ntensors].kernel->scratch != NULL;
        plan->slot[k] = planned ? (uint16_t)n : MQ_PLAN_NONE;
        if (!planned) continue;
        mq_plan_entry *e = &plan->entry[n++];
        e->bytes = k < it->ntensors ? it->tensors[k].bytes : 0u;
        e->offset = 0;
        e->shares = -1;
        e->first = NEVER;
        e->last = -1;
        e->writer = NEVER;
    }
    plan->nentries = n;
    for (uint32_t k = 0; k < it->ninputs; ++k) {
        mq_plan_entry *e = tensor_entry(it, plan, &it->tensors[it->input_index[k]]); /* never a constant */
        e->writer = -1;
        touch(e, 0);
    }
    for (uint32_t t = 0; t < it->ntensors; ++t) {
        /* Variable tensors keep their value between invocations (reset by mq_init, as TFLM). */
        if (it->tensors[t].reserved && !it->tensors[t].is_constant) {
            mq_plan_entry *e = tensor_entry(it, plan, &it->tensors[t]);
            e->writer = -1;
            touch(e, 0);
            touch(e, end);
        }
    }
    for (uint32_t i = 0; i < it->nops; ++i) {
        const mq_op_ctx *ctx = &it->ops[i].ctx;
        const int32_t step = (int32_t)i;
        for (uint32_t k = 0; k < ctx->ninputs; ++k) {
            const mq_tensor *in = ctx->inputs[k];
            if (in == NULL || in->is_constant) continue;
            mq_plan_entry *e = tensor_entry(it, plan, in);
            if (e->writer == NEVER) return flow_error(it, step, "operator reads a tensor no earlier operator writes");
            touch(e, step);
        }
        for (uint32_t k = 0; k < ctx->noutputs; ++k) {
            const mq_tensor *out = ctx->outputs[k];
            if (out->is_constant) return flow_error(it, step, "operator writes a constant tensor");
            for (uint32_t j = 0; j < ctx->ninputs; ++j)
                if (ctx->inputs[j] == out) return flow_error(it, step, "operator output is also one of its inputs");
            mq_plan_entry *e = tensor_entry(it, plan, out);
            if (e->writer == NEVER) e->writer = (int16_t)step;
            touch(e, step);
        }
    }
    for (uint32_t k = 0; k < it->noutputs; ++k) {
        mq_plan_entry *e = tensor_entry(it, plan, &it->tensors[it->output_index[k]]);
        if (e == NULL) continue; /* a constant */
        if (e->writer == NEVER) return flow_error(it, -1, "graph output is never written");
        touch(e, end);
    }
    if (preserve_all) {
        for (uint32_t t = 0; t < it->ntensors; ++t) {
            mq_plan_entry *e = tensor_entry(it, plan, &it->tensors[t]);
            if (e == NULL || e->last < 0) continue;
            e->first = 0;
            e->last = (int16_t)end;
        }
    }
    return MQ_OK;
}

int mq_plan_share(mq_interpreter *it, mq_plan *plan, uint32_t op, uint32_t in, uint32_t out)
{
    const mq_tensor *t = &it->tensors[in];
    mq_plan_entry *ein = tensor_entry(it, plan, t), *eout = tensor_entry(it, plan, &it->tensors[out]);
    if (ein == NULL || eout == NULL || t->reserved || ein->writer < 0 || ein->last != (int32_t)op) return 0;
    if (eout->shares >= 0 || eout->writer != (int32_t)op) return 0;
    for (uint32_t k = 0; k < it->noutputs; ++k)
        if ((uint32_t)it->output_index[k] == in) return 0;
    uint16_t root = plan->slot[in];
    while (plan->entry[root].shares >= 0) root = (uint16_t)plan->entry[root].shares; /* a chain of in-place steps */
    mq_plan_entry *r = &plan->entry[root];
    eout->shares = (int16_t)root;
    if (eout->first < r->first) r->first = eout->first;
    if (eout->last > r->last) r->last = eout->last;
    if (eout->bytes > r->bytes) r->bytes = eout->bytes;
    return 1;
}

void mq_plan_scratch(mq_interpreter *it, mq_plan *plan, uint32_t op, uint32_t bytes)
{
    const uint16_t slot = plan->slot[it->ntensors + op];
    if (slot == MQ_PLAN_NONE) return; /* no scratch(): bytes is 0 */
    mq_plan_entry *e = &plan->entry[slot];
    e->bytes = bytes;
    e->writer = (int16_t)op;
    e->first = bytes > 0 ? (int16_t)op : NEVER;
    e->last = bytes > 0 ? (int16_t)op : -1;
}

uint8_t *mq_plan_address(const mq_plan *plan, uint32_t k, uint8_t *activations)
{
    const uint16_t slot = plan->slot[k];
    if (slot == MQ_PLAN_NONE || plan->entry[slot].last < 0) return NULL;
    return activations + plan->entry[slot].offset;
}

/* Placement order: larger first, then earlier first use, then lower slot (a total order). */
static int before(const mq_plan_entry *e, uint32_t a, uint32_t b)
{
    if (e[a].bytes != e[b].bytes) return e[a].bytes > e[b].bytes;
    if (e[a].first != e[b].first) return e[a].first < e[b].first;
    return a < b;
}

static void sift_down(mq_plan_entry *e, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2u * root + 1u;
        if (child >= n) return;
        if (child + 1u < n && before(e, e[child].order, e[child + 1u].order)) ++child;
        if (!before(e, e[root].order, e[child].order)) return;
        const uint16_t tmp = e[root].order;
        e[root].order = e[child].order;
        e[child].order = tmp;
        root = child;
    }
}

/* Heapsort of e[0..n).order into placement order. */
static void sort_order(mq_plan_entry *e, size_t n)
{
    for (size_t i = n / 2u; i > 0; --i) sift_down(e, i - 1u, n);
    for (size_t end = n; end > 1u; --end) {
        const uint16_t tmp = e[0].order;
        e[0].order = e[end - 1u].order;
        e[end - 1u].order = tmp;
        sift_down(e, 0, end - 1u);
    }
}

mq_status mq_plan_place(mq_interpreter *it, mq_plan *plan)
{
    mq_plan_entry *e = plan->entry;
    size_t n = 0;
    for (uint32_t k = 0; k < plan->nentries; ++k)
        if (e[k].last >= 0 && e[k].shares < 0) e[n++].order = (uint16_t)k;
    sort_order(e, n);

    uint64_t high = 0;
    size_t nplaced = 0;
    for (size_t k = 0; k < n; ++k) {
        const uint16_t t = e[k].order;
        const uint64_t size = e[t].bytes;
        uint64_t offset = 0;
        /* First fit among the placed blocks whose lifetimes overlap, walked by offset. */
        for (size_t j = 0; j < nplaced; ++j) {
            const uint16_t p = e[j].by_offset;
            const uint64_t p_size = e[p].bytes;
            if (p_size == 0 || e[p].first > e[t].last || e[t].first > e[p].last) continue;
            if (offset + size <= e[p].offset) break;
            const uint64_t p_end = align_up((uint64_t)e[p].offset + p_size);
            if (p_end > offset) offset = p_end;
        }
        if (offset + size > UINT32_MAX) {
            it->error_detail = "activations need more than 4 GiB";
            return MQ_ERR_LIMIT;
        }
        e[t].offset = (uint32_t)offset;
        /* Keep by_offset sorted (insertion; equal offsets keep placement order). */
        size_t j = nplaced;
        while (j > 0 && e[e[j - 1u].by_offset].offset > offset) {
            e[j].by_offset = e[j - 1u].by_offset;
            --j;
        }
        e[j].by_offset = t;
        ++nplaced;
        if (offset + size > high) high = offset + size;
    }
    for (uint32_t k = 0; k < plan->nentries; ++k)
        if (e[k].shares >= 0) e[k].offset = e[e[k].shares].offset;
    high = align_up(high);
    if (high > SIZE_MAX) {
        it->error_detail = "activations do not fit in the address space";
        return MQ_ERR_LIMIT;
    }
    it->activation_bytes = (size_t)high;
    return MQ_OK;
}
