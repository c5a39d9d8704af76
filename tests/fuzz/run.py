"""`make fuzz`: coverage-guided fuzzing (atheris, libFuzzer) of the reader and a whole in-process audit for a fixed
budget. An input's first byte picks the container (.jsonl, .json, .jsonl.gz), the rest is the file. Anything raised
but the reader's InputError is a crash: the input is saved under FUZZ_CRASHES (default bench/out/fuzz-crashes) with
its traceback, fuzzing goes on, and a summary (inputs tried, crashes) is printed when FUZZ_SECONDS (default 300) are up.
The seed corpus is the hostile files of tests/fuzz/inputs.py. Replay one input: python -m tests.fuzz.run FILE."""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import atheris

os.environ["DATAKIT_SERIAL_MEASURES"] = "1"  # the audit stays in this process, where atheris sees its coverage

with atheris.instrument_imports(include=["datakit", "validators", "schemas"]):
    from datakit.audit import Audit
    from datakit.io.read import InputError, read_raw
    from schemas.config import AuditConfig

from tests.fuzz.inputs import SUFFIXES, write

BUDGET = float(os.environ.get("FUZZ_SECONDS", "300"))
CRASHES = Path(os.environ.get("FUZZ_CRASHES", "bench/out/fuzz-crashes"))
SEEDS = 60
WORK = Path(tempfile.mkdtemp(prefix="datakit-fuzz-"))
counts = {"inputs": 0, "refused": 0, "crashes": 0}
distinct: set[str] = set()  # names of the crashing inputs (libFuzzer runs some inputs more than once)
started = time.monotonic()


def feed(data: bytes) -> None:
    """Read and audit one input; raises whatever they raise but InputError."""
    suffix = SUFFIXES[data[0] % len(SUFFIXES)] if data else ".jsonl"
    path = write(WORK, data[1:], suffix, name=f"input-{counts['inputs']}")
    try:
        read_raw(path)
        with Audit(path, AuditConfig(), workers=1) as run:
            assert run.report.profile.records >= 0
    except InputError as e:
        assert str(path) in str(e), f"InputError without the file's name: {e}"
        counts["refused"] += 1
    finally:
        path.unlink(missing_ok=True)


def one_input(data: bytes) -> None:
    counts["inputs"] += 1
    try:
        feed(data)
    except Exception:  # noqa: BLE001 -- every other exception is what fuzzing looks for
        counts["crashes"] += 1
        CRASHES.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()[:16]
        distinct.add(name)
        (CRASHES / f"{name}.bin").write_bytes(data)
        (CRASHES / f"{name}.txt").write_text(traceback.format_exc(), encoding="utf-8")
        print(f"CRASH saved to {CRASHES / name}.bin:\n{traceback.format_exc()}", file=sys.stderr)
    if time.monotonic() - started > BUDGET:
        summary()
        shutil.rmtree(WORK, ignore_errors=True)
        os._exit(1 if counts["crashes"] else 0)


def summary() -> None:
    print(f"fuzz summary: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {platform.machine()} "
          f"{os.cpu_count()} cores, {time.monotonic() - started:.0f} s: {counts['inputs']:,} inputs tried "
          f"({counts['refused']:,} refused with InputError), {counts['crashes']} crashes"
          + (f" ({len(distinct)} distinct inputs, saved in {CRASHES})" if counts["crashes"] else ""), flush=True)


def seed_corpus(folder: Path) -> Path:
    """Hostile files from the property tests' generators, one per container, as libFuzzer's starting corpus."""
    from hypothesis import errors
    from hypothesis import strategies as st

    from tests.fuzz.inputs import near_json

    warnings.simplefilter("ignore", errors.NonInteractiveExampleWarning)
    folder.mkdir(exist_ok=True)
    example = st.tuples(st.integers(0, len(SUFFIXES) - 1), near_json())
    for i in range(SEEDS):
        kind, data = example.example()
        (folder / f"seed-{i}").write_bytes(bytes([kind]) + data)
    return folder


def main() -> None:
    if len(sys.argv) > 1 and Path(sys.argv[1]).is_file():  # replay one saved input
        feed(Path(sys.argv[1]).read_bytes())
        print("no crash")
        return
    corpus = seed_corpus(WORK / "corpus")
    atheris.Setup([sys.argv[0], "-max_len=4096", "-timeout=120", f"-max_total_time={int(BUDGET) + 600}", str(corpus)],
                  one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
