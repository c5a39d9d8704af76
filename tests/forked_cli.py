"""Run a console command many times without paying its imports each time, to kill it at chosen moments.

A server process imports the costly libraries once (`preload`); each run is a fork of it that imports the command's
module and calls its `main()` with the given arguments, exactly as the console script does, so what a run does and
leaves on disk is the command's own. Only fork-safe libraries may be preloaded: polars starts a thread pool that a
forked child would wait on forever, so the command's own modules (and polars) are imported after the fork. The test kills runs by pid and has the server reap them (a reaped pid is gone, as after a real kill).
Used where imports (torch, transformers) cost more than the work (tests/test_train_resume.py).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

SERVER = """
import importlib, json, os, sys
module = sys.argv[1]
for name in sys.argv[2:]:
    importlib.import_module(name)
print("ready", flush=True)
for line in sys.stdin:
    op, arg = line.split(" ", 1)
    if op == "wait":
        status = os.waitpid(int(arg), 0)[1]
        print(os.waitstatus_to_exitcode(status), flush=True)
        continue
    argv, log = json.loads(arg)
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        continue
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.argv = argv
    try:
        importlib.import_module(module).main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
"""


class ForkedCli:
    """`start(args)` forks a run of the command and returns its pid; `wait(pid)` reaps it and returns its exit
    status (negative: the signal that ended it)."""

    def __init__(self, module: str, name: str, log: Path, preload: tuple[str, ...] = ()):
        self.name, self.log = name, log
        self.server = subprocess.Popen([sys.executable, "-c", SERVER, module, *preload], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.server.stdout.readline().strip() == "ready"

    def start(self, *args: object) -> int:
        self.server.stdin.write("run " + json.dumps([[self.name, *map(str, args)], str(self.log)]) + "\n")
        return int(self.server.stdout.readline())

    def wait(self, pid: int, timeout: float = 300) -> int:
        """Reap run `pid`; one still running after `timeout` seconds is killed (a hang fails the test, not CI)."""
        self.server.stdin.write(f"wait {pid}\n")
        if not select.select([self.server.stdout], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"{self.name} run {pid} still running after {timeout} s; killed")
        return int(self.server.stdout.readline())

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=60)
