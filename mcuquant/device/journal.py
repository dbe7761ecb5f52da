"""Per-sample results of a device measurement, recorded as they arrive, so nothing measured is lost.

    journal = Journal.open(out / "ptq_device_journal.jsonl", identity, resume=True)
    for i in journal.missing(len(xq)):
        journal.record(i, *link.infer(xq[i]))

A journal is a JSON-lines file: the first line says what is measured (the identity: model and
firmware SHA-256, the inputs' SHA-256, board, sample count), each further line one sample
(index, output bytes as hex, counter delta), flushed as soon as it is measured. A run that fails
or is interrupted leaves the journal behind; `mcuquant validate --resume` opens it again, checks
that it measured the same model on the same firmware with the same inputs, and measures only the
missing samples. A half-written last line (the process was killed while writing it) is ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mcuquant.errors import ConfigError

FORMAT = 1


class Journal:
    def __init__(self, path: Path, identity: dict, entries: dict[int, tuple[bytes, int]]):
        self.path = path
        self.identity = identity
        self.entries = entries  # index -> (output bytes, counter delta)
        self.device: dict | None = None  # the handshake of the run that measured them
        self._file = None

    @classmethod
    def open(cls, path: str | Path, identity: dict, *, resume: bool = False) -> Journal:
        """The journal at ``path`` for ``identity``: continued when ``resume`` (it must record the
        same identity), else started afresh."""
        path = Path(path)
        identity = {"journal": FORMAT, **identity}
        entries: dict[int, tuple[bytes, int]] = {}
        if resume and path.is_file():
            lines = path.read_text().splitlines()
            recorded = _parsed(lines[0]) if lines else None
            if recorded != identity:
                raise ConfigError(f"{path} does not record this measurement (" + _difference(recorded, identity)
                                  + "): run validate without --resume to measure again")
            device = None
            for line in lines[1:]:
                entry = _parsed(line)
                if entry is None:
                    continue  # the last line, cut short when the run was killed
                if "device" in entry:
                    device = entry["device"]
                else:
                    entries[int(entry["i"])] = (bytes.fromhex(entry["out"]), int(entry["count"]))
            journal = cls(path, identity, entries)
            journal.device = device
            journal._file = path.open("a")
            if lines and _parsed(lines[-1]) is None:
                journal._file.write("\n")  # close off the cut line
            return journal
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = cls(path, identity, entries)
        journal._file = path.open("w")
        journal._write(identity)
        return journal

    def record_device(self, device: dict) -> None:
        """The handshake of the device measuring (what a resumed run reports when none is left)."""
        self.device = device
        self._write({"device": device})

    def missing(self, n: int) -> list[int]:
        return [i for i in range(n) if i not in self.entries]

    def record(self, index: int, output: np.ndarray, count: int) -> None:
        data = np.ascontiguousarray(output).tobytes()
        self.entries[index] = (data, int(count))
        self._write({"i": int(index), "out": data.hex(), "count": int(count)})

    def arrays(self, n: int, dtype: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(outputs (n, *shape), counter deltas (n,)) of samples 0..n-1, all of which are recorded."""
        outputs = np.stack([np.frombuffer(self.entries[i][0], dtype=dtype).reshape(shape) for i in range(n)])
        counts = np.asarray([self.entries[i][1] for i in range(n)], dtype=np.int64)
        return outputs, counts

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()  # a killed run keeps every line written


def _parsed(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _difference(recorded: dict | None, identity: dict) -> str:
    if recorded is None:
        return "it has no readable first line"
    keys = [k for k in identity if recorded.get(k) != identity[k]]
    return ", ".join(f"{k}: {recorded.get(k)!r} there, {identity[k]!r} now" for k in keys) or "another format"
