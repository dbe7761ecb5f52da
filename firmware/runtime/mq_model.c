/*
 * Loading: the TFLite flatbuffer -> tensor and operator metadata.
 *
 * Field numbers below are the field indices of the TFLite schema (schema.fbs, schema version 3);
 * a union takes two indices (its type, then its value).
 */
#include <string.h>

#include "mq_internal.h"

/* Tensor shapes are read in place as native int32 (mq_tensor.dims). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the builtin runtime reads the model's int32 vectors in place: little-endian cores only"
#endif

enum { MODEL_VERSION = 0, MODEL_OPERATOR_CODES = 1, MODEL_SUBGRAPHS = 2, MODEL_BUFFERS = 4 };
enum { SUBGRAPH_TENSORS = 0, SUBGRAPH_INPUTS = 1, SUBGRAPH_OUTPUTS = 2, SUBGRAPH_OPERATORS = 3 };
enum {
    TENSOR_SHAPE = 0, TENSOR_TYPE = 1, TENSOR_BUFFER = 2, TENSOR_QUANTIZATION = 4,
    TENSOR_IS_VARIABLE = 5, TENSOR_SPARSITY = 6, TENSOR_EXTERNAL_BUFFER = 10
};
enum { BUFFER_DATA = 0, BUFFER_OFFSET = 1, BUFFER_SIZE = 2 };
enum { QUANT_SCALE = 2, QUANT_ZERO_POINT = 3, QUANT_DIMENSION = 6 };
enum { OPCODE_DEPRECATED_BUILTIN = 0, OPCODE_BUILTIN = 3 };
enum { OPERATOR_OPCODE_INDEX = 0, OPERATOR_INPUTS = 1, OPERATOR_OUTPUTS = 2,
       OPERATOR_OPTIONS_TYPE = 3, OPERATOR_OPTIONS = 4 };

/* BuiltinOptions union members the supported operators use. */
enum {
    OPTIONS_CONV_2D = 1, OPTIONS_DEPTHWISE_CONV_2D = 2, OPTIONS_POOL_2D = 5,
    OPTIONS_FULLY_CONNECTED = 8, OPTIONS_SOFTMAX = 9, OPTIONS_CONCATENATION = 10, OPTIONS_ADD = 11,
    OPTIONS_MUL = 21, OPTIONS_REDUCER = 27, OPTIONS_SUB = 28, OPTIONS_SQUEEZE = 30,
    OPTIONS_STRIDED_SLICE = 32, OPTIONS_UNIDIRECTIONAL_SEQUENCE_LSTM = 71, OPTIONS_LEAKY_RELU = 75
};

#define TRY(expr)                              \
    do {                                       \
        const mq_status try_s_ = (expr);       \
        if (try_s_ != MQ_OK) return try_s_;    \
    } while (0)

static mq_status fail(mq_interpreter *it, mq_status s, const char *detail)
{
    it->error_detail = detail;
    return s;
}

/* A failure of the flatbuffer reader, with the structure being read as detail. */
static mq_status reading(mq_interpreter *it, mq_status s, const char *what)
{
    if (s != MQ_OK) it->error_detail = what;
    return s;
}

/* Bytes per element of a TFLite TensorType, 0 for types without a fixed size or unknown. */
static uint32_t element_size(uint8_t type)
{
    switch (type) {
    case 0: return 4;   /* FLOAT32 */
    case 1: return 2;   /* FLOAT16 */
    case 2: return 4;   /* INT32 */
    case 3: return 1;   /* UINT8 */
    case 4: return 8;   /* INT64 */
    case 6: return 1;   /* BOOL */
    case 7: return 2;   /* INT16 */
    case 8: return 8;   /* COMPLEX64 */
    case 9: return 1;   /* INT8 */
    case 10: return 8;  /* FLOAT64 */
    case 11: return 16; /* COMPLEX128 */
    case 12: return 8;  /* UINT64 */
    case 15: return 4;  /* UINT32 */
    case 16: return 2;  /* UINT16 */
    default: return 0;  /* STRING, RESOURCE, VARIANT, packed INT4/INT2, ... */
    }
}

static uint64_t align_up(uint64_t n)
{
    return (n + (MQ_ARENA_ALIGN - 1u)) & ~(uint64_t)(MQ_ARENA_ALIGN - 1u);
}

mq_status mq_model_open(mq_interpreter *it, mq_model *m)
{
    mq_fb_table root, subgraph, buffer;
    mq_fb_vector subgraphs;
    const mq_fb *fb = &m->fb;
    uint32_t version;

    memset(m, 0, sizeof *m);
    m->fb.buf = it->model;
    m->fb.len = it->model_len;
    TRY(reading(it, mq_fb_root(fb, &root), "model header (root table, \"TFL3\" identifier)"));
    TRY(reading(it, mq_fb_u32(fb, &root, MODEL_VERSION, 0, &version), "Model.version"));
    if (version != 3) return fail(it, MQ_ERR_UNSUPPORTED_VERSION, "schema version is not 3");
    TRY(reading(it, mq_fb_vector_field(fb, &root, MODEL_OPERATOR_CODES, 4, &m->opcodes),
                "Model.operator_codes"));
    TRY(reading(it, mq_fb_vector_field(fb, &root, MODEL_SUBGRAPHS, 4, &subgraphs), "Model.subgraphs"));
    TRY(reading(it, mq_fb_vector_field(fb, &root, MODEL_BUFFERS, 4, &m->buffers), "Model.buffers"));
    if (subgraphs.len == 0) return fail(it, MQ_ERR_MALFORMED, "model has no subgraph");
    if (subgraphs.len > 1) return fail(it, MQ_ERR_UNSUPPORTED_VERSION, "model has more than one subgraph");
    TRY(reading(it, mq_fb_vec_table(fb, &subgraphs, 0, &subgraph), "SubGraph"));
    TRY(reading(it, mq_fb_vector_field(fb, &subgraph, SUBGRAPH_TENSORS, 4, &m->tensors), "SubGraph.tensors"));
    TRY(reading(it, mq_fb_vector_field(fb, &subgraph, SUBGRAPH_INPUTS, 4, &m->inputs), "SubGraph.inputs"));
    TRY(reading(it, mq_fb_vector_field(fb, &subgraph, SUBGRAPH_OUTPUTS, 4, &m->outputs), "SubGraph.outputs"));
    TRY(reading(it, mq_fb_vector_field(fb, &subgraph, SUBGRAPH_OPERATORS, 4, &m->operators),
                "SubGraph.operators"));

    for (uint32_t i = 0; i < m->buffers.len; ++i) {
        mq_fb_vector data;
        uint64_t offset, size;
        TRY(reading(it, mq_fb_vec_table(fb, &m->buffers, i, &buffer), "Buffer"));
        TRY(reading(it, mq_fb_vector_field(fb, &buffer, BUFFER_DATA, 1, &data), "Buffer.data"));
        TRY(reading(it, mq_fb_u64(fb, &buffer, BUFFER_OFFSET, 0, &offset), "Buffer.offset"));
        TRY(reading(it, mq_fb_u64(fb, &buffer, BUFFER_SIZE, 0, &size), "Buffer.size"));
        /* The schema says offset is only meaningful above 1 (data stored after the flatbuffer). */
        if (offset > 1 || size != 0)
            return fail(it, MQ_ERR_UNSUPPORTED_VERSION, "buffer data outside the flatbuffer (Buffer.offset/size)");
        if (i == 0 && data.len != 0) return fail(it, MQ_ERR_MALFORMED, "buffer 0 is not empty");
    }
    return MQ_OK;
}

static mq_status parse_quantization(mq_interpreter *it, const mq_fb *fb, const mq_fb_table *tensor,
                                    mq_tensor *t)
{
    mq_fb_table q;
    mq_fb_vector scales, zero_points;
    int present;
    int32_t dimension;

    TRY(reading(it, mq_fb_table_field(fb, tensor, TENSOR_QUANTIZATION, &q, &present), "Tensor.quantization"));
    if (!present) return MQ_OK;
    TRY(reading(it, mq_fb_vector_field(fb, &q, QUANT_SCALE, 4, &scales), "QuantizationParameters.scale"));
    TRY(reading(it, mq_fb_vector_field(fb, &q, QUANT_ZERO_POINT, 8, &zero_points),
                "QuantizationParameters.zero_point"));
    TRY(reading(it, mq_fb_i32(fb, &q, QUANT_DIMENSION, 0, &dimension),
                "QuantizationParameters.quantized_dimension"));
    /* As in TFLM: quantized only when both vectors are non-empty. */
    if (scales.len == 0 || zero_points.len == 0) return MQ_OK;
    if (zero_points.len != 1 && zero_points.len != scales.len)
        return fail(it, MQ_ERR_QUANTIZATION, "zero point count is neither 1 nor the scale count");
    if (scales.len > 1 && (dimension < 0 || dimension >= (int32_t)t->ndims ||
                           (uint32_t)t->dims[dimension] != scales.len))
        return fail(it, MQ_ERR_QUANTIZATION, "per-channel scale count differs from the quantized dimension");
    t->nscales = scales.len;
    t->scales_raw = fb->buf + scales.pos;
    t->nzero_points = zero_points.len;
    t->zero_points_raw = fb->buf + zero_points.pos;
    t->quantized_dimension = dimension;
    t->scale = mq_tensor_scale_at(t, 0);
    const int64_t zero_point = mq_tensor_zero_point_at(t, 0);
    if (zero_point < INT32_MIN || zero_point > INT32_MAX)
        return fail(it, MQ_ERR_QUANTIZATION, "zero point does not fit in 32 bits");
    t->zero_point = (int32_t)zero_point;
    return MQ_OK;
}

/* Tensor `index` -> *t (data points into the model for constants, NULL otherwise). */
static mq_status parse_tensor(mq_interpreter *it, const mq_model *m, uint32_t index, mq_tensor *t,
                              uint8_t *is_variable)
{
    const mq_fb *fb = &m->fb;
    mq_fb_table tensor, buffer, sparsity;
    mq_fb_vector shape, data;
    uint8_t type, variable;
    uint32_t buffer_index, external;
    int present;

    memset(t, 0, sizeof *t);
    TRY(reading(it, mq_fb_vec_table(fb, &m->tensors, index, &tensor), "Tensor"));
    TRY(reading(it, mq_fb_vector_field(fb, &tensor, TENSOR_SHAPE, 4, &shape), "Tensor.shape"));
    TRY(reading(it, mq_fb_u8(fb, &tensor, TENSOR_TYPE, 0, &type), "Tensor.type"));
    TRY(reading(it, mq_fb_u32(fb, &tensor, TENSOR_BUFFER, 0, &buffer_index), "Tensor.buffer"));
    TRY(reading(it, mq_fb_u8(fb, &tensor, TENSOR_IS_VARIABLE, 0, &variable), "Tensor.is_variable"));
    TRY(reading(it, mq_fb_table_field(fb, &tensor, TENSOR_SPARSITY, &sparsity, &present), "Tensor.sparsity"));
    TRY(reading(it, mq_fb_u32(fb, &tensor, TENSOR_EXTERNAL_BUFFER, 0, &external), "Tensor.external_buffer"));
    if (present) return fail(it, MQ_ERR_UNSUPPORTED_TYPE, "sparse tensor");
    if (external != 0) return fail(it, MQ_ERR_UNSUPPORTED_VERSION, "tensor data in an external buffer");

    if (shape.len > MQ_MAX_DIMS) return fail(it, MQ_ERR_LIMIT, "tensor has more than 6 dimensions");
    /* The tensor's dims are the model's vector itself (no copy in the arena). */
    if (shape.pos % 4u != 0) return fail(it, MQ_ERR_MALFORMED, "tensor shape misaligned");
    t->dims = (const int32_t *)(const void *)(fb->buf + shape.pos);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < shape.len; ++d) {
        int32_t dim;
        TRY(reading(it, mq_fb_vec_i32(fb, &shape, d, &dim), "Tensor.shape"));
        if (dim < 0) return fail(it, MQ_ERR_SHAPE, "negative (unknown) tensor dimension");
        elements *= (uint64_t)dim; /* both factors < 2^31: no overflow */
        if (elements > INT32_MAX) return fail(it, MQ_ERR_LIMIT, "tensor has more than 2^31-1 elements");
    }
    t->ndims = (uint8_t)shape.len;
    t->type = type;
    const uint32_t size = element_size(type);
    if (size == 0) return fail(it, MQ_ERR_UNSUPPORTED_TYPE, "tensor type without a fixed element size");
    if (elements * size > INT32_MAX) return fail(it, MQ_ERR_LIMIT, "tensor larger than 2^31-1 bytes");
    t->bytes = (uint32_t)(elements * size);

    if (buffer_index >= m->buffers.len) return fail(it, MQ_ERR_MALFORMED, "tensor buffer index out of range");
    TRY(reading(it, mq_fb_vec_table(fb, &m->buffers, buffer_index, &buffer), "Buffer"));
    TRY(reading(it, mq_fb_vector_field(fb, &buffer, BUFFER_DATA, 1, &data), "Buffer.data"));
    if (data.len != 0) {
        if (variable) return fail(it, MQ_ERR_UNSUPPORTED_TYPE, "variable tensor with initial data");
        if (data.len != t->bytes) return fail(it, MQ_ERR_MALFORMED, "constant tensor's buffer size differs from its shape");
        /* The model is 4-byte aligned (mq_init checks): keep kernels' 16/32-bit loads aligned. */
        if (data.pos % (size < 4u ? size : 4u) != 0)
            return fail(it, MQ_ERR_MALFORMED, "constant tensor data misaligned");
        /* Constants stay read-only: no operator output may be a constant (mq_plan checks). */
        t->data = (void *)(uintptr_t)(fb->buf + data.pos);
        t->is_constant = 1;
    }
    *is_variable = variable ? 1u : 0u;
    return parse_quantization(it, fb, &tensor, t);
}

/* The BuiltinOptions member each supported operator reads; 0 for none. */
static uint8_t options_type_for(int32_t code)
{
    switch (code) {
    case MQ_OP_CONV_2D: return OPTIONS_CONV_2D;
    case MQ_OP_DEPTHWISE_CONV_2D: return OPTIONS_DEPTHWISE_CONV_2D;
    case MQ_OP_AVERAGE_POOL_2D:
    case MQ_OP_MAX_POOL_2D: return OPTIONS_POOL_2D;
    case MQ_OP_FULLY_CONNECTED: return OPTIONS_FULLY_CONNECTED;
    case MQ_OP_SOFTMAX: return OPTIONS_SOFTMAX;
    case MQ_OP_CONCATENATION: return OPTIONS_CONCATENATION;
    case MQ_OP_ADD: return OPTIONS_ADD;
    case MQ_OP_MUL: return OPTIONS_MUL;
    case MQ_OP_MEAN:
    case MQ_OP_REDUCE_MAX: return OPTIONS_REDUCER;
    case MQ_OP_SUB: return OPTIONS_SUB;
    case MQ_OP_SQUEEZE: return OPTIONS_SQUEEZE;
    case MQ_OP_STRIDED_SLICE: return OPTIONS_STRIDED_SLICE;
    case MQ_OP_LEAKY_RELU: return OPTIONS_LEAKY_RELU;
    case MQ_OP_UNIDIRECTIONAL_SEQUENCE_LSTM: return OPTIONS_UNIDIRECTIONAL_SEQUENCE_LSTM;
    /* RESHAPE reads the output tensor's shape, PAD has no options, SPLIT / SPLIT_V take their
     * split from the output shapes (num_splits is ignored, as by TFLM). */
    default: return 0;
    }
}

static mq_status get_enum(const mq_fb *fb, const mq_fb_table *t, unsigned id, int32_t *out)
{
    int8_t v;
    TRY(mq_fb_i8(fb, t, id, 0, &v));
    *out = v;
    return MQ_OK;
}

static mq_status get_bool(const mq_fb *fb, const mq_fb_table *t, unsigned id, uint8_t def, int32_t *out)
{
    uint8_t v;
    TRY(mq_fb_u8(fb, t, id, def, &v));
    *out = v != 0;
    return MQ_OK;
}

static mq_status read_options(const mq_fb *fb, const mq_fb_table *t, uint8_t type, mq_op_options *o)
{
    switch (type) {
    case OPTIONS_CONV_2D:
        TRY(get_enum(fb, t, 0, &o->padding));
        TRY(mq_fb_i32(fb, t, 1, 0, &o->stride_w));
        TRY(mq_fb_i32(fb, t, 2, 0, &o->stride_h));
        TRY(get_enum(fb, t, 3, &o->activation));
        TRY(mq_fb_i32(fb, t, 4, 1, &o->dilation_w));
        TRY(mq_fb_i32(fb, t, 5, 1, &o->dilation_h));
        break;
    case OPTIONS_DEPTHWISE_CONV_2D:
        TRY(get_enum(fb, t, 0, &o->padding));
        TRY(mq_fb_i32(fb, t, 1, 0, &o->stride_w));
        TRY(mq_fb_i32(fb, t, 2, 0, &o->stride_h));
        TRY(mq_fb_i32(fb, t, 3, 0, &o->depth_multiplier));
        TRY(get_enum(fb, t, 4, &o->activation));
        TRY(mq_fb_i32(fb, t, 5, 1, &o->dilation_w));
        TRY(mq_fb_i32(fb, t, 6, 1, &o->dilation_h));
        break;
    case OPTIONS_POOL_2D:
        TRY(get_enum(fb, t, 0, &o->padding));
        TRY(mq_fb_i32(fb, t, 1, 0, &o->stride_w));
        TRY(mq_fb_i32(fb, t, 2, 0, &o->stride_h));
        TRY(mq_fb_i32(fb, t, 3, 0, &o->filter_w));
        TRY(mq_fb_i32(fb, t, 4, 0, &o->filter_h));
        TRY(get_enum(fb, t, 5, &o->activation));
        break;
    case OPTIONS_FULLY_CONNECTED:
        TRY(get_enum(fb, t, 0, &o->activation));
        TRY(get_enum(fb, t, 1, &o->weights_format));
        TRY(get_bool(fb, t, 2, 0, &o->keep_dims));
        TRY(get_bool(fb, t, 3, 0, &o->asymmetric_quantize_inputs));
        break;
    case OPTIONS_SOFTMAX:
        TRY(mq_fb_f32(fb, t, 0, 0.0f, &o->beta));
        break;
    case OPTIONS_CONCATENATION:
        TRY(mq_fb_i32(fb, t, 0, 0, &o->axis));
        TRY(get_enum(fb, t, 1, &o->activation));
        break;
    case OPTIONS_ADD:
        TRY(get_enum(fb, t, 0, &o->activation));
        TRY(get_bool(fb, t, 1, 1, &o->pot_scale_int16));
        break;
    case OPTIONS_MUL:
    case OPTIONS_SUB:
        TRY(get_enum(fb, t, 0, &o->activation));
        break;
    case OPTIONS_SQUEEZE: {
        mq_fb_vector dims;
        TRY(mq_fb_vector_field(fb, t, 0, 4, &dims));
        o->nsqueeze_dims = dims.len;
        o->squeeze_dims = fb->buf + dims.pos;
        break;
    }
    case OPTIONS_STRIDED_SLICE:
        TRY(mq_fb_i32(fb, t, 0, 0, &o->begin_mask));
        TRY(mq_fb_i32(fb, t, 1, 0, &o->end_mask));
        TRY(mq_fb_i32(fb, t, 4, 0, &o->shrink_axis_mask));
        break;
    case OPTIONS_LEAKY_RELU:
        TRY(mq_fb_f32(fb, t, 0, 0.0f, &o->alpha));
        break;
    case OPTIONS_UNIDIRECTIONAL_SEQUENCE_LSTM:
        /* proj_clip (2) only applies to projection, which TFLM's integer kernel refuses;
         * asymmetric_quantize_inputs (4) and diagonal_recurrent_tensors (5) are unused by it. */
        TRY(get_enum(fb, t, 0, &o->activation));
        TRY(mq_fb_f32(fb, t, 1, 0.0f, &o->cell_clip));
        TRY(get_bool(fb, t, 3, 0, &o->time_major));
        break;
    case OPTIONS_REDUCER:
        TRY(get_bool(fb, t, 0, 0, &o->keep_dims));
        break;
    default:
        break;
    }
    return MQ_OK;
}

static mq_status parse_options(mq_interpreter *it, const mq_fb *fb, const mq_fb_table *op, int32_t code,
                               mq_op_options *o)
{
    mq_fb_table table;
    uint8_t type;
    int present;

    memset(o, 0, sizeof *o);
    o->dilation_w = 1;
    o->dilation_h = 1;
    o->pot_scale_int16 = 1;
    TRY(reading(it, mq_fb_u8(fb, op, OPERATOR_OPTIONS_TYPE, 0, &type), "Operator.builtin_options_type"));
    TRY(reading(it, mq_fb_table_field(fb, op, OPERATOR_OPTIONS, &table, &present), "Operator.builtin_options"));
    /* Like TFLM, an absent options table or one of another type leaves the defaults. */
    if (!present || type == 0 || type != options_type_for(code)) return MQ_OK;
    return reading(it, read_options(fb, &table, type, o), "builtin options table");
}

/* Operator `index`'s table and builtin code. */
static mq_status read_code(mq_interpreter *it, const mq_model *m, uint32_t index, mq_fb_table *table,
                           int32_t *code)
{
    const mq_fb *fb = &m->fb;
    mq_fb_table opcode;
    uint32_t opcode_index;
    int8_t deprecated_code;

    TRY(reading(it, mq_fb_vec_table(fb, &m->operators, index, table), "Operator"));
    TRY(reading(it, mq_fb_u32(fb, table, OPERATOR_OPCODE_INDEX, 0, &opcode_index), "Operator.opcode_index"));
    if (opcode_index >= m->opcodes.len) return fail(it, MQ_ERR_MALFORMED, "operator code index out of range");
    TRY(reading(it, mq_fb_vec_table(fb, &m->opcodes, opcode_index, &opcode), "OperatorCode"));
    TRY(reading(it, mq_fb_i8(fb, &opcode, OPCODE_DEPRECATED_BUILTIN, 0, &deprecated_code),
                "OperatorCode.deprecated_builtin_code"));
    TRY(reading(it, mq_fb_i32(fb, &opcode, OPCODE_BUILTIN, 0, code), "OperatorCode.builtin_code"));
    /* Codes below 127 may be in either field; the larger one is the operator (as TFLite reads it). */
    if (deprecated_code > *code) *code = deprecated_code;
    return MQ_OK;
}

int32_t mq_op_code_at(const mq_interpreter *it, int32_t index)
{
    mq_interpreter scratch = *it; /* the readers write error details */
    mq_model m;
    mq_fb_table table;
    int32_t code;
    if (index < 0 || mq_model_open(&scratch, &m) != MQ_OK || (uint32_t)index >= m.operators.len) return -1;
    return read_code(&scratch, &m, (uint32_t)index, &table, &code) == MQ_OK ? code : -1;
}

/* Operator `index` -> *op; with io != NULL also its tensor pointers (into `tensors`). */
static mq_status parse_operator(mq_interpreter *it, const mq_model *m, uint32_t index, mq_op *op,
                                mq_tensor *tensors, mq_tensor **io)
{
    const mq_fb *fb = &m->fb;
    mq_fb_table table;
    mq_fb_vector lists[2];
    int32_t code;

    mq_op_options options;

    memset(op, 0, sizeof *op);
    TRY(read_code(it, m, index, &table, &code));
    op->kernel = mq_find_kernel(code);
    if (op->kernel == NULL)
        return fail(it, MQ_ERR_UNSUPPORTED_OP, code == MQ_OP_CUSTOM ? "custom operators are not supported"
                                                                   : "operator not implemented by the builtin runtime");

    TRY(reading(it, mq_fb_vector_field(fb, &table, OPERATOR_INPUTS, 4, &lists[0]), "Operator.inputs"));
    TRY(reading(it, mq_fb_vector_field(fb, &table, OPERATOR_OUTPUTS, 4, &lists[1]), "Operator.outputs"));
    op->ctx.ninputs = lists[0].len;
    op->ctx.noutputs = lists[1].len;
    uint32_t slot = 0;
    for (int list = 0; list < 2; ++list) {
        for (uint32_t k = 0; k < lists[list].len; ++k, ++slot) {
            int32_t t;
            TRY(reading(it, mq_fb_vec_i32(fb, &lists[list], k, &t), "Operator tensor index"));
            if (t == -1 && list == 0) {
                if (io != NULL) io[slot] = NULL; /* an omitted optional input */
                continue;
            }
            if (t < 0 || (uint32_t)t >= m->tensors.len)
                return fail(it, MQ_ERR_MALFORMED, "operator tensor index out of range");
            if (io != NULL) io[slot] = &tensors[t];
        }
    }
    if (io != NULL) {
        op->ctx.inputs = io;
        op->ctx.outputs = io + op->ctx.ninputs;
    }
    return parse_options(it, fb, &table, code, &options); /* validated here, read again by mq_model_options */
}

mq_status mq_model_options(mq_interpreter *it, const mq_model *m, uint32_t index, mq_op_options *o)
{
    mq_fb_table table;
    int32_t code;
    TRY(read_code(it, m, index, &table, &code));
    return parse_options(it, &m->fb, &table, code, o);
}

mq_status mq_model_load(mq_interpreter *it, mq_model *m, const mq_model_dest *dest)
{
    const mq_fb *fb = &m->fb;
    mq_tensor scratch_tensor;
    mq_op scratch_op;
    uint8_t variable;

    uint64_t most_channels = 0; /* the largest last dimension of any tensor */
    uint64_t largest_constant = 0, largest_activation = 0;
    m->nio = 0;
    m->activation_bound = 0;
    m->nplanned = 0;
    for (uint32_t i = 0; i < m->tensors.len; ++i) {
        mq_tensor *t = dest != NULL ? &dest->tensors[i] : &scratch_tensor;
        TRY(parse_tensor(it, m, i, t, &variable));
        if (!t->is_constant) m->activation_bound += align_up(t->bytes);
        m->nplanned += !t->is_constant;
        if (t->is_constant && t->bytes > largest_constant) largest_constant = t->bytes;
        if (!t->is_constant && t->bytes > largest_activation) largest_activation = t->bytes;
        if (t->ndims > 0 && (uint64_t)t->dims[t->ndims - 1] > most_channels) most_channels = (uint64_t)t->dims[t->ndims - 1];
        t->reserved = variable; /* the planner gives variable tensors the whole run */
    }

    /* Graph inputs and outputs; an input is written by the caller, so it cannot be a constant. */
    const mq_fb_vector *lists[2] = {&m->inputs, &m->outputs};
    uint32_t slot = 0;
    for (int list = 0; list < 2; ++list) {
        for (uint32_t k = 0; k < lists[list]->len; ++k, ++slot) {
            int32_t t;
            TRY(reading(it, mq_fb_vec_i32(fb, lists[list], k, &t), "SubGraph inputs/outputs"));
            if (t < 0 || (uint32_t)t >= m->tensors.len)
                return fail(it, MQ_ERR_MALFORMED, "graph input/output tensor index out of range");
            if (list == 0) {
                TRY(parse_tensor(it, m, (uint32_t)t, &scratch_tensor, &variable));
                if (scratch_tensor.is_constant) return fail(it, MQ_ERR_MALFORMED, "graph input is a constant tensor");
            }
            if (dest != NULL) dest->indices[slot] = t;
        }
    }

    uint64_t io_slot = 0;
    uint64_t lstm_ops = 0; /* their prepared data holds repacked weights */
    uint64_t table_ops = 0; /* ADD and SUB: theirs holds lookup tables */
    for (uint32_t i = 0; i < m->operators.len; ++i) {
        mq_op *op = dest != NULL ? &dest->ops[i] : &scratch_op;
        const mq_status s = parse_operator(it, m, i, op, dest != NULL ? dest->tensors : NULL,
                                           dest != NULL ? dest->io + io_slot : NULL);
        if (s != MQ_OK) {
            it->error_op = (int32_t)i;
            return s;
        }
        io_slot += (uint64_t)op->ctx.ninputs + op->ctx.noutputs;
        if (op->kernel->code == MQ_OP_UNIDIRECTIONAL_SEQUENCE_LSTM) ++lstm_ops;
        if (op->kernel->code == MQ_OP_ADD || op->kernel->code == MQ_OP_SUB) ++table_ops;
        m->nplanned += op->kernel->scratch != NULL;
        /* Vectors shared between operators could multiply the work; real models never share. */
        if (io_slot > m->fb.len / 4u)
            return fail(it, MQ_ERR_LIMIT, "operators list more tensors than the model can hold");
    }
    m->nio = io_slot;
    /* Scratch blocks live one operator each: the activation area grows by the largest at most. */
    m->scratch_limit = MQ_SCRATCH_PER_CONSTANT_BYTE * largest_constant + largest_activation + MQ_ARENA_ALIGN; /* < 2^36 */
    m->activation_bound += align_up(m->scratch_limit);
    /* Prepared data is per output channel (at most the largest last dimension) plus alignment; an
     * LSTM's also its fixed parameters and its weights repacked (at most
     * MQ_PREPARED_LSTM_PER_CONSTANT_BYTE bytes per byte of the largest constant). */
    {
        const uint64_t ops = m->operators.len;
        const uint64_t per_op = MQ_PREPARED_PER_OP + MQ_PREPARED_PER_CHANNEL * most_channels; /* < 2^36 */
        const uint64_t per_lstm = MQ_PREPARED_LSTM_PER_OP + MQ_PREPARED_LSTM_PER_CHANNEL * most_channels +
                                  MQ_PREPARED_LSTM_PER_CONSTANT_BYTE * largest_constant; /* < 2^41 */
        /* ops < 2^32 (a flatbuffer vector's length): saturate rather than wrap */
        if ((ops != 0 && per_op > UINT64_MAX / 2u / ops) || (lstm_ops != 0 && per_lstm > UINT64_MAX / 2u / lstm_ops))
            m->prepared_bound = UINT64_MAX;
        else
            m->prepared_bound = ops * per_op + lstm_ops * per_lstm;
        if (m->prepared_bound > UINT64_MAX - table_ops * MQ_PREPARED_TABLES_PER_OP) /* table_ops < 2^32 */
            m->prepared_bound = UINT64_MAX;
        else
            m->prepared_bound += table_ops * MQ_PREPARED_TABLES_PER_OP;
    }
    return MQ_OK;
}
