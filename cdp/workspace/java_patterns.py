"""Regular expressions and date-time formats checked by the Java classes Spark will compile them with.

Spark's ``rlike`` compiles a pattern with ``java.util.regex.Pattern`` and its CSV writer formats dates
with ``java.time.format.DateTimeFormatter``. Python's ``re`` is a different dialect (``\\p{Alpha}`` is
Java only, ``(?P<name>...)`` Python only), so a pattern Python accepts can fail the whole audience
evaluation, hours into the run. :func:`check_patterns` compiles them in a JVM instead:

- the JVM of a running SparkContext when the process has one (a job, the test session);
- otherwise one small JVM started through py4j's ``launch_gateway`` (the py4j jar ships with pyspark),
  bound to 127.0.0.1 with an auth token, stopped as soon as the patterns are compiled. It starts only
  when there is a pattern whose result is not cached yet (results are cached per process: a pattern's
  validity never changes).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Iterable
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


def check_patterns(patterns: Iterable[tuple[PatternKind, str]]) -> dict[tuple[PatternKind, str], str | None]:
    """Compile every (kind, text) with Java: None where it compiles, else Java's error description.

    Raises JavaUnavailable (with the problem's wording) when no JVM is running or can be started.
    """
    wanted = list(dict.fromkeys(patterns))
    todo = [p for p in wanted if p not in _cache]
    if todo:
        jvm = _spark_jvm()
        _cache.update(_compile_all(jvm, todo) if jvm is not None else _launch_and_compile(todo))
    return {p: _cache[p] for p in wanted}
