"""A child process that serves a device link (QEMU, the host firmware) and never outlives its use.

It runs in its own process group, so stopping it ends everything it started. It is stopped on
`stop()`, on leaving a `with` block, and, if a caller forgets, when the object is collected or the
interpreter exits (weakref.finalize). What it prints on stderr goes to a temporary file, kept after
it stopped, so an error can quote it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import weakref


def stop_process_group(proc: subprocess.Popen, grace: float = 2.0) -> None:
    """End ``proc``'s process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
    if proc.poll() is None:
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


class ManagedProcess:
    """Base of QemuEmulator and HostFirmware: spawning, stopping and the captured stderr.

    Subclasses implement ``start()`` (which calls ``_spawn``) and return ``self`` from it.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._stderr = None
        self._stderr_text = ""
        self._finalizer = None

    def _spawn(self, command: list[str], *, stdout_pipe: bool, env: dict | None = None,
               preexec_fn=None) -> subprocess.Popen:
        """Start ``command`` in a new session; stderr (and stdout unless ``stdout_pipe``) to a temporary file."""
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if stdout_pipe else self._stderr,
            stderr=self._stderr, env=env, start_new_session=True, preexec_fn=preexec_fn)
        # Stop it even if the caller forgets (or the interpreter exits with it running).
        self._finalizer = weakref.finalize(self, stop_process_group, self.proc)
        return self.proc

    def stop(self) -> None:
        """End the process (its whole group) and keep what it printed."""
        if self._finalizer is not None:
            self._finalizer()  # runs stop_process_group once
        if self._stderr is not None:
            self._stderr_text = self.stderr_text()
            self._stderr.close()
            self._stderr = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process ended, else None."""
        return self.proc.poll() if self.proc else None

    def stderr_text(self) -> str:
        """What the process printed so far (sanitizer and fault reports land here)."""
        if self._stderr is None:
            return self._stderr_text
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def start(self):
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
