"""tflm-host in a child process: `python -m mcuquant.tflm_child FOLDER`.

TFLM stops the whole process (a failed TFLITE_CHECK calls abort()) on some models instead of
returning an error, so batch runs of the oracle (interpreters.Runner.run) happen here, where a
crash costs only this process. FOLDER holds model.tflite and inputs.npy (n samples, each shaped
like the input tensor); the outputs go to outputs.npy. One line on stdout per finished sample
lets the parent draw progress and name the sample a crash happened on. Exit 3: TFLM refused the
model with an error message (on stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REFUSED = 3


def main(folder: Path) -> int:
    from tflite_micro.python.tflite_micro import runtime

    model = (folder / "model.tflite").read_bytes()
    inputs = np.load(folder / "inputs.npy")
    try:
        # The host has memory to spare; the arena a board needs is measured elsewhere.
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=max(16 * len(model), 1 << 20))
    except (RuntimeError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return REFUSED
    outputs = []
    for x in inputs:
        interpreter.set_input(x, 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0)))
        print(len(outputs), flush=True)
    np.save(folder / "outputs.npy", np.stack(outputs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
