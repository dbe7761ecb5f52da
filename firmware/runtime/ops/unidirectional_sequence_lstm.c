/*
 * UNIDIRECTIONAL_SEQUENCE_LSTM, int8 activations, int8 weights, int16 cell state, int32 biases:
 * the standard (Keras) LSTM that TensorFlow Lite Micro's integer kernel runs, re-derived and
 * checked against tflm-host byte for byte (tests/test_builtin_lstm.py).
 *
 * Inputs (TFLite order): 0 x [batch, time, in] (time_major: [time, batch, in]); 1-4 input
 * weights [units, in] and 5-8 recurrent weights [units, units] of the input, forget, cell and
 * output gates; 12-15 their biases [units]; 18 the hidden state (int8, variable) and 19 the cell
 * state (int16, variable, power-of-two scale). Peephole (9-11), projection (16-17) and layer-norm
 * (20-23) inputs must be absent: TFLM's integer kernel refuses them too. Output [batch, time,
 * units] (time_major: [time, batch, units]) gets the hidden state of every step.
 *
 * Per step and unit, as TFLM computes it:
 *   gate   = sat16(FC16(x) + FC16(h))  FC16: int32 dot product (+ bias on the x side only),
 *            requantized to int16 Q3.12 (scale 2^-12) with (double)in_scale * w_scale / 2^-12
 *   i, f, o = sigmoid16(gate), g = tanh16(gate)              Q0.15 (scale 2^-15)
 *   c      = sat16(mul(f, c) + mul(i, g)), clipped to +-cell_clip when cell_clip > 0
 *   h      = mul8(tanh16(c), o) + h_zero_point               in the hidden state's quantization
 * where mul requantizes the int32 product of two int16 values with the scale ratio of
 * TFLM's CreateInterGateMulParams. The sigmoid and tanh are TFLM's interpolated 256-entry table.
 *
 * State lives in the variable tensors and carries over from one mq_invoke to the next, as it does
 * in TFLM (mq_init resets them, to the zero point for int8, as TFLM's ResetVariableTensors).
 * Every unit's gates depend only on the previous hidden state, so a step writes its new hidden
 * state into the output tensor's slot for that step first and copies it to the hidden state
 * tensor once every unit of the step is done (TFLM keeps four gate buffers).
 *
 * Prepared once (mq_prepare_unidirectional_sequence_lstm, no double precision while the model
 * runs): the multipliers; per unit and gate the zero points folded into the accumulators' start,
 * sum_d w[d] * (x[d] - zp) = sum_d w[d] * x[d] - zp * sum_d w[d] (modulo 2^32, so equal bit for
 * bit), so the dot products take the raw int8 values; and the weights packed as int16, a unit's
 * four gate rows side by side (mq_pack_rows4), so that one pass over x and one over h give all
 * four gates (mq_dot_packed4: two SMLAD per four products on cores with the DSP extension). The
 * packed weights take twice the bytes of the int8 ones: flash when the export makes the prepared
 * data (the default firmware), arena otherwise. Scratch: x and h of one step side by side,
 * padded with zeros to whole words.
 */
#include <math.h>
#include <string.h>

#if defined(__ARM_FEATURE_SAT)
#include <arm_acle.h>
#endif

#include "../mq_fixedpoint.h"
#include "mq_dot.h"
#include "mq_op_util.h"

enum {
    IN_X = 0, IN_W_INPUT = 1, IN_R_INPUT = 5, IN_PEEPHOLE = 9, IN_BIAS_INPUT = 12, IN_PROJECTION = 16,
    IN_HIDDEN = 18, IN_CELL = 19, IN_LAYER_NORM = 20, LSTM_INPUTS = 24
};
enum { GATE_INPUT = 0, GATE_FORGET = 1, GATE_CELL = 2, GATE_OUTPUT = 3, GATES = 4 };
enum { TYPE_INT16 = 7 }; /* TFLite TensorType INT16: the cell state */

/*
 * sigmoid(k / 24) in unsigned Q0.16 for k = 0..255, the interpolation table of TFLM's int16
 * sigmoid and tanh (tanh(x) = 2 sigmoid(2x) - 1). Measured from tflm-host's int16 TANH on every
 * int16 input (each interval's output pins its entry and slope); the values are within about one
 * unit of round(65536 sigmoid(k / 24)) but not equal to it. tests/test_builtin_lstm.py measures
 * it again and compares.
 */
static const uint16_t sigmoid_table[256] = {
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149,
    40794, 41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369,
    47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409, 51865, 52311, 52745, 53169,
    53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370,
    60565, 60753, 60935, 61110, 61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302,
    62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186, 63279, 63368, 63454, 63536,
    63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786,
    64816, 64845, 64873, 64900, 64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079,
    65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234, 65246, 65258,
    65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433,
    65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474,
    65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491, 65493, 65495, 65497, 65498,
    65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522,
    65523, 65523, 65524, 65524, 65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528,
    65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530, 65530, 65530, 65531, 65531,
    65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534,
    65534, 65534, 65534, 65535
};

/* TFLM's int16 sigmoid of a Q3.12 value, in Q0.15. */
static inline __attribute__((always_inline)) int16_t sigmoid16(int16_t v)
{
    const int32_t x = (int32_t)v * 3; /* the table's steps are 1/24: Q3.12 * 3 / 2^9 */
    const uint32_t a = (uint32_t)(x < 0 ? -x : x);
    const uint32_t k = a >> 9;
    uint32_t r;
    if (k >= 255u) {
        r = 0x7FFFu << 10;
    } else {
        const uint32_t lo = sigmoid_table[k], hi = sigmoid_table[k + 1u];
        r = (lo << 9) + (a & 0x1FFu) * (hi - lo);
    }
    r = x >= 0 ? r + (1u << 9) : (1u << 25) - r + (1u << 9) - 1u;
    return (int16_t)(r >> 10);
}

/* TFLM's int16 tanh: v * multiplier (rounded right shift by `shift`) on the table's 1/24 grid
 * (Q3.12 * 3 / 2^8), result in Q0.15. */
static inline __attribute__((always_inline)) int16_t tanh16(int16_t v, int32_t multiplier, int shift)
{
    const int32_t rounding = shift > 0 ? (int32_t)1 << (shift - 1) : 0;
    /* Arithmetic right shift of negative values, as elsewhere in the runtime (mq_fixedpoint.h). */
    const int32_t x = ((int32_t)v * multiplier + rounding) >> shift;
    const uint32_t a = (uint32_t)(x < 0 ? -x : x);
    const uint32_t k = a >> 8;
    int32_t r;
    if (k >= 255u) {
        r = 0xFFFF << 8;
    } else {
        const uint32_t lo = sigmoid_table[k], hi = sigmoid_table[k + 1u];
        r = (int32_t)((lo << 8) + (a & 0xFFu) * (hi - lo));
    }
    r = x >= 0 ? r - (1 << 23) + (1 << 7) : -r + (1 << 23) + (1 << 7) - 1;
    return (int16_t)(r >> 8);
}

static inline __attribute__((always_inline)) int16_t sat16(int32_t v)
{
#if defined(__ARM_FEATURE_SAT)
    return (int16_t)__ssat(v, 16); /* SSAT: one instruction */
#else
    return (int16_t)mq_clamp(v, -32768, 32767);
#endif
}

/* One requantization: TFLM's MultiplyByQuantizedMultiplier with its (multiplier, shift), the
 * multiplier from QuantizeMultiplier, in the fused form of mq_requant_fused (its constant as two
 * words: the blob is only 4-byte aligned). */
typedef struct requant {
    int32_t multiplier, shift;
    uint32_t k_lo, k_hi;
} requant;

static void set_requant(requant *q, int32_t multiplier, int shift)
{
    const uint64_t k = (uint64_t)mq_requant_constant(shift);
    q->multiplier = multiplier;
    q->shift = shift;
    q->k_lo = (uint32_t)k;
    q->k_hi = (uint32_t)(k >> 32);
}

static inline __attribute__((always_inline)) int32_t requantize(uint32_t acc, const requant *q)
{
    const int64_t k = (int64_t)(((uint64_t)q->k_hi << 32) | q->k_lo);
    return mq_requant_fused(mq_wrap_i32(acc), q->multiplier, q->shift, k);
}

/*
 * What mq_init derives from the model, at ctx->prepared: int32 fields only, because the export
 * makes this blob on the host for the target's flash. After it, int32 folded[units][GATES][2]:
 * for unit j and gate g, the x side's start (bias + x_offset * sum of the gate's input-weight row)
 * and the h side's (h_offset * sum of its recurrent-weight row); then per unit its four input-weight
 * rows and its four recurrent-weight rows, each set packed by mq_pack_rows4.
 */
typedef struct lstm_prepared {
    int32_t batch, steps, in_dim, units, time_major;
    int32_t h_zero_point;
    requant gate_x[GATES], gate_h[GATES];          /* the gate FCs, to Q3.12 */
    requant forget_cell, input_cell, hidden;       /* the three element-wise products */
    int32_t cell_tanh_multiplier, cell_tanh_shift;
    int32_t clip, cell_clip; /* clip: cell_clip > 0 in the options; cell_clip quantized */
} lstm_prepared;

/* Int8 weights [rows, cols], quantized per tensor with zero point 0. */
static mq_status check_weights(const mq_tensor *w, int32_t rows, int32_t cols)
{
    mq_status s;
    if (w == NULL) return MQ_ERR_MALFORMED;
    if ((s = mq_check_int8_weights(w, 0)) != MQ_OK) return s;
    if (w->ndims != 2 || w->dims[0] != rows || w->dims[1] != cols) return MQ_ERR_SHAPE;
    /* TFLM's gate FCs use a single multiplier; per-channel scales would leave it unset. */
    return w->nscales == 1 ? MQ_OK : MQ_ERR_QUANTIZATION;
}

/* A Q3.12 gate FC's multiplier: in_scale * w_scale / 2^-12, as TFLM's per-tensor FC computes it. */
static mq_status gate_multiplier(float in_scale, const mq_tensor *w, requant *q)
{
    int32_t multiplier = 0;
    int shift = 0;
    const mq_status s = mq_channel_multiplier(in_scale, w->scale, 1.0f / 4096.0f, &multiplier, &shift);
    set_requant(q, multiplier, shift);
    return s;
}

/* TFLM's CreateInterGateMulParams: (double)a * (double)b / (double)out, quantized. */
static mq_status mul_multiplier(float a, float b, float out, requant *q)
{
    int32_t multiplier = 0;
    int shift = 0;
    const mq_status s = mq_checked_multiplier((double)a * (double)b / (double)out, &multiplier, &shift);
    set_requant(q, multiplier, shift);
    return s;
}

/* Validates the operator and derives its fixed-size parameters (check and prepare). */
static mq_status lstm_parameters(const mq_op_ctx *ctx, lstm_prepared *p)
{
    const mq_op_options *o = ctx->options;
    const mq_tensor *x, *h, *c, *out;
    mq_status s;
    uint32_t i;
    int exponent = 0;

    if (ctx->ninputs != LSTM_INPUTS || ctx->noutputs != 1 || o == NULL) return MQ_ERR_MALFORMED;
    for (i = IN_PEEPHOLE; i < IN_BIAS_INPUT; ++i)
        if (ctx->inputs[i] != NULL) return MQ_ERR_UNSUPPORTED_OPTION;
    for (i = IN_PROJECTION; i < IN_HIDDEN; ++i)
        if (ctx->inputs[i] != NULL) return MQ_ERR_UNSUPPORTED_OPTION;
    for (i = IN_LAYER_NORM; i < LSTM_INPUTS; ++i)
        if (ctx->inputs[i] != NULL) return MQ_ERR_UNSUPPORTED_OPTION;
    /* The cell gate's activation; TFLM's integer kernel knows only TANH (and SIGMOID, which the
     * schema's ActivationFunctionType cannot express). */
    if (o->activation != MQ_ACT_TANH) return MQ_ERR_UNSUPPORTED_OPTION;

    x = ctx->inputs[IN_X];
    h = ctx->inputs[IN_HIDDEN];
    c = ctx->inputs[IN_CELL];
    out = ctx->outputs[0];
    if (x == NULL || h == NULL || c == NULL) return MQ_ERR_MALFORMED;
    if ((s = mq_check_int8_activation(x)) != MQ_OK) return s;
    if (x->ndims != 3) return MQ_ERR_SHAPE;
    p->time_major = o->time_major != 0;
    p->batch = x->dims[p->time_major ? 1 : 0];
    p->steps = x->dims[p->time_major ? 0 : 1];
    p->in_dim = x->dims[2];

    /* The states are variable tensors (mq_tensor.reserved, see mq_internal.h), as TFLM requires. */
    if (!h->reserved || !c->reserved) return MQ_ERR_MALFORMED;
    if ((s = mq_check_int8_activation(h)) != MQ_OK) return s;
    if (h->ndims != 2) return MQ_ERR_SHAPE;
    p->units = h->dims[1];
    if ((uint64_t)mq_tensor_elements(h) != (uint64_t)p->batch * (uint64_t)p->units) return MQ_ERR_SHAPE;
    if (c->type != TYPE_INT16) return MQ_ERR_UNSUPPORTED_TYPE;
    if ((s = mq_check_dims_positive(c)) != MQ_OK) return s;
    if ((uint64_t)mq_tensor_elements(c) != (uint64_t)p->batch * (uint64_t)p->units) return MQ_ERR_SHAPE;

    if (out->type != MQ_INT8) return MQ_ERR_UNSUPPORTED_TYPE;
    if (out->ndims != 3 || out->dims[0] != x->dims[0] || out->dims[1] != x->dims[1] || out->dims[2] != p->units)
        return MQ_ERR_SHAPE;

    p->h_zero_point = h->zero_point;
    for (i = 0; i < GATES; ++i) {
        const mq_tensor *w_x = ctx->inputs[IN_W_INPUT + i], *w_h = ctx->inputs[IN_R_INPUT + i];
        const mq_tensor *bias = ctx->inputs[IN_BIAS_INPUT + i];
        if ((s = check_weights(w_x, p->units, p->in_dim)) != MQ_OK) return s;
        if ((s = check_weights(w_h, p->units, p->units)) != MQ_OK) return s;
        if (bias == NULL) return MQ_ERR_MALFORMED;
        if (bias->type != MQ_INT32) return MQ_ERR_UNSUPPORTED_TYPE;
        if (bias->ndims != 1 || bias->dims[0] != p->units) return MQ_ERR_SHAPE;
        if ((s = gate_multiplier(x->scale, w_x, &p->gate_x[i])) != MQ_OK) return s;
        if ((s = gate_multiplier(h->scale, w_h, &p->gate_h[i])) != MQ_OK) return s;
    }

    /* Cell state: scale 2^power (TFLM takes its log2 for the tanh; the converter always makes a
     * power of two). Its zero point is ignored, as TFLM does. */
    if (c->nscales != 1 || !mq_scale_ok(c->scale) || frexp((double)c->scale, &exponent) != 0.5)
        return MQ_ERR_QUANTIZATION;
    {
        /* tanh input: cell * 3 * 2^(power + 12), i.e. a left shift by power + 12 folded into the
         * multiplier, or a rounding right shift. Keep the product within int32 and the shift < 32. */
        const int power = exponent - 1, left = power + 12;
        if (left > 14 || left < -31) return MQ_ERR_QUANTIZATION;
        p->cell_tanh_multiplier = left >= 0 ? (int32_t)3 << left : 3;
        p->cell_tanh_shift = left >= 0 ? 0 : -left;
    }
    {
        const float q015 = 1.0f / 32768.0f; /* gate outputs, Q0.15 */
        if ((s = mul_multiplier(q015, c->scale, c->scale, &p->forget_cell)) != MQ_OK) return s;
        if ((s = mul_multiplier(q015, q015, c->scale, &p->input_cell)) != MQ_OK) return s;
        if ((s = mul_multiplier(q015, q015, h->scale, &p->hidden)) != MQ_OK) return s;
    }
    p->clip = o->cell_clip > 0.0f;
    p->cell_clip = 0;
    if (p->clip) {
        /* Quantized in double and truncated to int16, as TFLM (NaN is not > 0: no clipping). */
        const double q = (double)o->cell_clip / (double)c->scale;
        p->cell_clip = (int32_t)(int16_t)(q < -32768.0 ? -32768.0 : (q > 32767.0 ? 32767.0 : q));
    }
    return MQ_OK;
}

mq_status mq_check_unidirectional_sequence_lstm(const mq_op_ctx *ctx)
{
    lstm_prepared p;
    return lstm_parameters(ctx, &p);
}

/* The sum of a weight row, modulo 2^32. */
static uint32_t row_sum(const int8_t *w, int32_t n)
{
    uint32_t sum = 0;
    int32_t d;
    for (d = 0; d < n; ++d) sum += (uint32_t)(int32_t)w[d];
    return sum;
}

/* Words of four int8 that n values take, the last one padded. */
static uint32_t words_of(int32_t n)
{
    return ((uint32_t)n + 3u) / 4u;
}

/* Bytes of one unit's packed rows: four input-weight and four recurrent-weight rows as int16. */
static uint32_t packed_unit_bytes(const lstm_prepared *p)
{
    return (words_of(p->in_dim) + words_of(p->units)) * 4u * GATES * 2u;
}

mq_status mq_prepare_unidirectional_sequence_lstm(const mq_op_ctx *ctx, uint8_t *out, uint32_t *bytes)
{
    lstm_prepared p;
    int32_t *folded;
    int16_t *packed;
    int32_t j, g;
    const mq_status s = lstm_parameters(ctx, &p);
    if (s != MQ_OK) return s;
    /* No overflow: the units x units recurrent weights lie in the model, so units < 2^16, and
     * in_dim x units input weights too. */
    *bytes = (uint32_t)sizeof p + (uint32_t)p.units * (GATES * 2u * 4u + packed_unit_bytes(&p));
    if (out == NULL) return MQ_OK;
    memcpy(out, &p, sizeof p);
    folded = (int32_t *)(void *)(out + sizeof p);
    packed = (int16_t *)(void *)(folded + (uint32_t)p.units * GATES * 2u);
    {
        const uint32_t x_offset = (uint32_t)-ctx->inputs[IN_X]->zero_point;
        const uint32_t h_offset = (uint32_t)-ctx->inputs[IN_HIDDEN]->zero_point;
        for (j = 0; j < p.units; ++j) {
            const int8_t *w_x[GATES], *w_h[GATES];
            for (g = 0; g < GATES; ++g) {
                const uint32_t bias = (uint32_t)mq_load_i32(ctx->inputs[IN_BIAS_INPUT + g]->data, (uint32_t)j);
                w_x[g] = (const int8_t *)ctx->inputs[IN_W_INPUT + g]->data + (uint32_t)j * (uint32_t)p.in_dim;
                w_h[g] = (const int8_t *)ctx->inputs[IN_R_INPUT + g]->data + (uint32_t)j * (uint32_t)p.units;
                folded[(j * GATES + g) * 2] = mq_wrap_i32(bias + x_offset * row_sum(w_x[g], p.in_dim));
                folded[(j * GATES + g) * 2 + 1] = mq_wrap_i32(h_offset * row_sum(w_h[g], p.units));
            }
            mq_pack_rows4(w_x, (uint32_t)p.in_dim, packed);
            packed += words_of(p.in_dim) * 4u * GATES;
            mq_pack_rows4(w_h, (uint32_t)p.units, packed);
            packed += words_of(p.units) * 4u * GATES;
        }
    }
    return MQ_OK;
}

mq_status mq_scratch_unidirectional_sequence_lstm(const mq_op_ctx *ctx, uint32_t *bytes)
{
    lstm_prepared p;
    const mq_status s = lstm_parameters(ctx, &p);
    if (s != MQ_OK) return s;
    *bytes = (words_of(p.in_dim) + words_of(p.units)) * 4u;
    return MQ_OK;
}

/* One time step of `rows` sequences: x [rows, in], h [rows, units] (read), c [rows, units]
 * (updated), the new hidden state into out [rows, units]; v: the scratch row. */
static void lstm_step(const lstm_prepared *p, const uint8_t *prepared, int8_t *v, const int8_t *x, const int8_t *h,
                      int16_t *c, int8_t *out, int32_t rows)
{
    const int32_t *folded = (const int32_t *)(const void *)(prepared + sizeof *p);
    const int16_t *packed_rows = (const int16_t *)(const void *)(folded + (uint32_t)p->units * GATES * 2u);
    const uint32_t in_dim = (uint32_t)p->in_dim, units = (uint32_t)p->units;
    const uint32_t x_words = words_of(p->in_dim), h_words = words_of(p->units);
    int8_t *vh = v + x_words * 4u;
    int32_t r, j, g;
    /* the padding of the scratch row stays zero */
    memset(v, 0, (x_words + h_words) * 4u);
    for (r = 0; r < rows; ++r) {
        const int16_t *packed = packed_rows;
        int16_t *cr = c + (uint32_t)r * units;
        int8_t *outr = out + (uint32_t)r * units;
        memcpy(v, x + (uint32_t)r * in_dim, in_dim);
        memcpy(vh, h + (uint32_t)r * units, units);
        for (j = 0; j < p->units; ++j) {
            const int32_t *start = folded + (uint32_t)j * GATES * 2u;
            uint32_t acc_x[GATES], acc_h[GATES];
            int32_t gate[GATES];
            for (g = 0; g < GATES; ++g) {
                acc_x[g] = (uint32_t)start[2 * g];
                acc_h[g] = (uint32_t)start[2 * g + 1];
            }
            packed = mq_dot_packed4(packed, v, x_words, acc_x);
            packed = mq_dot_packed4(packed, vh, h_words, acc_h);
            for (g = 0; g < GATES; ++g) /* each FC saturated to int16 first, then their sum */
                gate[g] = sat16((int32_t)sat16(requantize(acc_x[g], &p->gate_x[g])) +
                                (int32_t)sat16(requantize(acc_h[g], &p->gate_h[g])));
            {
                const int32_t in_gate = sigmoid16((int16_t)gate[GATE_INPUT]);
                const int32_t forget = sigmoid16((int16_t)gate[GATE_FORGET]);
                const int32_t cell_gate = tanh16((int16_t)gate[GATE_CELL], 3, 0);
                const int32_t out_gate = sigmoid16((int16_t)gate[GATE_OUTPUT]);
                const int32_t kept = sat16(requantize((uint32_t)(forget * (int32_t)cr[j]), &p->forget_cell));
                const int32_t added = sat16(requantize((uint32_t)(in_gate * cell_gate), &p->input_cell));
                int32_t cell = sat16(kept + added);
                int32_t hidden;
                if (p->clip) cell = mq_clamp(cell, -p->cell_clip, p->cell_clip);
                cr[j] = (int16_t)cell;
                hidden = tanh16((int16_t)cell, p->cell_tanh_multiplier, (int)p->cell_tanh_shift);
                outr[j] = (int8_t)mq_clamp(mq_add_wrap(requantize((uint32_t)(hidden * out_gate), &p->hidden),
                                                       p->h_zero_point),
                                           MQ_INT8_MIN, MQ_INT8_MAX);
            }
        }
    }
}

mq_status mq_eval_unidirectional_sequence_lstm(const mq_op_ctx *ctx)
{
    const lstm_prepared *p = (const lstm_prepared *)(const void *)ctx->prepared;
    const int8_t *x = (const int8_t *)ctx->inputs[IN_X]->data;
    int8_t *h = (int8_t *)ctx->inputs[IN_HIDDEN]->data;
    int16_t *c = (int16_t *)ctx->inputs[IN_CELL]->data;
    int8_t *out = (int8_t *)ctx->outputs[0]->data;
    int8_t *v = (int8_t *)ctx->scratch;
    int32_t b, t;

    if (p->time_major) {
        /* Every sequence of the batch advances one step at a time. */
        const uint32_t state = (uint32_t)p->batch * (uint32_t)p->units;
        for (t = 0; t < p->steps; ++t) {
            int8_t *slot = out + (uint32_t)t * state;
            lstm_step(p, ctx->prepared, v, x + (uint32_t)t * (uint32_t)p->batch * (uint32_t)p->in_dim, h, c, slot,
                      p->batch);
            memcpy(h, slot, state);
        }
        return MQ_OK;
    }
    /* Batch-major: one sequence after the other, each with its own row of the states. */
    for (b = 0; b < p->batch; ++b) {
        int8_t *hb = h + (uint32_t)b * (uint32_t)p->units;
        int16_t *cb = c + (uint32_t)b * (uint32_t)p->units;
        for (t = 0; t < p->steps; ++t) {
            const uint32_t row = (uint32_t)b * (uint32_t)p->steps + (uint32_t)t;
            int8_t *slot = out + row * (uint32_t)p->units;
            lstm_step(p, ctx->prepared, v, x + row * (uint32_t)p->in_dim, hb, cb, slot, 1);
            memcpy(hb, slot, (size_t)p->units);
        }
    }
    return MQ_OK;
}
