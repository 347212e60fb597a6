"""A real ``tensorboard`` process on 127.0.0.1, for tests that query its HTTP API."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Every HParams session status, for ``session_groups`` requests.
ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TensorBoardServer:
    """The base URL of a running server, with JSON helpers."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST a JSON body (the HParams plugin's routes take their request proto as JSON)."""
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def hparams_experiment(self) -> Any:
        return self.post("/data/plugin/hparams/experiment",
                         {"experimentName": "", "includeMetrics": True})

    def session_groups(self) -> list[dict[str, Any]]:
        body = {"experimentName": "", "allowedStatuses": ALL_STATUSES, "colParams": [],
                "startIndex": 0, "sliceSize": 1000, "includeMetrics": True}
        return self.post("/data/plugin/hparams/session_groups", body)["sessionGroups"]


@contextlib.contextmanager
def tensorboard_server(logdir: Path, *, attempts: int = 3,
                       start_timeout_s: float = 90.0) -> Iterator[TensorBoardServer]:
    """Start ``tensorboard --logdir LOGDIR --host 127.0.0.1 --port N`` and wait until it answers.

    The event files are loaded once, before the server starts answering
    (``--reload_task blocking``), so the first answer already has every run. The process is
    always terminated. A port taken between choosing it and binding it is retried.
    """
    last_output = ""
    for _ in range(attempts):
        port = _free_port()
        command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                   "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false",
                   "--reload_task", "blocking", "--reload_interval", "0"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            server = TensorBoardServer(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + start_timeout_s
            answered = False
            while not answered and time.monotonic() < deadline and proc.poll() is None:
                try:
                    server.get("/data/runs")
                    answered = True
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(0.25)
            if answered:
                yield server
                return
            if proc.poll() is None:
                raise RuntimeError(f"tensorboard did not answer within {start_timeout_s}s")
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
            last_output = proc.stdout.read() if proc.stdout else ""
            if proc.stdout:
                proc.stdout.close()
    raise RuntimeError(f"tensorboard did not start; its output ended with:\n{last_output[-2000:]}")
