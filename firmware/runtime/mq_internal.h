/*
 * Internals shared by the runtime's own files (mq_interpreter.c, mq_model.c, mq_planner.c,
 * mq_ops_table.c). Operator modules include mq_ops.h only.
 */
#ifndef MQ_INTERNAL_H
#define MQ_INTERNAL_H

#include "mq_flatbuffer.h"
#include "mq_ops.h"
#include "mq_runtime.h"

/* Arena offsets and sizes are multiples of this (tensor data, metadata sections, the arena). */
#define MQ_ARENA_ALIGN 16u

/* mq_tensor.reserved holds the tensor's is_variable flag (variable tensors live for the whole
 * run and are reset by mq_init as TFLM resets them: int8 to the zero point, others to 0; operator
 * modules read the flag to require state tensors, see ops/unidirectional_sequence_lstm.c). */

/* Builtin code of custom operators (rejected). */
#define MQ_OP_CUSTOM 32

/* One operator module: its check/eval pair, looked up by builtin code in mq_ops_table.c. */
typedef struct mq_kernel {
    int32_t code;
    mq_op_fn check;
    mq_op_fn eval;
    mq_prepare_fn prepare; /* NULL: nothing to compute once */
    mq_scratch_fn scratch; /* NULL: no working memory */
    mq_in_place_fn in_place; /* NULL: never writes over an input */
} mq_kernel;

/* The kernel for a builtin code, NULL when the runtime has none. */
const mq_kernel *mq_find_kernel(int32_t code);

/* One operator of the graph, in the arena. ctx.inputs/outputs point into the arena too; ctx.options
 * only while mq_init calls check(), prepare(), scratch() and in_place() (the options are read from the
 * model again for each: they take no arena memory, and eval() finds what it needs in ctx.prepared). */
typedef struct mq_op {
    mq_op_ctx ctx;
    const mq_kernel *kernel;
} mq_op;

/* The planner's working state (in the work area, dead after mq_init). Blocks to place: every
 * non-constant tensor and the scratch memory of every operator with a scratch() function (live at
 * its step only). slot[k] is tensor k's entry (k < ntensors) or operator k - ntensors' entry, or
 * MQ_PLAN_NONE; steps and entry numbers are 16-bit, so mq_init refuses models beyond the limits. */
#define MQ_PLAN_NONE 0xFFFFu
#define MQ_PLAN_MAX_ENTRIES 32767u
#define MQ_PLAN_MAX_OPS 32766u
typedef struct mq_plan_entry {
    uint32_t bytes;     /* what it occupies: the tensor's bytes, or the operator's scratch bytes (for a
                           block others share memory with: the largest of them) */
    uint32_t offset;    /* from the start of the activation area */
    int16_t shares;     /* -1, or the entry whose memory this one takes over (an in-place output) */
    int16_t first;      /* first operator step the block is live, INT16_MAX if never */
    int16_t last;       /* last operator step, -1 if never */
    int16_t writer;     /* first operator writing it; -1 if available from the start, INT16_MAX never */
    uint16_t order;     /* order[k]: k-th entry in placement order (an array laid over the entries) */
    uint16_t by_offset; /* by_offset[k]: placed entries sorted by offset (likewise) */
} mq_plan_entry;

typedef struct mq_plan {
    uint16_t *slot;          /* ntensors + nops */
    mq_plan_entry *entry;
    uint32_t nentries;
} mq_plan;

/*
 * Arena layout, each section aligned to MQ_ARENA_ALIGN:
 *   tensors  ntensors x sizeof(mq_tensor)
 *   ops      nops x sizeof(mq_op)
 *   io       nio x sizeof(mq_tensor *)        (every operator's input and output pointers)
 *   indices  (ninputs + noutputs) x int32
 * then the work area: during mq_init it holds the planner's slots ((ntensors + nops) x uint16) and
 * entries (nplanned x sizeof(mq_plan_entry)), dead once the activations are placed, afterwards the
 * activations; then
 * the prepared data of the operators (prepared_bytes, each operator's part 4-byte aligned). The
 * arena needs the metadata, the larger of the two, and the prepared data. The sizes of the structs
 * are parameters so that the host can compute the figure of a 32-bit target (mcuquant/builtin/cross.py).
 */
typedef struct mq_layout {
    uint64_t tensors, ops, io, indices; /* section offsets */
    uint64_t total;                     /* metadata bytes, a multiple of MQ_ARENA_ALIGN */
    uint64_t plan_entries;              /* offset of the planner's entries in the work area (after its slots) */
    uint64_t plan;                      /* bytes of the planner's slots and entries */
} mq_layout;

void mq_compute_layout(uint32_t ntensors, uint32_t nops, uint64_t nio, uint32_t nindices, uint32_t nplanned,
                       uint64_t sizeof_tensor, uint64_t sizeof_op, uint64_t sizeof_ptr,
                       uint64_t sizeof_plan_entry, mq_layout *out);

/*
 * Arena bytes an initialized interpreter's model needs for the given struct sizes: metadata plus
 * the larger of the activations and the planner's entries (with this build's sizes it equals
 * arena_required). Exported for the host tools.
 */
uint64_t mq_arena_bytes(const mq_interpreter *it, uint32_t sizeof_tensor, uint32_t sizeof_op,
                        uint32_t sizeof_ptr, uint32_t sizeof_plan_entry);

/* mq_init with flags; MQ_INIT_PRESERVE_ALL gives every tensor its own slot (for tracing). */
#define MQ_INIT_PRESERVE_ALL 1u
mq_status mq_init_ex(mq_interpreter *it, const uint8_t *model, size_t model_len, const uint8_t *prepared,
                     size_t prepared_len, uint8_t *arena, size_t arena_len, uint32_t flags);

/* Builtin code of operator `index` read from the model, -1 if it cannot be read. */
int32_t mq_op_code_at(const mq_interpreter *it, int32_t index);

/* ---- loading (mq_model.c) ---- */

typedef struct mq_model {
    mq_fb fb;
    mq_fb_vector opcodes, buffers, tensors, inputs, outputs, operators;
    uint64_t nio;              /* sum of every operator's input and output counts */
    uint64_t activation_bound; /* aligned bytes of every non-constant tensor and the largest scratch
                                  block allowed: an upper bound of the activation area */
    uint64_t scratch_limit;    /* what scratch() may ask for (MQ_SCRATCH_PER_CONSTANT_BYTE) */
    uint64_t prepared_bound;   /* an upper bound of the operators' prepared data */
    uint64_t nplanned;         /* blocks the planner places (mq_plan_count once loaded) */
} mq_model;

/* Bounds of what prepare() asks for: per output channel (mq_prepare_channel_params takes 9) and per
 * operator (alignment, or parameters of a fixed size such as ADD's multipliers); an LSTM more: its
 * 216 bytes of parameters, per unit 32 bytes of folded starts and up to 48 of padding of its
 * packed rows, and its eight weight matrices packed as int16 (16 per byte of the largest constant). */
#define MQ_PREPARED_PER_CHANNEL 12u
#define MQ_PREPARED_PER_OP 64u
#define MQ_PREPARED_LSTM_PER_OP 256u
#define MQ_PREPARED_LSTM_PER_CHANNEL 80u
#define MQ_PREPARED_LSTM_PER_CONSTANT_BYTE 16u
/* ADD and SUB: their two operand tables (2 x 256 int32) besides the parameters. */
#define MQ_PREPARED_TABLES_PER_OP 2048u

/* An operator's scratch memory is at most this many bytes per byte of the model's largest constant
 * tensor (an im2col buffer of two windows in int16 takes 4 per filter byte), plus the largest
 * activation tensor (rows of an output written over its input), plus 16: it bounds the activation
 * area before the operators are checked. mq_init fails with MQ_ERR_LIMIT beyond it. */
#define MQ_SCRATCH_PER_CONSTANT_BYTE 4u
/* Reads the header, the subgraph's vectors and every buffer (external data is rejected). */
mq_status mq_model_open(mq_interpreter *it, mq_model *m);

/* Where mq_model_load stores the metadata (arena sections laid out by mq_compute_layout). */
typedef struct mq_model_dest {
    mq_tensor *tensors;
    mq_op *ops;
    mq_tensor **io;
    int32_t *indices; /* graph inputs, then graph outputs */
} mq_model_dest;

/*
 * Validates every tensor and operator. With dest == NULL it needs no memory and only counts
 * (m->nio, m->activation_bound); with a dest it also stores the metadata there.
 */
mq_status mq_model_load(mq_interpreter *it, mq_model *m, const mq_model_dest *dest);

/* Operator `index`'s builtin options, read from the model (after mq_model_load accepted it). */
mq_status mq_model_options(mq_interpreter *it, const mq_model *m, uint32_t index, mq_op_options *o);

/* ---- planning (mq_planner.c) ---- */

/* Blocks the planner places for a loaded model: non-constant tensors and operators with scratch(). */
uint32_t mq_plan_count(const mq_interpreter *it);

/*
 * Lifetimes, and the data-flow rules the kernels rely on: no operator reads a tensor before it
 * is written (graph inputs and variable tensors count as written), writes a constant or writes
 * one of its own inputs; every graph output is written.
 */
mq_status mq_plan_lifetimes(mq_interpreter *it, mq_plan *plan, int preserve_all);

/* Operator `op` may write output tensor `out` over input tensor `in`: the planner lets them share
 * memory when `in` is free after this step. Returns 1 if they share. After mq_plan_lifetimes. */
int mq_plan_share(mq_interpreter *it, mq_plan *plan, uint32_t op, uint32_t in, uint32_t out);

/* Operator `op`'s scratch block of `bytes` (0: none), after mq_plan_lifetimes and check(). */
void mq_plan_scratch(mq_interpreter *it, mq_plan *plan, uint32_t op, uint32_t bytes);

/* Greedy placement after mq_plan_lifetimes: sets every planned tensor's offset and
 * it->activation_bytes. */
mq_status mq_plan_place(mq_interpreter *it, mq_plan *plan);

/* Where block k (tensor k, or operator k - ntensors' scratch) was placed in the activation area,
 * NULL when it is not placed. After mq_plan_place, before any activation is written. */
uint8_t *mq_plan_address(const mq_plan *plan, uint32_t k, uint8_t *activations);

#endif /* MQ_INTERNAL_H */
