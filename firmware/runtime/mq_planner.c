/*
 * Arena planning by tensor lifetimes.
 *
 * A non-constant tensor is live from the first operator step that touches it to the last one
 * (graph inputs and variable tensors from step 0, graph outputs and variable tensors to the last
 * step). Tensors are placed largest first (ties: earlier first use, then lower index) at the
 * lowest MQ_ARENA_ALIGN-aligned offset that overlaps no already placed tensor whose lifetime
 * overlaps; the activation area is the highest end, rounded up to MQ_ARENA_ALIGN. An operator's
 * scratch memory (an im2col buffer) is placed the same way, as a block live at that operator's
 * step only, so this is all the run-time memory besides the metadata and the prepared data.
 * An operator's output that may be written over an input the graph no longer needs afterwards
 * (mq_plan_share) takes that input's memory: the pair is placed as one block, live from the
 * first to the last step of either, as large as the larger.
 *
 * O(n log n) ordering (heapsort: no recursion) and O(n^2) placement for n planned tensors;
 * working memory is the plan array in the arena (see mq_internal.h).
 */
#include <string.h>

#include "mq_internal.h"

static uint64_t align_up(uint64_t n)
{
    return (n + (MQ_ARENA_ALIGN - 1u)) & ~(uint64_t)(MQ_ARENA_ALIGN - 1u);
}

static void touch(mq_plan_entry *e, int32_t step)
{
    if (step < e->first) e->first = step;
    if (step > e->last) e->last = step;
}

static uint32_t index_of(const mq_interpreter *it, const mq_tensor *t)
{
    return (uint32_t)(t - it->tensors);
}

static mq_status flow_error(mq_interpreter *it, int32_t op, const char *detail)
{
    it->error_op = op;
    it->error_detail = detail;
    return MQ_ERR_MALFORMED;
}

mq_status mq_plan_lifetimes(mq_interpreter *it, mq_plan_entry *plan, int preserve_all)
{
    const int32_t end = it->nops > 0 ? (int32_t)(it->nops - 1u) : 0;

    for (uint32_t t = 0; t < it->ntensors + it->nops; ++t) {
        plan[t].bytes = t < it->ntensors ? it->tensors[t].bytes : 0u;
        plan[t].first = INT32_MAX;
        plan[t].last = -1;
        plan[t].writer = INT32_MAX;
        plan[t].offset = 0;
        plan[t].shares = -1;
    }
    for (uint32_t k = 0; k < it->ninputs; ++k) {
        mq_plan_entry *e = &plan[it->input_index[k]];
        e->writer = -1;
        touch(e, 0);
    }
    for (uint32_t t = 0; t < it->ntensors; ++t) {
        /* Variable tensors keep their value between invocations (reset by mq_init, as TFLM). */
        if (it->tensors[t].reserved && !it->tensors[t].is_constant) {
            plan[t].writer = -1;
            touch(&plan[t], 0);
            touch(&plan[t], end);
        }
    }
    for (uint32_t i = 0; i < it->nops; ++i) {
        const mq_op_ctx *ctx = &it->ops[i].ctx;
        const int32_t step = (int32_t)i;
        for (uint32_t k = 0; k < ctx->ninputs; ++k) {
            const mq_tensor *in = ctx->inputs[k];
            if (in == NULL || in->is_constant) continue;
            mq_plan_entry *e = &plan[index_of(it, in)];
            if (e->writer == INT32_MAX)
                return flow_error(it, step, "operator reads a tensor no earlier operator writes");
            touch(e, step);
        }
        for (uint32_t k = 0; k < ctx->noutputs; ++k) {
            const mq_tensor *out = ctx->outputs[k];
            if (out->is_constant) return flow_error(it, step, "operator writes a constant tensor");
            for (uint32_t j = 0; j < ctx->ninputs; ++j)
                if (ctx->inputs[j] == out) return flow_error(it, step, "operator output is also one of its inputs");
            mq_plan_entry *e = &plan[index_of(it, out)];
            if (e->writer == INT32_MAX) e->writer = step;
            touch(e, step);
        }
    }
    for (uint32_t k = 0; k < it->noutputs; ++k) {
        const int32_t t = it->output_index[k];
        if (it->tensors[t].is_constant) continue;
        if (plan[t].writer == INT32_MAX) return flow_error(it, -1, "graph output is never written");
        touch(&plan[t], end);
    }
    if (preserve_all) {
        for (uint32_t t = 0; t < it->ntensors; ++t) {
            if (plan[t].last < 0) continue;
            plan[t].first = 0;
            plan[t].last = end;
        }
    }
    return MQ_OK;
}

int mq_plan_share(mq_interpreter *it, mq_plan_entry *plan, uint32_t op, uint32_t in, uint32_t out)
{
    const mq_tensor *t = &it->tensors[in];
    uint32_t root = in;
    if (t->is_constant || t->reserved || plan[in].writer < 0 || plan[in].last != (int32_t)op) return 0;
    if (plan[out].shares >= 0 || plan[out].writer != (int32_t)op) return 0;
    for (uint32_t k = 0; k < it->noutputs; ++k)
        if ((uint32_t)it->output_index[k] == in) return 0;
    while (plan[root].shares >= 0) root = (uint32_t)plan[root].shares; /* a chain of in-place steps */
    plan[out].shares = (int32_t)root;
    if (plan[out].first < plan[root].first) plan[root].first = plan[out].first;
    if (plan[out].last > plan[root].last) plan[root].last = plan[out].last;
    if (plan[out].bytes > plan[root].bytes) plan[root].bytes = plan[out].bytes;
    return 1;
}

void mq_plan_scratch(mq_interpreter *it, mq_plan_entry *plan, uint32_t op, uint32_t bytes)
{
    mq_plan_entry *e = &plan[it->ntensors + op];
    e->bytes = bytes;
    e->writer = (int32_t)op;
    e->first = bytes > 0 ? (int32_t)op : INT32_MAX;
    e->last = bytes > 0 ? (int32_t)op : -1;
}

/* Placement order: larger first, then earlier first use, then lower index (a total order). */
static int before(const mq_plan_entry *plan, uint32_t a, uint32_t b)
{
    if (plan[a].bytes != plan[b].bytes) return plan[a].bytes > plan[b].bytes;
    if (plan[a].first != plan[b].first) return plan[a].first < plan[b].first;
    return a < b;
}

static void sift_down(mq_plan_entry *plan, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2u * root + 1u;
        if (child >= n) return;
        if (child + 1u < n && before(plan, plan[child].order, plan[child + 1u].order)) ++child;
        if (!before(plan, plan[root].order, plan[child].order)) return;
        const uint32_t tmp = plan[root].order;
        plan[root].order = plan[child].order;
        plan[child].order = tmp;
        root = child;
    }
}

/* Heapsort of plan[0..n).order into placement order. */
static void sort_order(mq_plan_entry *plan, size_t n)
{
    for (size_t i = n / 2u; i > 0; --i) sift_down(plan, i - 1u, n);
    for (size_t end = n; end > 1u; --end) {
        const uint32_t tmp = plan[0].order;
        plan[0].order = plan[end - 1u].order;
        plan[end - 1u].order = tmp;
        sift_down(plan, 0, end - 1u);
    }
}

mq_status mq_plan_place(mq_interpreter *it, mq_plan_entry *plan)
{
    size_t n = 0;
    for (uint32_t t = 0; t < it->ntensors + it->nops; ++t)
        if (plan[t].last >= 0 && plan[t].shares < 0) plan[n++].order = t;
    sort_order(plan, n);

    uint64_t high = 0;
    size_t nplaced = 0;
    for (size_t k = 0; k < n; ++k) {
        const uint32_t t = plan[k].order;
        const uint64_t size = plan[t].bytes;
        uint64_t offset = 0;
        /* First fit among the placed tensors whose lifetimes overlap, walked by offset. */
        for (size_t j = 0; j < nplaced; ++j) {
            const uint32_t p = plan[j].by_offset;
            const uint64_t p_size = plan[p].bytes;
            if (p_size == 0 || plan[p].first > plan[t].last || plan[t].first > plan[p].last) continue;
            if (offset + size <= plan[p].offset) break;
            const uint64_t p_end = align_up((uint64_t)plan[p].offset + p_size);
            if (p_end > offset) offset = p_end;
        }
        if (offset + size > UINT32_MAX) {
            it->error_detail = "activations need more than 4 GiB";
            return MQ_ERR_LIMIT;
        }
        plan[t].offset = (uint32_t)offset;
        /* Keep by_offset sorted (insertion; equal offsets keep placement order). */
        size_t j = nplaced;
        while (j > 0 && plan[plan[j - 1u].by_offset].offset > offset) {
            plan[j].by_offset = plan[j - 1u].by_offset;
            --j;
        }
        plan[j].by_offset = t;
        ++nplaced;
        if (offset + size > high) high = offset + size;
    }
    for (uint32_t t = 0; t < it->ntensors; ++t)
        if (plan[t].shares >= 0) plan[t].offset = plan[plan[t].shares].offset;
    high = align_up(high);
    if (high > SIZE_MAX) {
        it->error_detail = "activations do not fit in the address space";
        return MQ_ERR_LIMIT;
    }
    it->activation_bytes = (size_t)high;
    return MQ_OK;
}
