"""The one place that imports TensorFlow, tf-keras, Keras 3 and tfmot.

tfmot 0.8 works only with tf-keras ("legacy" Keras 2), which TensorFlow selects when
TF_USE_LEGACY_KERAS=1 is set before its first import. Modules call these functions instead of
importing TensorFlow at the top, so `mcuquant --help` and `mcuquant boards` stay instant.
"""

import contextlib
import io
import os
import sys
import tempfile


def _prepare_environment() -> None:
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        from mcuquant.errors import ConfigError

        raise ConfigError("TensorFlow was imported before mcuquant without TF_USE_LEGACY_KERAS=1, so it uses "
                          "Keras 3, which tensorflow-model-optimization does not support. Set "
                          "os.environ['TF_USE_LEGACY_KERAS'] = '1' before the first `import tensorflow`, "
                          "or import mcuquant first.")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep the terminal for mcuquant's own output


@contextlib.contextmanager
def native_stderr_captured():
    """Hold back what C++ code writes to file descriptor 2 (TF's import banner, the converter's
    "fully_quantize" line); replay it if the block fails, since then it may explain why."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def converter_output_captured():
    """`native_stderr_captured`, and Python's stdout too: the TFLite converter exports a Keras 3
    model to a SavedModel first, which prints "Saved artifact at ..." and every endpoint."""
    with native_stderr_captured(), contextlib.redirect_stdout(io.StringIO()):
        yield


def tensorflow():
    _prepare_environment()
    if "tensorflow" not in sys.modules:
        with native_stderr_captured():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]


def keras():
    tensorflow()
    import tf_keras

    return tf_keras


def keras3():
    """Keras 3 (the `keras` package), for models saved by it; `tf.keras` stays tf-keras."""
    tensorflow()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "keras" not in sys.modules:
        with native_stderr_captured():
            import keras  # noqa: F401
    k = sys.modules["keras"]
    if not k.__version__.startswith("3.") or k.backend.backend() != "tensorflow":
        from mcuquant.errors import ConfigError

        raise ConfigError(f"Keras 3 models need the `keras` 3 package on the TensorFlow backend; found keras "
                          f"{k.__version__} on {k.backend.backend()} (set KERAS_BACKEND=tensorflow)")
    return k


def tfmot():
    tensorflow()
    import tensorflow_model_optimization as tfmot

    return tfmot
