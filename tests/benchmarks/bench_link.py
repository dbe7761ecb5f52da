"""Benchmark of the serial link (a script, not a test; pytest does not collect it).

    .venv/bin/python tests/benchmarks/bench_link.py [--samples N] [--targets host,host:16384,qemu-nano33]
                                                    [--models tiny-mlp,...] [--json FILE]

For each target (the host-built firmware over loopback TCP, host:N with N-byte frames instead
of the boards' 512, and emulated boards in QEMU over their UART) it prints:

- raw transport: bytes/s moved host-to-device with no protocol at all, by a benchmark firmware
  (tests/benchmarks/raw_sink) that reads the same HAL the protocol firmware reads and only counts
  the bytes; and device-to-host, the same firmware sending a burst back;
- per model: samples/s through the protocol (mcuquant.device.harness.measure, the path of
  `mcuquant validate`), the input payload in bytes/s and as a share of the raw host-to-device
  rate, the bytes on the wire per sample (COBS framing, headers, CRCs, replies), the median
  device counter per inference, and the window (requests in flight): each model runs once with
  one request at a time (as protocol version 2 did) and once with the device's window.

Models (PTQ int8 of untrained Keras models: the link does not care about accuracy):
- tiny-mlp: 8x8x1 input (64 bytes), one small dense layer: round-trip bound if anything is;
- digits-cnn: the zoo CNN on 8x8x1 (64 bytes), the demo's model;
- wide-input: 96x96x3 input (27,648 bytes, VWW's size), average-pooled to a dense layer: the
  input dominates, so it shows how close the link comes to the transport;
- wide-output: 32x32x3 in, 3,072 values out (3,072 bytes each way): large outputs too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RAW_SINK = Path(__file__).resolve().parent / "raw_sink"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from faultproxy import RecordingPort  # noqa: E402  (counts the bytes each way)


def build_models() -> dict[str, bytes]:
    from mcuquant.models.zoo import build_zoo_model
    from mcuquant.quantize import convert_ptq
    from mcuquant.tf_import import keras

    k = keras()
    k.utils.set_random_seed(0)
    rng = np.random.default_rng(0)

    def ptq(model, shape):
        return convert_ptq(model, rng.random((32, *shape), np.float32)).tflite

    return {
        "tiny-mlp": ptq(k.Sequential([k.Input((8, 8, 1)), k.layers.Flatten(), k.layers.Dense(10)]), (8, 8, 1)),
        "digits-cnn": ptq(build_zoo_model("cnn", (8, 8, 1), 10), (8, 8, 1)),
        "wide-input": ptq(k.Sequential([k.Input((96, 96, 3)), k.layers.AveragePooling2D(12), k.layers.Flatten(),
                                        k.layers.Dense(2)]), (96, 96, 3)),
        "wide-output": ptq(k.Sequential([k.Input((32, 32, 3)), k.layers.AveragePooling2D(8), k.layers.Flatten(),
                                         k.layers.Dense(3072)]), (32, 32, 3)),
    }


# -- targets ---------------------------------------------------------------------------------


class HostTarget:
    """The host firmware; ``host:N`` builds it with N-byte frames (default 512, as on the boards)."""

    def __init__(self, name: str, work: Path):
        self.name, self.work = name, work
        self.max_frame = int(name.split(":")[1]) if ":" in name else None

    def raw_executable(self) -> Path:
        from mcuquant.builtin.host import find_gcc
        from mcuquant.builtin.sources import firmware_dir

        exe = self.work / "raw-sink-host"
        fw = firmware_dir()
        subprocess.run([find_gcc(), "-O2", "-std=c99", f"-I{fw / 'hal'}", str(RAW_SINK / "main.c"),
                        str(fw / "hal" / "hal_host.c"), "-o", str(exe)], check=True)
        return exe

    def run_raw(self):
        from mcuquant.device.hostfw import HostFirmware

        return HostFirmware(self.raw_executable())

    def run_model(self, tflite: bytes):
        from mcuquant.device.hostfw import HostFirmware, build_host_firmware

        return HostFirmware(build_host_firmware(tflite, cache=self.work / "hostfw", max_frame=self.max_frame))


class QemuTarget:
    def __init__(self, board: str, work: Path):
        self.name, self.work = board, work

    def _elf(self, folder: str, **kwargs) -> Path:
        from mcuquant.build.pio import build_project
        from mcuquant.build.project import generate_project

        project = generate_project(self.name, self.work / f"{self.name}-{folder}", **kwargs)
        return build_project(project, progress=False).elf

    def run_raw(self):
        from mcuquant.boards import get_board
        from mcuquant.device.qemu import QemuEmulator

        return QemuEmulator(get_board(self.name), self._elf("raw", app_dir=RAW_SINK))

    def run_model(self, tflite: bytes):
        from mcuquant.boards import get_board
        from mcuquant.device.qemu import QemuEmulator

        return QemuEmulator(get_board(self.name), self._elf(f"model-{len(tflite)}", tflite=tflite))


# -- measurements ----------------------------------------------------------------------------


def raw_rates(target, n_bytes: int) -> tuple[float, float]:
    """(host-to-device, device-to-host) bytes/s of the raw sink firmware, best of three bursts."""
    import serial

    burst = np.random.default_rng(0).integers(2, 256, n_bytes, dtype=np.uint8).tobytes() + b"\x00"
    up, down = [], []
    with target.run_raw() as fw:
        port = serial.serial_for_url(fw.url, timeout=60)
        try:
            for _ in range(3):
                start = time.perf_counter()
                port.write(burst)
                count = int.from_bytes(port.read(4), "little")
                up.append(n_bytes / (time.perf_counter() - start))
                assert count == n_bytes, f"raw sink counted {count} bytes of {n_bytes}"
                start = time.perf_counter()
                port.write(b"\x01")
                got = 0
                while got < n_bytes:
                    got += len(port.read(n_bytes - got))
                down.append(n_bytes / (time.perf_counter() - start))
        finally:
            port.close()
    return max(up), max(down)


def protocol_rate(target, tflite: bytes, samples: int, window: int | None) -> dict:
    import hashlib

    import serial

    from mcuquant.device.harness import measure
    from mcuquant.device.link import Link

    with target.run_model(tflite) as fw:
        port = RecordingPort(serial.serial_for_url(fw.url, timeout=1.0, write_timeout=1.0))
        link = Link(port, expected_sha256=hashlib.sha256(tflite).hexdigest(), name=target.name,
                    invoke_timeout=60.0, window=window)
        try:
            info = link.handshake()
            spec = info.inputs[0]
            xq = np.random.default_rng(1).integers(-128, 128, (samples, *spec.sample_shape), dtype=np.int8)
            sent0, recv0 = port.sent, port.received
            run = measure(link, xq, progress=False)
        finally:
            link.close()
    in_bytes = sum(s.nbytes for s in info.inputs)
    out_bytes = sum(s.nbytes for s in info.outputs)
    return {
        "samples_per_s": samples / run.seconds,
        "input_bytes": in_bytes,
        "output_bytes": out_bytes,
        "input_bytes_per_s": in_bytes * samples / run.seconds,
        "output_bytes_per_s": out_bytes * samples / run.seconds,
        "wire_bytes_per_sample": ((port.sent - sent0) + (port.received - recv0)) / samples,
        "median_count": float(np.median(run.counts)),
        "counter_unit": info.counter_unit,
        "window": min(info.window, window or info.window),
        "resends": run.resends,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--targets", default="host,host:16384,qemu-nano33")
    parser.add_argument("--raw-bytes", type=int, default=0, help="raw burst size (default: 4 MB host, 256 KB QEMU)")
    parser.add_argument("--models", default="", help="comma-separated subset of the models")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)

    models = build_models()
    if args.models:
        models = {k: v for k, v in models.items() if k in args.models.split(",")}
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-link-") as tmp:
        for name in args.targets.split(","):
            host = name.split(":")[0] == "host"
            target = HostTarget(name, Path(tmp)) if host else QemuTarget(name, Path(tmp))
            n_raw = args.raw_bytes or ((4 << 20) if host else (256 << 10))
            up, down = raw_rates(target, n_raw)
            print(f"\n{name}: raw transport {up:,.0f} bytes/s host->device, {down:,.0f} bytes/s device->host "
                  f"({n_raw:,}-byte bursts)")
            print(f"  {'model':16} {'samples/s':>10} {'in B':>6} {'in bytes/s':>12} {'of raw':>7} {'out bytes/s':>12} "
                  f"{'wire B/sample':>13} {'median count':>16} {'window':>6} {'resends':>7}")
            rows = {}
            for model, tflite in models.items():
                for window in (1, None):  # one request at a time (as protocol v2), then the device's window
                    r = protocol_rate(target, tflite, args.samples, window)
                    rows[f"{model} window {r['window']}"] = r
                    print(f"  {model:16} {r['samples_per_s']:10,.1f} {r['input_bytes']:6,} "
                          f"{r['input_bytes_per_s']:12,.0f} {r['input_bytes_per_s'] / up:7.1%} "
                          f"{r['output_bytes_per_s']:12,.0f} {r['wire_bytes_per_sample']:13,.0f} "
                          f"{r['median_count']:12,.0f} {r['counter_unit'][:3]} {r['window']:6} {r['resends']:7}")
            results[name] = {"raw_up_bytes_per_s": up, "raw_down_bytes_per_s": down, "models": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
