"""ONNX -> TFLite in a child process that loads TensorFlow while the parent is still busy.

A fresh `edgepipe export` spends 3-4 s importing TensorFlow and onnx2tf, single-threaded; started
at once, the child does that on the second core while the parent exports from PyTorch (and, after
the ONNX file is handed over, computes the reference outputs validation needs). A converter that
aborts (TFLite's kernels check their quantization parameters with abort()) ends the child only:
the export then fails with one line instead of taking the whole process down.

The protocol is pickles over two pipes: one request (export_tflite_variants' arguments), then
progress messages, and one exception or the child's peak memory and the result.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from edgepipe.models.shared.errors import ExportError
from edgepipe.models.shared.memory import older_objects_frozen, process_memory
from edgepipe.models.shared.progress import LOG, step, tick


def in_a_child(choice: str) -> bool:
    """Whether to convert in a child process: [export] converter's "child" or "in_process", or for "auto"
    whether a child saves time (worth_a_child)."""
    return worth_a_child() if choice == "auto" else choice == "child"


def worth_a_child() -> bool:
    """Whether converting in a child saves time: TensorFlow is not loaded yet and a second core is free for it.

    A warm process (a test session, a batch worker's later jobs) converts in-process, as does one
    given a single core (OMP_NUM_THREADS=1 or an affinity of one CPU).
    """
    threads = os.environ.get("OMP_NUM_THREADS", "")
    cores = min(len(os.sched_getaffinity(0)), int(threads) if threads.isdigit() and int(threads) > 0 else 1 << 10)
    return "tensorflow" not in sys.modules and cores >= 2


class ConverterProcess:
    """A child that imports the converter stack at once and converts one ONNX file when asked."""

    def __init__(self, log_path: Path, timeout_s: float | None = None):
        self.log_path = Path(log_path).resolve()
        self.timeout_s = timeout_s
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        request_read, self._request = os.pipe()
        self._reply, reply_write = os.pipe()
        self.peak_rss_mib: float | None = None  # the child's own VmHWM, which it reports with its result
        self._child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgepipe.exporters.converter_process",
                str(request_read),
                str(reply_write),
                str(self.log_path),
            ],
            pass_fds=(request_read, reply_write),
            stdin=subprocess.DEVNULL,
        )
        os.close(request_read)
        os.close(reply_write)
        self._exchange: threading.Thread | None = None

    def submit(self, **arguments) -> None:
        """Hand the child export_tflite_variants' arguments; it converts while this process goes on."""
        self._outcome = ("error", ExportError("the converter process gave no answer"))
        self._exchange = threading.Thread(target=self._talk, args=(arguments,), daemon=True)
        self._exchange.start()

    def result(self) -> dict:
        """What export_tflite_variants returned in the child; its progress showed here, its errors raise here.

        A child still converting after timeout_s seconds is killed, and the export fails.
        """
        self._exchange.join(self.timeout_s)
        if self._exchange.is_alive():
            self._child.kill()
            self._exchange.join()  # the killed child's pipe closes, and the exchange ends
            raise ExportError(
                f"the ONNX -> TFLite conversion did not finish within {self.timeout_s:g} s and was stopped; "
                f"raise [export] converter_timeout_s if the model needs longer (the converter's log: {self.log_path})"
            )
        kind, value = self._outcome
        if kind == "error":
            raise value
        return value

    def _talk(self, arguments: dict) -> None:
        try:
            with os.fdopen(self._request, "wb") as request:
                pickle.dump(arguments, request, protocol=pickle.HIGHEST_PROTOCOL)
        except BrokenPipeError:  # the child died while it loaded; its reply pipe says how
            pass
        with os.fdopen(self._reply, "rb") as reply:
            while True:
                try:
                    kind, value = pickle.load(reply)
                except (EOFError, pickle.UnpicklingError):
                    self._outcome = ("error", ExportError(self._death()))
                    return
                if kind in ("step", "tick"):
                    (step if kind == "step" else tick)(value)
                    continue
                if kind == "peak":
                    self.peak_rss_mib = value
                    continue
                self._child.wait()
                self._outcome = (kind, value)
                return

    def close(self) -> None:
        """Stop the child if it is still running (the export failed before its result came)."""
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait()
        if self._exchange is not None:
            self._exchange.join()  # it owns both pipes and closes them
        else:
            os.close(self._request)
            os.close(self._reply)

    def _death(self) -> str:
        code = self._child.wait()
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
        return (
            f"the ONNX -> TFLite converter process died ({how}) without a result; "
            f"the converter's own words are in {self.log_path}"
        )

    def __enter__(self) -> ConverterProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Forward(logging.Handler):
    """Progress records of the child, sent to the parent as messages."""

    def __init__(self, send):
        super().__init__(logging.INFO)
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        self.send(getattr(record, "progress", "step"), record.getMessage())


def _child(request_fd: int, reply_fd: int, log_path: Path) -> None:
    started = time.perf_counter()
    reply = os.fdopen(reply_fd, "wb")
    lock = threading.Lock()

    def send(kind: str, value) -> None:
        message = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)  # whole, or not at all
        with lock:
            reply.write(message)
            reply.flush()

    LOG.addHandler(_Forward(send))
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    # Nothing the stack prints may reach the parent's stdout (which may carry --json) or its console.
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    import onnx2tf  # noqa: F401  the import this process exists to make early
    import onnxsim  # noqa: F401

    from edgepipe.exporters.convert import export_tflite_variants

    # The converter stack's modules are most of what a garbage collection would walk: left out of
    # them, and collected once while the parent still exports.
    with older_objects_frozen():
        _convert_on_request(export_tflite_variants, request_fd, send, started)


def _convert_on_request(export_tflite_variants, request_fd: int, send, started: float) -> None:
    """Wait for the parent's one request, convert, and send back the peak and the result, or the error."""
    ready = time.perf_counter()
    with os.fdopen(request_fd, "rb") as request:
        try:
            arguments = pickle.load(request)
        except EOFError:  # the parent failed before it had a file to convert
            return
    waited = time.perf_counter() - ready
    pid = os.getpid()
    print(f"edgepipe: converter {pid} loaded TensorFlow in {ready - started:.1f} s, waited {waited:.1f} s", flush=True)
    try:
        result = export_tflite_variants(**arguments)
    except BaseException as exc:  # every failure goes back to the parent, which raises it
        try:
            send("error", exc)
        except Exception:  # an exception that does not pickle still reaches the user as one line
            send("error", ExportError(f"{type(exc).__name__}: {exc}"))
        return
    # Its high-water mark, which the parent cannot read once this process has ended.
    send("peak", (process_memory() or (None, None))[1])
    send("result", result)


if __name__ == "__main__":
    _child(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
