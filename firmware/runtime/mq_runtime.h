/*
 * mcuquant builtin runtime: public API.
 *
 * A dependency-free C99 interpreter for int8 TensorFlow Lite models, bit-exact with
 * TensorFlow Lite Micro's reference kernels. No heap: every byte it uses at run time lives in
 * the caller's arena (tensor metadata included); the model array is only read.
 *
 *     static uint8_t arena[MCUQUANT_ARENA_BYTES] __attribute__((aligned(16)));
 *     mq_interpreter it;
 *     mq_status s = mq_init(&it, model_data, model_data_len, arena, sizeof arena);
 *     if (s != MQ_OK) report(mq_status_name(s), it.error_op, it.error_detail);
 *     memcpy(mq_input(&it, 0)->data, sample, mq_input(&it, 0)->bytes);
 *     s = mq_invoke(&it);
 *     const mq_tensor *out = mq_output(&it, 0);
 *
 * Calling mq_init with a too small arena (even NULL, 0) returns MQ_ERR_ARENA_TOO_SMALL and sets
 * it.arena_required, so a host tool can size the arena exactly.
 */
#ifndef MQ_RUNTIME_H
#define MQ_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MQ_MAX_DIMS 6

typedef enum mq_status {
    MQ_OK = 0,
    MQ_ERR_BAD_ARGUMENT = 1,       /* NULL pointer, misaligned model or arena, index out of range */
    MQ_ERR_TRUNCATED = 2,          /* an offset or length points past the end of the model */
    MQ_ERR_MALFORMED = 3,          /* inconsistent flatbuffer: bad vtable, bad index, wrong sizes */
    MQ_ERR_UNSUPPORTED_VERSION = 4,/* schema version, several subgraphs, external buffers */
    MQ_ERR_UNSUPPORTED_OP = 5,     /* operator (builtin code or custom op) not implemented */
    MQ_ERR_UNSUPPORTED_OPTION = 6, /* known op, unsupported option value (e.g. weights format) */
    MQ_ERR_UNSUPPORTED_TYPE = 7,   /* tensor type not handled by this op (e.g. int16, uint8) */
    MQ_ERR_SHAPE = 8,              /* shapes inconsistent for the operator */
    MQ_ERR_QUANTIZATION = 9,       /* missing or invalid scale / zero point */
    MQ_ERR_LIMIT = 10,             /* size overflows: huge shapes, too many tensors for 32 bits */
    MQ_ERR_ARENA_TOO_SMALL = 11,   /* see mq_interpreter.arena_required */
    MQ_ERR_NOT_READY = 12,         /* mq_invoke before a successful mq_init */
    MQ_ERR_PREPARED = 13           /* mq_init_prepared: data not made for this model, or damaged */
} mq_status;

/* TensorFlow Lite TensorType values for the types the runtime knows. */
enum { MQ_FLOAT32 = 0, MQ_INT32 = 2, MQ_INT64 = 4, MQ_INT8 = 9 };

typedef struct mq_tensor {
    void *data;              /* arena or model memory; NULL for activations before planning */
    const int32_t *dims;     /* ndims entries: the model's own shape vector, in place (4-byte aligned,
                                read as native int32: the runtime targets little-endian cores) */
    const uint8_t *scales_raw;      /* nscales little-endian float32, possibly unaligned */
    const uint8_t *zero_points_raw; /* nzero_points little-endian int64, possibly unaligned */
    uint32_t bytes;          /* product(dims) * element size, checked against overflow */
    uint8_t ndims;
    uint8_t type;            /* MQ_INT8, ... (TFLite TensorType) */
    uint8_t is_constant;     /* data comes from a model buffer (weights, bias, axis, paddings) */
    uint8_t reserved;
    float scale;             /* first (or only) scale; 0 when the tensor is not quantized */
    int32_t zero_point;      /* first (or only) zero point */
    uint32_t nscales;        /* 0: not quantized, 1: per-tensor, >1: per-channel */
    uint32_t nzero_points;
    int32_t quantized_dimension;
} mq_tensor;

/* Per-channel accessors (read through memcpy: model vectors may be unaligned). */
float mq_tensor_scale_at(const mq_tensor *t, uint32_t i);
int64_t mq_tensor_zero_point_at(const mq_tensor *t, uint32_t i);
/* Number of elements; the product was checked at load time. */
uint32_t mq_tensor_elements(const mq_tensor *t);

struct mq_op;

typedef struct mq_interpreter {
    const uint8_t *model;
    size_t model_len;
    uint8_t *arena;
    size_t arena_len;
    size_t arena_required;   /* bytes needed (metadata + activations), set by mq_init */
    size_t activation_bytes; /* the part of arena_required that holds activation tensors */
    size_t prepared_bytes;   /* the part that holds what operators compute once at mq_init (multipliers, ...) */
    uint32_t prepared_external; /* 1: that data comes from mq_init_prepared's blob, not the arena */
    mq_tensor *tensors;      /* in the arena */
    uint32_t ntensors;
    struct mq_op *ops;       /* in the arena */
    uint32_t nops;
    const int32_t *input_index;  /* in the arena */
    uint32_t ninputs;
    const int32_t *output_index; /* in the arena */
    uint32_t noutputs;
    int32_t error_op;            /* operator index of the last error, -1 when not op-specific */
    const char *error_detail;    /* static string naming what failed, "" when none */
    uint32_t ready;
    void (*progress)(void *ctx); /* called after every operator of mq_invoke when set (mq_set_progress) */
    void *progress_ctx;
} mq_interpreter;

/*
 * model must be 4-byte aligned and arena 16-byte aligned (else MQ_ERR_BAD_ARGUMENT). When the
 * arena is too small, arena_required is exact if the arena could at least hold the model's
 * metadata, else an upper bound: a second call with that many bytes yields the exact figure.
 */
mq_status mq_init(mq_interpreter *it, const uint8_t *model, size_t model_len,
                  uint8_t *arena, size_t arena_len);
/*
 * mq_init with the operators' prepared data (multipliers, folded biases: what mq_init otherwise
 * computes into the arena) taken from `prepared` instead, e.g. a const array in flash made by the
 * export with mq_prepared_export: the arena then holds only metadata and activations. The data
 * starts with a MQ_PREPARED_HEADER_BYTES header holding SHA-256(model || data); a blob made for
 * another model, or damaged, is refused with MQ_ERR_PREPARED. `prepared` must be 4-byte aligned
 * and stay valid as long as the interpreter is used.
 */
#define MQ_PREPARED_HEADER_BYTES 48u
mq_status mq_init_prepared(mq_interpreter *it, const uint8_t *model, size_t model_len, const uint8_t *prepared,
                           size_t prepared_len, uint8_t *arena, size_t arena_len);

/*
 * After a successful mq_init: the blob mq_init_prepared takes for this model (header, then the
 * prepared data). Returns its size; writes it to out when cap is at least that.
 */
size_t mq_prepared_export(const mq_interpreter *it, uint8_t *out, size_t cap);

mq_status mq_invoke(mq_interpreter *it);
/* After mq_init: call fn(ctx) after every operator of each mq_invoke (e.g. a link keep-alive). */
void mq_set_progress(mq_interpreter *it, void (*fn)(void *ctx), void *ctx);
/* sizeof(mq_interpreter): the host runtime's ctypes mirror of the struct checks itself against it. */
size_t mq_interpreter_size(void);
uint32_t mq_input_count(const mq_interpreter *it);
uint32_t mq_output_count(const mq_interpreter *it);
mq_tensor *mq_input(mq_interpreter *it, uint32_t i);   /* NULL when out of range */
mq_tensor *mq_output(mq_interpreter *it, uint32_t i);  /* NULL when out of range */
const char *mq_status_name(mq_status s);               /* "MQ_ERR_SHAPE", ... */
/* Name of a TFLite builtin operator code ("CONV_2D"), "UNKNOWN" if not one this runtime knows. */
const char *mq_op_name(int32_t builtin_code);

#ifdef __cplusplus
}
#endif
#endif /* MQ_RUNTIME_H */
