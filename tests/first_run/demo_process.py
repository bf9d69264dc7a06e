"""Run ``ziti-scim demo`` as a user does (a subprocess) and read what it prints."""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BANNER_END = "A user without an email is stored too"
STARTUP_SECONDS = 120.0
# A user's Ctrl-C comes from a terminal, where SIGINT has its default action. A test run started in the
# background by a shell without job control (nohup, CI wrappers) ignores SIGINT, and an ignored signal
# stays ignored across exec: the demo would stop on our SIGINT through uvicorn's handler but exit 0.
_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


@dataclass
class Demo:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def value(self, label: str) -> str:
        for line in self.lines:
            if line.strip().startswith(label):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"the demo printed no {label!r} line: {self.lines}")

    @property
    def scim(self) -> str:
        return self.value("SCIM endpoint")

    @property
    def token(self) -> str:
        return self.value("bearer token")

    @property
    def management(self) -> str:
        return self.value("controller emulator").split()[0]

    @property
    def password(self) -> str:
        found = re.search(r"\(admin / (.+)\)$", self.value("controller emulator"))
        assert found, self.lines
        return found.group(1)

    @property
    def url(self) -> str:
        return self.scim.removesuffix("/scim/v2")

    def block(self, first: str, last: str) -> str:
        """The printed lines from the one starting with ``first`` to the next ending with ``last``, joined."""
        start = next(i for i, line in enumerate(self.lines) if line.strip().startswith(first))
        end = next(i for i in range(start, len(self.lines)) if self.lines[i].rstrip().endswith(last))
        return "\n".join(self.lines[start : end + 1])

    @property
    def create_user_curl(self) -> str:
        return self.block("curl -s -H 'Authorization: Bearer", "/Users")

    @property
    def show_identity_commands(self) -> str:
        return self.block("S=$(curl", "%22'")


def _pump(stream: Any, sink: queue.Queue[tuple[str, str | None]], name: str) -> None:
    for line in stream:
        sink.put((name, line.rstrip("\n")))
    sink.put((name, None))


@contextmanager
def running_demo(command: list[str], cwd: Path, *args: str) -> Iterator[Demo]:
    """Start the demo, wait for its banner and for its SCIM endpoint to answer; stop it (SIGINT) after."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ZITI_SCIM_EMULATOR_PASSWORD", None)
    process = subprocess.Popen(
        [sys.executable, "-c", _WITH_DEFAULT_SIGINT, *command, "demo", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    demo = Demo(process)
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    for name, stream in (("out", process.stdout), ("err", process.stderr)):
        threading.Thread(target=_pump, args=(stream, lines, name), daemon=True).start()

    def drain(until: float) -> bool:
        """Collect lines until the banner is complete; False when the process has ended first."""
        open_streams = 2
        while open_streams:
            try:
                name, line = lines.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no demo banner in time: {demo.lines} {demo.stderr}") from None
            if line is None:
                open_streams -= 1
                continue
            (demo.lines if name == "out" else demo.stderr).append(line)
            if name == "out" and line.startswith(BANNER_END):
                return True
        return False

    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        if drain(deadline):
            threading.Thread(target=_keep_draining, args=(lines, demo), daemon=True).start()
            _wait_ready(demo, deadline)
        else:
            process.wait(timeout=30)
        yield demo
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def _keep_draining(lines: queue.Queue[tuple[str, str | None]], demo: Demo) -> None:
    while True:
        name, line = lines.get()
        if line is not None:
            (demo.lines if name == "out" else demo.stderr).append(line)


def _wait_ready(demo: Demo, deadline: float) -> None:
    """uvicorn binds after the banner: poll the discovery endpoint (no auth needed) until it answers."""
    while True:
        assert demo.process.poll() is None, f"the demo ended: {demo.stderr}"
        try:
            if httpx.get(f"{demo.scim}/ServiceProviderConfig", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the demo's SCIM endpoint never answered"
        time.sleep(0.05)


def run_printed_curl(command: str) -> tuple[int, str]:
    """Run the printed ``curl`` as printed (with bash) when curl is installed, else its httpx equivalent.

    Returns the HTTP status and the body.
    """
    if shutil.which("curl"):
        done = subprocess.run(
            ["bash", "-c", command + " -w '\\n%{http_code}'"], text=True, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        body, _, status = done.stdout.rpartition("\n")
        return int(status), body
    words = shlex.split(command.replace("\\\n", " "))
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    body = next(words[i + 1] for i, word in enumerate(words) if word == "-d")
    response = httpx.post(words[-1], headers=headers, content=body, timeout=60)
    return response.status_code, response.text
