/*
 * Backend "tflm": the exported model run by TensorFlow Lite Micro's MicroInterpreter, behind the
 * C interface of mq_backend.h. TFLM is not part of mcuquant: a generated project gets it as the
 * TFLM Arduino library (platformio.ini lib_deps: its git URL, or the local folder given by
 * MCUQUANT_TFLM_DIR; on emulated boards mcuquant's dev-platform builds that folder itself).
 *
 * Ops: the resolver registers exactly the model's ops, from model_config.h's x-macro
 * MCUQUANT_FOR_EACH_OP, and for the ops where TFLM has one, the int8-only kernel variant
 * (Register_CONV_2D_INT8() ...): the model's activations are int8 (the export checks it), and
 * the generic kernels would link their float and int16 paths too.
 *
 * Arena: MCUQUANT_TFLM_ARENA_BYTES when the build defines it, otherwise the export's
 * MCUQUANT_ARENA_BYTES (for tflm: TFLM's own need measured on the host plus a margin, see
 * mcuquant.export.tflm_arena). HELLO reports what TFLM really used (arena_used_bytes()).
 *
 * Per-channel FULLY_CONNECTED: TFLM honours per-channel weight scales there since September 2024
 * (tflite-micro #2673, which gave OpDataFullyConnected its is_per_channel member). The TFLM
 * Arduino library, last synced in February 2023, applies the first channel's scale to every
 * output channel, and TensorFlow 2.21's converter quantizes dense layers per channel: with such a
 * TFLM, init refuses a model whose FULLY_CONNECTED weight scales differ between channels rather
 * than compute wrong outputs.
 *
 * Inputs: TFLM may place intermediate tensors in the input tensor's memory, so the input is only
 * valid until the next Invoke; the server (mq_server.c) insists on a whole new input before every
 * INVOKE, and mq_backend_input_data() hands out the input tensor itself.
 *
 * Objects are built in static storage with placement new inside mq_backend_init(): no static
 * constructors, no destructors, no heap. Everything here lives in namespace mcuquant_tflm.
 * model_data.h is not included: it declares the array at global scope under a name derived from
 * the model's file name, which could be one of TFLM's namespaces (`tflite`, `flatbuffers`, ...);
 * the model is reached through model_data.c's fixed-name accessors instead.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <new>
#include <type_traits>
#include <utility>

#include "model_config.h"
#include "mq_backend.h"

// From model_data.c (see the note above on why model_data.h is not included).
extern "C" const unsigned char *mcuquant_model_data(void);
#include "tensorflow/lite/micro/kernels/add.h"
#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/kernels/depthwise_conv.h"
#include "tensorflow/lite/micro/kernels/fully_connected.h"
#include "tensorflow/lite/micro/kernels/mul.h"
#include "tensorflow/lite/micro/kernels/pooling.h"
#include "tensorflow/lite/micro/kernels/softmax.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "tensorflow/lite/schema/schema_utils.h"

#ifndef MCUQUANT_TFLM_ARENA_BYTES
#define MCUQUANT_TFLM_ARENA_BYTES MCUQUANT_ARENA_BYTES
#endif

/* The resolver call that registers each op of the export's support list. An op without an
 * entry here fails to compile (MQ_TFLM_ADD_<op> undeclared), which is what should happen. */
#define MQ_TFLM_ADD_ADD AddAdd(tflite::Register_ADD_INT8())
#define MQ_TFLM_ADD_AVERAGE_POOL_2D AddAveragePool2D(tflite::Register_AVERAGE_POOL_2D_INT8())
#define MQ_TFLM_ADD_CONCATENATION AddConcatenation()
#define MQ_TFLM_ADD_CONV_2D AddConv2D(tflite::Register_CONV_2D_INT8())
#define MQ_TFLM_ADD_DEPTHWISE_CONV_2D AddDepthwiseConv2D(tflite::Register_DEPTHWISE_CONV_2D_INT8())
#define MQ_TFLM_ADD_DEQUANTIZE AddDequantize()
#define MQ_TFLM_ADD_FULLY_CONNECTED AddFullyConnected(tflite::Register_FULLY_CONNECTED_INT8())
#define MQ_TFLM_ADD_HARD_SWISH AddHardSwish()
#define MQ_TFLM_ADD_LOGISTIC AddLogistic()
#define MQ_TFLM_ADD_MAX_POOL_2D AddMaxPool2D(tflite::Register_MAX_POOL_2D_INT8())
#define MQ_TFLM_ADD_MEAN AddMean()
#define MQ_TFLM_ADD_MUL AddMul(tflite::Register_MUL_INT8())
#define MQ_TFLM_ADD_PAD AddPad()
#define MQ_TFLM_ADD_QUANTIZE AddQuantize()
#define MQ_TFLM_ADD_RELU AddRelu()
#define MQ_TFLM_ADD_RELU6 AddRelu6()
#define MQ_TFLM_ADD_RESHAPE AddReshape()
#define MQ_TFLM_ADD_SOFTMAX AddSoftmax(tflite::Register_SOFTMAX_INT8())
#define MQ_TFLM_ADD_TANH AddTanh()

namespace mcuquant_tflm {

/* Backend error codes (HELLO's backend_status, RESULT's status). */
enum Status {
    kOk = 0,
    kNotReady = 1,          /* init not run, or it failed */
    kBadSchema = 2,         /* the model's schema version is not the one this TFLM reads */
    kRegisterFailed = 3,    /* the op resolver refused an op */
    kAllocateFailed = 4,    /* AllocateTensors failed: arena too small, or an op TFLM cannot prepare */
    kUnsupportedTensor = 5, /* too many inputs or outputs */
    kInvokeFailed = 6,
    kUnsupportedModel = 7,  /* something this TFLM would compute wrongly (per-channel FULLY_CONNECTED) */
};

/* Whether this TFLM's FULLY_CONNECTED honours per-channel weight scales (see the top comment). */
template <typename T, typename = void>
struct HasPerChannelFullyConnected : std::false_type {};
template <typename T>
struct HasPerChannelFullyConnected<T, decltype(void(std::declval<T &>().is_per_channel))> : std::true_type {};
constexpr bool kPerChannelFullyConnected = HasPerChannelFullyConnected<tflite::OpDataFullyConnected>::value;

constexpr size_t kArenaBytes = (MCUQUANT_TFLM_ARENA_BYTES) < 16u ? 16u : (MCUQUANT_TFLM_ARENA_BYTES);

using Resolver = tflite::MicroMutableOpResolver<MCUQUANT_NUM_OPS_USED>;

/* The device's one model: arena, resolver and interpreter storage, state and last error. */
alignas(16) uint8_t arena[kArenaBytes];
alignas(Resolver) uint8_t resolver_storage[sizeof(Resolver)];
alignas(tflite::MicroInterpreter) uint8_t interpreter_storage[sizeof(tflite::MicroInterpreter)];
const uint8_t model_sha256[32] = MCUQUANT_MODEL_SHA256_BYTES;
const tflite::Model *model = nullptr;
tflite::MicroInterpreter *interpreter = nullptr; /* constructed by init */
int status = kNotReady;                          /* init's outcome */
char error_text[200];

/* Append text / a decimal number to error_text (cut at its size). */
void error_append(const char *text)
{
    size_t len = strlen(error_text);
    while (*text != '\0' && len + 1 < sizeof error_text) error_text[len++] = *text++;
    error_text[len] = '\0';
}

void error_append_number(size_t number)
{
    char digits[21];
    size_t n = sizeof digits - 1;
    digits[n] = '\0';
    do {
        digits[--n] = static_cast<char>('0' + number % 10u);
        number /= 10u;
    } while (number != 0 && n > 0);
    error_append(digits + n);
}

int fail(int code, const char *text)
{
    error_text[0] = '\0';
    error_append(text);
    return code;
}

uint32_t clamp_u32(size_t n)
{
    return n > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(n);
}

/* Index of the first FULLY_CONNECTED operator whose weight scales differ between output
 * channels, or -1. */
int per_channel_fully_connected()
{
    const auto *codes = model->operator_codes();
    const auto *subgraphs = model->subgraphs();
    if (codes == nullptr || subgraphs == nullptr || subgraphs->size() == 0) return -1;
    const auto *operators = subgraphs->Get(0)->operators();
    const auto *tensors = subgraphs->Get(0)->tensors();
    if (operators == nullptr || tensors == nullptr) return -1;
    for (uint32_t i = 0; i < operators->size(); ++i) {
        const auto *op = operators->Get(i);
        const auto *inputs = op->inputs();
        if (op->opcode_index() >= codes->size() || inputs == nullptr || inputs->size() < 2) continue;
        const tflite::BuiltinOperator code = tflite::GetBuiltinCode(codes->Get(op->opcode_index()));
        if (code != tflite::BuiltinOperator_FULLY_CONNECTED) continue;
        const int32_t weights = inputs->Get(1);
        if (weights < 0 || static_cast<uint32_t>(weights) >= tensors->size()) continue;
        const auto *quantization = tensors->Get(static_cast<uint32_t>(weights))->quantization();
        const auto *scales = quantization != nullptr ? quantization->scale() : nullptr;
        if (scales == nullptr) continue;
        for (uint32_t c = 1; c < scales->size(); ++c) {
            if (scales->Get(c) != scales->Get(0)) return static_cast<int>(i);
        }
    }
    return -1;
}

int load()
{
    model = tflite::GetModel(::mcuquant_model_data());
    if (model->version() != TFLITE_SCHEMA_VERSION) {
        fail(kBadSchema, "model schema version ");
        error_append_number(model->version());
        error_append(", this TFLM reads version ");
        error_append_number(TFLITE_SCHEMA_VERSION);
        return kBadSchema;
    }
    const int op = kPerChannelFullyConnected ? -1 : per_channel_fully_connected();
    if (op >= 0) {
        fail(kUnsupportedModel, "operator ");
        error_append_number(static_cast<size_t>(op));
        error_append(" (FULLY_CONNECTED) has per-channel weight scales, which this TFLM (older than 2024-09) "
                     "ignores: quantize dense layers per tensor or use a newer TFLM");
        return kUnsupportedModel;
    }

    Resolver *resolver = new (resolver_storage) Resolver();
#define MQ_TFLM_REGISTER(op) \
    if (resolver->MQ_TFLM_ADD_##op != kTfLiteOk) return fail(kRegisterFailed, "TFLM refused to register op " #op);
    MCUQUANT_FOR_EACH_OP(MQ_TFLM_REGISTER)
#undef MQ_TFLM_REGISTER

    interpreter = new (interpreter_storage) tflite::MicroInterpreter(model, *resolver, arena, sizeof arena);
    if (interpreter->AllocateTensors() != kTfLiteOk) {
        fail(kAllocateFailed, "TFLM AllocateTensors failed with an arena of ");
        error_append_number(sizeof arena);
        error_append(" bytes (the export estimated ");
        error_append_number(MCUQUANT_ARENA_BYTES);
        error_append("): a bigger arena (-DMCUQUANT_TFLM_ARENA_BYTES=N) or an op this TFLM cannot run");
        return kAllocateFailed;
    }
    if (interpreter->inputs_size() > UINT32_MAX || interpreter->outputs_size() > UINT32_MAX) {
        return fail(kUnsupportedTensor, "too many inputs or outputs");
    }
    return kOk;
}

int init()
{
    if (model != nullptr) return status; /* once per image */
    error_text[0] = '\0';
    status = load();
    return status;
}

/* The TFLite TensorType of tensor `index` of the model's subgraph 0 (what the host expects in a
 * tensor spec: TfLiteType numbers types differently). -1 when the model does not say. */
int tensor_type(int index)
{
    const auto *subgraphs = model->subgraphs();
    if (subgraphs == nullptr || subgraphs->size() == 0) return -1;
    const auto *tensors = subgraphs->Get(0)->tensors();
    if (tensors == nullptr || index < 0 || static_cast<uint32_t>(index) >= tensors->size()) return -1;
    return static_cast<int>(tensors->Get(static_cast<uint32_t>(index))->type());
}

int fill_spec(const TfLiteTensor *t, int index, mq_tensor_spec *spec)
{
    int type = tensor_type(index);
    if (t == nullptr || t->dims == nullptr || type < 0 || type > 255) return 0;
    if (t->dims->size < 0 || t->dims->size > MQ_BACKEND_MAX_DIMS) return 0;
    if (t->bytes > UINT32_MAX) return 0;
    memset(spec, 0, sizeof *spec);
    spec->dtype = static_cast<uint8_t>(type);
    spec->ndims = static_cast<uint8_t>(t->dims->size);
    for (int d = 0; d < t->dims->size; ++d) spec->dims[d] = t->dims->data[d];
    spec->scale = t->params.scale;
    spec->zero_point = t->params.zero_point;
    spec->bytes = static_cast<uint32_t>(t->bytes);
    return 1;
}

uint32_t arena_used() { return status == kOk ? clamp_u32(interpreter->arena_used_bytes()) : 0; }
uint32_t input_count() { return status == kOk ? static_cast<uint32_t>(interpreter->inputs_size()) : 0; }
uint32_t output_count() { return status == kOk ? static_cast<uint32_t>(interpreter->outputs_size()) : 0; }
TfLiteTensor *input(uint32_t i) { return i < input_count() ? interpreter->input(i) : nullptr; }
TfLiteTensor *output(uint32_t i) { return i < output_count() ? interpreter->output(i) : nullptr; }

int input_spec(uint32_t i, mq_tensor_spec *spec)
{
    return i < input_count() ? fill_spec(interpreter->input(i), interpreter->inputs().Get(i), spec) : 0;
}

int output_spec(uint32_t i, mq_tensor_spec *spec)
{
    return i < output_count() ? fill_spec(interpreter->output(i), interpreter->outputs().Get(i), spec) : 0;
}

int invoke()
{
    if (status != kOk) return fail(kNotReady, "the model is not loaded");
    if (interpreter->Invoke() != kTfLiteOk) return fail(kInvokeFailed, "TFLM Invoke failed");
    return kOk;
}

}  // namespace mcuquant_tflm

extern "C" {

int mq_backend_init(void) { return mcuquant_tflm::init(); }
const char *mq_backend_error(void) { return mcuquant_tflm::error_text; }
const char *mq_backend_name(void) { return "tflm"; }
const uint8_t *mq_backend_model_sha256(void) { return mcuquant_tflm::model_sha256; }
uint32_t mq_backend_arena_size(void) { return mcuquant_tflm::clamp_u32(mcuquant_tflm::kArenaBytes); }
uint32_t mq_backend_input_count(void) { return mcuquant_tflm::input_count(); }
uint32_t mq_backend_output_count(void) { return mcuquant_tflm::output_count(); }
int mq_backend_input_spec(uint32_t i, mq_tensor_spec *spec) { return mcuquant_tflm::input_spec(i, spec); }
int mq_backend_output_spec(uint32_t i, mq_tensor_spec *spec) { return mcuquant_tflm::output_spec(i, spec); }
int mq_backend_invoke(void) { return mcuquant_tflm::invoke(); }
/* TFLM runs its operators inside Invoke without a hook here: no keep-alives (HELLO_REPLY busy_ms 0). */
int mq_backend_set_progress(void (*)(void *), void *) { return 0; }

uint32_t mq_backend_arena_used(void) { return mcuquant_tflm::arena_used(); }

uint8_t *mq_backend_input_data(uint32_t i)
{
    TfLiteTensor *t = mcuquant_tflm::input(i);
    return t != nullptr ? static_cast<uint8_t *>(t->data.data) : nullptr;
}

const uint8_t *mq_backend_output_data(uint32_t i)
{
    const TfLiteTensor *t = mcuquant_tflm::output(i);
    return t != nullptr ? static_cast<const uint8_t *>(t->data.data) : nullptr;
}

}  // extern "C"
