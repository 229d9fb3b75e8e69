"""Where the workspace, the landing zone and the lake are: chosen by environment, with defaults.

| variable        | default                          |
|-----------------|----------------------------------|
| CDP_WORKSPACE   | <repo>/examples/retail           |
| CDP_LAKE        | <repo>/data/lake                 |
| CDP_LANDING     | <repo>/data/landing              |
| CDP_EXPORTS     | <repo>/data/exports              |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
JOBS_DIR = REPO_ROOT / "jobs"
JARS_DIR = Path(os.environ.get("CDP_JARS_DIR", str(REPO_ROOT / ".jars")))


@dataclass(frozen=True)
class Settings:
    """Locations one run works with. Paths may be local folders or URLs Spark understands (s3a://...)."""

    workspace: str
    lake: str
    landing: str
    exports: str

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ) if env is None else env
        return cls(
            workspace=env.get("CDP_WORKSPACE", str(REPO_ROOT / "examples" / "retail")),
            lake=env.get("CDP_LAKE", str(REPO_ROOT / "data" / "lake")),
            landing=env.get("CDP_LANDING", str(REPO_ROOT / "data" / "landing")),
            exports=env.get("CDP_EXPORTS", str(REPO_ROOT / "data" / "exports")),
        )

    def as_args(self) -> list[str]:
        """Command-line arguments that pass these settings to a Spark job."""
        return [
            "--workspace", self.workspace,
            "--lake", self.lake,
            "--landing", self.landing,
            "--exports", self.exports,
        ]
