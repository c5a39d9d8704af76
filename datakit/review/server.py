"""`datakit review`: audit (or read the saved report), start the review app on 127.0.0.1, print its URL with the
token, open the browser, serve until Ctrl-C.

The decisions file is locked for as long as the server runs (two reviews appending to one file would interleave), and
every decision is already on disk when the page shows it, so stopping the server at any moment loses nothing.
"""
from __future__ import annotations

import errno
import secrets
import socket
import sys
import tempfile
import threading
import time
import webbrowser
from dataclasses import dataclass
from pathlib import Path

from datakit.config import build_config
from datakit.io.lock import output_lock
from datakit.io.read import open_raw
from datakit.io.write import sibling
from schemas.config import AuditConfig


@dataclass
class ReviewResult:
    decisions: Path
    decided: int
    flagged: int


def default_decisions(path: str | Path) -> Path:
    """`data.jsonl` -> `data.review.jsonl` beside it."""
    return sibling(path, "review")


def review(path: str | Path, report: str | Path | None = None, decisions: str | Path | None = None, *,
           port: int | None = None, open_browser: bool = True, config: AuditConfig | None = None,
           config_file: str | Path | None = None, progress: bool = True, **options) -> ReviewResult:
    """Serve the review of `path` until interrupted; returns how far the review got."""
    try:
        import uvicorn

        from datakit.review.app import review_app
    except ImportError as e:
        raise ValueError(f"datakit review needs the web server packages ({e.name} is missing): "
                         "pip install 'datakit[review]'.") from None
    from datakit.review.session import Session
    from datakit.review.sources import audited, saved
    from datakit.review.store import RecordStore

    open_raw(path).close()  # a missing file, a directory, a pipe, an empty file: the reader's one-line refusal, now
    if report is not None and (config is not None or config_file is not None or any(v is not None for v in options.values())):
        raise ValueError("--report reviews the findings of that report, made with its own settings: leave out the audit "
                         "options (--only, --label-field, --config, ...), or leave out --report to audit again with them.")
    decisions = Path(decisions) if decisions is not None else default_decisions(path)
    sock = _bound_socket(port)
    with output_lock("datakit review", [decisions]), tempfile.TemporaryDirectory(prefix="datakit-review-") as work:
        if report is not None:
            found = saved(path, report, progress)
        else:
            found = audited(path, config or build_config(config_file, **options), progress)
        store = RecordStore(path, Path(work), progress=progress)
        session = Session(found.source, found.frame, found.config, store, decisions, found.labels, found.records)
        try:
            threading.Thread(target=session.ctx, name="review-warm-up", daemon=True).start()
            token = secrets.token_urlsafe(24)
            bound = sock.getsockname()[1]
            url = f"http://127.0.0.1:{bound}/?token={token}"
            for warning in session.decisions.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            progress_now = session.progress()
            print(f"reviewing {path}: {progress_now['flagged']} flagged records, {progress_now['decided']} decided; "
                  f"decisions -> {decisions}", file=sys.stderr)
            print("open this URL to review (Ctrl-C stops the server):", file=sys.stderr)
            print(url, flush=True)
            server = uvicorn.Server(uvicorn.Config(review_app(session, token, bound), log_level="warning",
                                                   access_log=False, lifespan="off"))
            if open_browser:
                threading.Thread(target=_open_when_started, args=(server, url), daemon=True).start()
            try:
                server.run(sockets=[sock])
            except KeyboardInterrupt:  # uvicorn raises the Ctrl-C it caught again once it has shut down
                pass
            done = session.progress()
        finally:
            session.close()
            sock.close()
    return ReviewResult(decisions, done["decided"], done["flagged"])


def _bound_socket(port: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only on these
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port or 0))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ValueError(f"--port {port}: that port is in use on 127.0.0.1; choose another or leave --port out "
                             "(a free port is picked).") from None
        raise ValueError(f"--port {port}: cannot listen there ({e.strerror}).") from None
    sock.listen(128)
    return sock


def _open_when_started(server, url: str) -> None:
    for _ in range(200):
        if server.started:
            webbrowser.open(url)
            return
        time.sleep(0.05)
