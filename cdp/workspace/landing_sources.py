"""Which datasets of a workspace land on S3, read before any session starts (no pydantic, no pyspark).

A Spark session needs Hadoop's S3A connector (hadoop-aws and the 640 MB AWS SDK bundle) to read files landed on
S3 in place, and its jars must be on the classpath when the JVM starts: the Spark Connect server's start, the
operator's spark-submit and a local session learn it from here (:func:`cdp.spark_conf.s3a_needs`). This reads only
``datasets/*.yaml`` with the workspace's strict YAML loader and looks at ``source.type``; a file that cannot be
read is skipped here (the workspace's own load reports it, with its file and key, when a job starts).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cdp.workspace.yaml_safe import YamlProblem, load_yaml

log = logging.getLogger(__name__)

# cdp.workspace.loader's folder and suffixes, repeated so that this stays free of the models' import (0.3 s).
DATASETS_FOLDER = "datasets"
YAML_SUFFIXES = (".yaml", ".yml")


def s3_landing_datasets(workspace: str | Path) -> dict[str, str]:
    """``{dataset name: s3://bucket/path template}`` of the workspace's datasets whose source is ``type: s3``.

    Empty for a workspace without S3 sources, and for a folder that is no workspace (nothing to read there).
    """
    folder = Path(workspace) / DATASETS_FOLDER
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in YAML_SUFFIXES and not p.name.startswith("."))
    except OSError:
        return {}
    found: dict[str, str] = {}
    for path in files:
        try:
            data = load_yaml(path)
        except (YamlProblem, OSError) as exc:
            log.debug("%s skipped while looking for S3 sources: %s", path, exc)
            continue
        source = data.get("source") if isinstance(data, dict) else None
        if isinstance(source, dict) and source.get("type") == "s3":
            name = str(data.get("name") or path.stem)
            found[name] = f"s3://{source.get('bucket', '')}/{str(source.get('path', '')).strip('/')}"
    return found
