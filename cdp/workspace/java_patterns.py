"""Regular expressions and date-time formats checked by the Java classes Spark will compile them with.

Spark's ``rlike`` compiles a pattern with ``java.util.regex.Pattern`` and its CSV writer formats dates
with ``java.time.format.DateTimeFormatter``. Python's ``re`` is a different dialect (``\\p{Alpha}`` is
Java only, ``(?P<name>...)`` Python only), so a pattern Python accepts can fail the whole audience
evaluation, hours into the run. :func:`check_patterns` compiles them in a JVM instead:

- the JVM of a running SparkContext when the process has one (a job, the test session);
- otherwise one small JVM started through py4j's ``launch_gateway`` (the py4j jar ships with pyspark),
  bound to 127.0.0.1 with an auth token, stopped as soon as the patterns are compiled. It starts only
  when there is a pattern whose result is not cached yet.

A pattern's validity never changes for one Java installation, so results are cached in the process and in a
small JSON file per Java installation (``$CDP_CACHE_DIR``, else ``$XDG_CACHE_HOME/cdp`` or ``~/.cache/cdp``):
every task of a run loads the workspace, and a Spark Connect client has no JVM of its own, so without the file
each task would start one (half a second on a quiet machine, seconds on a busy one). A missing or unreadable
file only means the JVM starts again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

PatternKind = Literal["regex", "datetime"]
# (kind, text) -> None when it compiles, else Java's description of the error
_cache: dict[tuple[PatternKind, str], str | None] = {}


class JavaUnavailable(Exception):
    """No JVM could be started to compile the patterns; the message says what to install or set."""


def java_executable() -> str | None:
    """The ``java`` Spark would use: $JAVA_HOME/bin/java when JAVA_HOME is set, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = os.path.join(java_home, "bin", "java")
        return candidate if os.access(candidate, os.X_OK) else None
    return shutil.which("java")


def _spark_jvm() -> Any:
    """The JVM of the process's active SparkContext, if pyspark is already loaded and running one."""
    pyspark = sys.modules.get("pyspark")
    if pyspark is None:
        return None
    context = pyspark.SparkContext._active_spark_context
    return context._jvm if context is not None else None


def _compile_all(jvm: Any, todo: list[tuple[PatternKind, str]]) -> dict[tuple[PatternKind, str], str | None]:
    from py4j.protocol import Py4JJavaError

    regex = jvm.java.util.regex.Pattern
    formatter = jvm.java.time.format.DateTimeFormatter
    out: dict[tuple[PatternKind, str], str | None] = {}
    for kind, text in todo:
        try:
            if kind == "regex":
                regex.compile(text)
            else:
                formatter.ofPattern(text)
            out[(kind, text)] = None
        except Exception as exc:
            # Through py4j the error is a Py4JJavaError; once pyspark has installed its exception handler (a
            # Spark session in the process), the same error arrives converted, the Java one in ``_origin``.
            java = exc.java_exception if isinstance(exc, Py4JJavaError) else getattr(exc, "_origin", None)
            if java is None:
                raise
            if kind == "regex":
                # getMessage() spans three lines (pattern and caret); description and index say it in one.
                index = java.getIndex()
                out[(kind, text)] = java.getDescription() + (f" near index {index}" if index >= 0 else "")
            else:
                out[(kind, text)] = str(java.getMessage())
    return out


def _launch_and_compile(todo: list[tuple[PatternKind, str]]) -> dict[tuple[PatternKind, str], str | None]:
    from py4j.java_gateway import GatewayParameters, JavaGateway, launch_gateway

    java = java_executable()
    if java is None:
        where = f"JAVA_HOME={os.environ['JAVA_HOME']} has no bin/java" if os.environ.get("JAVA_HOME") else \
            "no 'java' on PATH and JAVA_HOME is not set"
        raise JavaUnavailable(f"cannot be checked with Java, the dialect Spark uses: {where}; install Java 17 "
                              "(apt-get install openjdk-17-jre-headless) or set JAVA_HOME")
    started = time.perf_counter()
    try:
        # A tiny heap and the client compiler: the JVM only compiles a few patterns.
        port, token, proc = launch_gateway(
            java_path=java, die_on_exit=True, enable_auth=True, return_proc=True,
            javaopts=["-Xmx64m", "-Xss1m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto"])
    except Exception as exc:  # a JVM that does not start: any error of the launch is the same problem
        raise JavaUnavailable(f"cannot be checked with Java, the dialect Spark uses: {java} did not start "
                              f"({type(exc).__name__}: {exc}); check the Java installation") from None
    gateway = JavaGateway(gateway_parameters=GatewayParameters(port=port, auth_token=token, auto_convert=True))
    try:
        return _compile_all(gateway.jvm, todo)
    finally:
        gateway.shutdown()
        # --die-on-broken-pipe: closing the JVM's stdin is what makes it exit at once.
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()
        log.debug("compiled %d pattern(s) in a JVM started for it in %.2f s", len(todo),
                  time.perf_counter() - started)


def cache_file() -> Path | None:
    """The results file of this Java installation (None without a ``java``: nothing can be cached for it)."""
    java = java_executable()
    if java is None:
        return None
    real = os.path.realpath(java)
    try:
        stamp = f"{real}:{os.stat(real).st_mtime_ns}"
    except OSError:
        return None
    root = os.environ.get("CDP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "cdp")
    return Path(root) / f"java-patterns-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.json"


def _read_cache_file(path: Path | None) -> dict[tuple[PatternKind, str], str | None]:
    if path is None:
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return {(kind, text): error for kind, text, error in entries if kind in ("regex", "datetime")}
    except (OSError, ValueError, TypeError):
        return {}


def _write_cache_file(path: Path | None, results: dict[tuple[PatternKind, str], str | None]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**_read_cache_file(path), **results}
        # Written aside then renamed: tasks running at once never read half a file.
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".java-patterns-")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(sorted([kind, text, error] for (kind, text), error in merged.items()), out)
        os.replace(temp, path)
    except OSError as exc:
        log.debug("could not cache the compiled patterns in %s: %s", path, exc)


def check_patterns(patterns: Iterable[tuple[PatternKind, str]]) -> dict[tuple[PatternKind, str], str | None]:
    """Compile every (kind, text) with Java: None where it compiles, else Java's error description.

    Raises JavaUnavailable (with the problem's wording) when no JVM is running or can be started.
    """
    wanted = list(dict.fromkeys(patterns))
    if any(p not in _cache for p in wanted):
        stored = cache_file()
        known = _read_cache_file(stored)
        _cache.update({p: known[p] for p in wanted if p not in _cache and p in known})
        todo = [p for p in wanted if p not in _cache]
        if todo:
            jvm = _spark_jvm()
            compiled = _compile_all(jvm, todo) if jvm is not None else _launch_and_compile(todo)
            _cache.update(compiled)
            _write_cache_file(stored, compiled)
    return {p: _cache[p] for p in wanted}
