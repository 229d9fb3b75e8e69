"""Load a workspace folder into typed models, then run every check on it.

Layout of a workspace::

    workspace.yaml          name, merge policies, guardrails, paths policy
    namespaces.yaml         identity namespaces
    schemas/*.yaml          one schema per file
    datasets/*.yaml         one dataset per file
    audiences/*.yaml        one audience per file
    destinations/*.yaml     one destination per file

Every problem is collected with the file and the key it concerns; :func:`load_workspace` raises
one :class:`~cdp.errors.WorkspaceError` listing all of them. Files are read with
:mod:`cdp.workspace.yaml_safe` (UTF-8, bounded, no duplicate keys); the cross-file checks live in
:mod:`cdp.workspace.checks`. A file that fails to load is remembered in ``Workspace.broken`` (under
its declared name, or its file name when it has none), so that references to it are not reported
as well: one mistake, one problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from cdp.errors import WorkspaceError, WorkspaceProblem
from cdp.settings import Settings
from cdp.workspace.checks import CheckContext, run_checks
from cdp.workspace.checks.schemas import RESERVED_PROFILE_COLUMNS
from cdp.workspace.models import (
    DESTINATION_TYPES,
    AudienceSpec,
    DatasetSpec,
    DestinationSpec,
    Namespace,
    SchemaSpec,
    WorkspaceFile,
)
from cdp.workspace.workspace import Workspace
from cdp.workspace.yaml_safe import YamlProblem, load_yaml

__all__ = ["RESERVED_PROFILE_COLUMNS", "Workspace", "load_workspace"]

M = TypeVar("M", bound=BaseModel)

ROOT_FILES = ("workspace.yaml", "namespaces.yaml")
FOLDERS = ("schemas", "datasets", "audiences", "destinations")
YAML_SUFFIXES = (".yaml", ".yml")
_DESTINATION = TypeAdapter(DestinationSpec)


class _Reader:
    """Reads the files of one workspace, collecting problems instead of stopping at the first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[WorkspaceProblem] = []
        self.broken: set[str] = set()
        self.files: dict[str, str] = {}
        self.keys: dict[str, str] = {}
        self.misnamed: set[str] = set()  # root files present under another spelling (workspace.yml)

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def problem(self, rel: str, key: str, message: str) -> None:
        self.problems.append(WorkspaceProblem(rel, key, message))

    def read(self, path: Path) -> tuple[bool, Any]:
        """(True, data) or (False, None) with the problem recorded."""
        rel = self.rel(path)
        try:
            return True, load_yaml(path)
        except YamlProblem as exc:
            self.problem(rel, exc.key, exc.message)
        except OSError as exc:
            hint = " (a broken symbolic link?)" if path.is_symlink() and not path.exists() else ""
            self.problem(rel, "", f"cannot be read: {exc.strerror or exc}{hint}; give the user running cdp "
                                  "read access or remove the file")
        return False, None

    def parse(self, model: type[M], data: Any, rel: str, prefix: str = "") -> M | None:
        if not isinstance(data, dict):
            self.problem(rel, prefix, "must be a YAML mapping" + (" (the file is empty)" if data is None else ""))
            return None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            self.validation_problems(exc, rel, prefix)
            return None

    def validation_problems(self, exc: ValidationError, rel: str, prefix: str = "", strip: int = 0) -> None:
        for err in exc.errors():
            parts = [str(part) for part in err["loc"][strip:]]
            key = ".".join([prefix, *parts] if prefix else parts)
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            elif err["type"] == "missing":
                message = "is required"
            self.problem(rel, key, message)

    # ------------------------------------------------------------ folder listing

    def listing(self, folder: Path) -> list[Path] | None:
        try:
            return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        except OSError as exc:
            self.problem(self.rel(folder) if folder != self.root else str(folder), "",
                         f"cannot be read: {exc.strerror or exc}; give the user running cdp read access")
            return None

    def root_entries(self, entries: list[Path]) -> None:
        """Unknown YAML files and folders at the root are mistakes (a misspelt folder is otherwise ignored)."""
        for entry in entries:
            if entry.name in ROOT_FILES or entry.name in FOLDERS:
                continue
            if entry.is_dir():
                self.problem(entry.name, "", f"is not a workspace folder (the folders are {', '.join(FOLDERS)}); "
                                             "rename or move it")
            elif entry.suffix.lower() in YAML_SUFFIXES and f"{entry.stem}.yaml" in ROOT_FILES:
                self.problem(entry.name, "", f"is not read: name it {entry.stem}.yaml")
                self.misnamed.add(f"{entry.stem}.yaml")
            elif entry.suffix.lower() in YAML_SUFFIXES:
                self.problem(entry.name, "", f"is not a workspace file (the files at the top are "
                                             f"{' and '.join(ROOT_FILES)}; the others go in {', '.join(FOLDERS)})")

    def yaml_files(self, kind: str) -> list[Path]:
        folder = self.root / kind
        if not folder.exists() and not folder.is_symlink():
            return []
        if not folder.is_dir():
            self.problem(kind, "", "is not a folder" + (" (a broken symbolic link)" if folder.is_symlink() else "")
                         + f": {kind}/ holds one YAML file per item")
            self.broken.add(f"{kind}/*")
            return []
        listing = self.listing(folder)
        if listing is None:
            self.broken.add(f"{kind}/*")
        out = []
        for path in listing or []:
            rel = self.rel(path)
            if path.is_dir():
                self.problem(rel, "", f"is a folder: only the files directly in {kind}/ are read; move its files "
                                      "up or out of the workspace")
            elif path.suffix in YAML_SUFFIXES:
                out.append(path)
            elif path.suffix.lower() in YAML_SUFFIXES:
                self.problem(rel, "", f"has an upper-case extension and is not read: rename it to "
                                      f"{path.stem}{path.suffix.lower()}")
                self.broken.add(f"{kind}/{path.stem}")  # what it defines is not reported missing as well
            else:
                self.problem(rel, "", f"is not a YAML file: only .yaml and .yml files belong in {kind}/; move it "
                                      "out of the workspace")
        return out

    # ------------------------------------------------------------ items

    def folder(self, kind: str, key: str, parse: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path in self.yaml_files(kind):
            rel = self.rel(path)
            ok, data = self.read(path)
            item = parse(data, rel) if ok else None
            if item is None:
                # References to what this file meant to define are not reported again.
                self.broken.add(f"{kind}/{path.stem}")
                if isinstance(data, dict) and isinstance(data.get(key), str):
                    self.broken.add(f"{kind}/{data[key]}")
                continue
            name = getattr(item, key)
            if name in out:
                self.problem(rel, key, f"'{name}' is already defined in {self.files[f'{kind}/{name}']}")
                continue
            out[name] = item
            self.files[f"{kind}/{name}"] = rel
        return out

    def destination(self, data: Any, rel: str) -> DestinationSpec | None:
        if not isinstance(data, dict):
            self.problem(rel, "", "must be a YAML mapping" + (" (the file is empty)" if data is None else ""))
            return None
        known = ", ".join(sorted(DESTINATION_TYPES))
        kind = data.get("type")
        if kind is None:
            self.problem(rel, "type", f"is required (one of: {known})")
            return None
        if kind not in DESTINATION_TYPES:
            self.problem(rel, "type", f"unknown destination type '{kind}' (known: {known})")
            return None
        try:
            dest: DestinationSpec = _DESTINATION.validate_python(data)
        except ValidationError as exc:
            self.validation_problems(exc, rel, strip=1)  # the first element of each location is the type tag
            return None
        return dest

    def namespaces(self) -> dict[str, Namespace]:
        """Each entry of namespaces.yaml on its own: one broken entry leaves the others usable."""
        path = self.root / "namespaces.yaml"
        rel = "namespaces.yaml"
        if not path.exists() and not path.is_symlink():
            if rel not in self.misnamed:
                self.problem(rel, "", "is missing")
            self.broken.add("namespaces/*")
            return {}
        ok, data = self.read(path)
        if not ok or not isinstance(data, dict):
            if ok:
                self.problem(rel, "", "must be a YAML mapping with a 'namespaces' list")
            self.broken.add("namespaces/*")
            return {}
        for extra in sorted(set(data) - {"namespaces"}, key=str):
            self.problem(rel, str(extra), "unknown key")
        entries = data.get("namespaces")
        if not isinstance(entries, list):
            self.problem(rel, "namespaces", "is required" if entries is None else "must be a list of namespaces")
            self.broken.add("namespaces/*")
            return {}
        out: dict[str, Namespace] = {}
        for i, entry in enumerate(entries):
            ns = self.parse(Namespace, entry, rel, f"namespaces.{i}")
            if ns is None:
                code = entry.get("code") if isinstance(entry, dict) else None
                self.broken.add(f"namespaces/{code}" if isinstance(code, str) else "namespaces/*")
                continue
            if ns.code in out:
                self.problem(rel, f"namespaces.{i}.code", f"namespace '{ns.code}' is declared twice")
                continue
            out[ns.code] = ns
            self.files[f"namespaces/{ns.code}"] = rel
            self.keys[f"namespaces/{ns.code}"] = f"namespaces.{i}"
        return out


def load_workspace(root: str | Path, settings: Settings | None = None) -> Workspace:
    """Load and check the workspace at ``root``; raise WorkspaceError listing every problem.

    ``settings`` gives the landing and exports roots that local paths are checked against (default:
    :meth:`Settings.from_env`, the roots the jobs will use).
    """
    root = Path(root)
    if not root.is_dir():
        raise WorkspaceError([WorkspaceProblem(str(root), "", "workspace folder does not exist")])
    reader = _Reader(root)
    entries = reader.listing(root)
    if entries is None:
        raise WorkspaceError(reader.problems)
    if not entries:
        raise WorkspaceError([WorkspaceProblem(str(root), "", "the workspace is empty: it needs workspace.yaml, "
                                               "namespaces.yaml and the folders schemas/ and datasets/ (see the "
                                               "README, The workspace)")])
    reader.root_entries(entries)

    config = None
    if (root / "workspace.yaml").exists() or (root / "workspace.yaml").is_symlink():
        ok, data = reader.read(root / "workspace.yaml")
        config = reader.parse(WorkspaceFile, data, "workspace.yaml") if ok else None
    elif "workspace.yaml" not in reader.misnamed:
        reader.problem("workspace.yaml", "", "is missing")
    namespaces = reader.namespaces()
    schemas: dict[str, SchemaSpec] = reader.folder("schemas", "name",
                                                   lambda d, r: reader.parse(SchemaSpec, d, r))
    datasets: dict[str, DatasetSpec] = reader.folder("datasets", "name",
                                                     lambda d, r: reader.parse(DatasetSpec, d, r))
    audiences: dict[str, AudienceSpec] = reader.folder("audiences", "id",
                                                       lambda d, r: reader.parse(AudienceSpec, d, r))
    destinations: dict[str, DestinationSpec] = reader.folder("destinations", "name", reader.destination)

    if config is None:
        raise WorkspaceError(reader.problems or [WorkspaceProblem("workspace.yaml", "", "is invalid")])
    ws = Workspace(root, config, namespaces, schemas, datasets, audiences, destinations, reader.files,
                   frozenset(reader.broken), reader.keys)
    problems = reader.problems + run_checks(ws, CheckContext(settings or Settings.from_env()))
    if problems:
        raise WorkspaceError(problems)
    return ws
