"""Great Expectations over Spark DataFrames: run suites, keep every result, name what failed.

A checked frame small enough (``CDP_GX_LOCAL_ROWS``, 100,000 rows) is brought to the driver and validated by GX's
pandas engine, a larger one by its Spark engine: the same expectations, the same outcomes (numbers reported as
Python values either way), a fraction of the Spark jobs on a small frame.

Each check task builds a few DataFrames (a table slice, or a join that makes a relation checkable
column by column) and a suite of expectations for each; :func:`validate_suites` runs them all in
one ephemeral GX context and returns one :class:`ExpectationOutcome` per expectation.

No raw value leaves a failed expectation: the checked columns may hold e-mails, phones or other
identities, so GX's ``partial_unexpected_list`` is replaced by ``unexpected_sha256_12``, the first
12 hex characters of the SHA-256 of each sample value (of its JSON form for compound values), and a
non-numeric ``observed_value`` is hashed the same way. Only the counts (``unexpected_count``,
``unexpected_percent``, a numeric ``observed_value``) stay readable. To find a sampled row, hash the
column the same way (``substring(sha2(cast(col as string), 256), 1, 12)`` in Spark SQL). A suite whose
checked columns hold only descriptions the platform built from counts, file names, statuses and
audience ids declares ``samples="plain"`` and keeps its samples as they are (``unexpected_samples``).
This is what the task log and ``quality_results.observed`` show.

GX's Data Docs (:mod:`cdp.quality_docs`) follow the same rule: they are built from a copy of each result that
:func:`redacted_result` made, in which a sample or non-numeric observed value of a hashed suite is shown as
``sha256_12:<the same 12 hex characters>`` and everything else GX may keep beside the counts (``details``, the
full ``unexpected_list``, index lists and queries) is left out.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pyspark.sql import DataFrame

from cdp.errors import DataQualityError
from cdp.quality_docs import DocsTarget, publish

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult

log = logging.getLogger(__name__)

Samples = Literal["hashed", "plain"]


@dataclass(frozen=True)
class Suite:
    """Expectations to run against one DataFrame."""

    name: str
    dataframe: DataFrame
    expectations: list[Any]  # great_expectations.expectations.Expectation instances
    # "hashed" unless every checked column holds only platform-built text (counts, file names, statuses).
    samples: Samples = "hashed"


@dataclass(frozen=True)
class ExpectationOutcome:
    suite: str
    expectation: str
    kwargs: str
    success: bool
    observed: str | None

    def describe(self) -> str:
        return f"{self.suite}: {self.expectation}({self.kwargs}) {'passed' if self.success else 'FAILED'}" + (
            f" — {self.observed}" if self.observed else "")


SAMPLE_HASH_CHARS = 12


def sample_hash(value: Any) -> str:
    """The first 12 hex characters of the SHA-256 of a sample value: enough to find the row, nothing to read."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:SAMPLE_HASH_CHARS]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def observed_summary(result: dict[str, Any], samples: Samples = "hashed") -> str | None:
    """What a GX result says about the data, as JSON, without a raw value unless ``samples="plain"``.

    Kept: ``unexpected_count``, ``unexpected_percent``, a numeric ``observed_value``; the samples
    (``partial_unexpected_list``) become ``unexpected_sha256_12`` (see the module docstring) or, for a
    plain suite, ``unexpected_samples`` (distinct values, sorted by their JSON form).
    """
    seen: dict[str, Any] = {k: result[k] for k in ("unexpected_count", "unexpected_percent")
                            if result.get(k) is not None}
    observed = result.get("observed_value")
    if observed is not None:
        if _is_number(observed) or samples == "plain":
            seen["observed_value"] = observed
        else:
            seen["observed_value_sha256_12"] = sample_hash(observed)
    partial = [v for v in result.get("partial_unexpected_list") or [] if v is not None]
    if partial:
        # Sorted: GX lists samples in row order, which a shuffle makes differ between runs.
        distinct = sorted({json.dumps(v, default=str, sort_keys=True) for v in partial})
        if samples == "plain":
            seen["unexpected_samples"] = [json.loads(v) for v in distinct]
        else:
            seen["unexpected_sha256_12"] = [sample_hash(json.loads(v)) for v in distinct]
    return json.dumps(seen, default=str, sort_keys=True) if seen else None


# What a result keeps in the Data Docs besides its samples and observed value: counts and shares. Anything else GX
# adds to a result (``details``, and in its COMPLETE format ``unexpected_list``, index lists and queries) can hold
# raw values and is left out.
DOCS_COUNT_KEYS = ("element_count", "missing_count", "missing_percent", "unexpected_count", "unexpected_percent",
                   "unexpected_percent_total", "unexpected_percent_nonmissing")
HASHED_SAMPLE_PREFIX = "sha256_12:"


def docs_sample(value: Any, samples: Samples = "hashed") -> Any:
    """A sample as the Data Docs show it: ``sha256_12:<sample_hash>`` (null stays null) unless the suite is plain."""
    if value is None or samples == "plain":
        return value
    return HASHED_SAMPLE_PREFIX + sample_hash(value)


def redacted_result(result: dict[str, Any], samples: Samples = "hashed") -> dict[str, Any]:
    """A GX expectation result (``ExpectationValidationResult.result``) fit for the Data Docs.

    Counts and shares are kept; ``partial_unexpected_list``, ``partial_unexpected_counts`` values and a
    non-numeric ``observed_value`` go through :func:`docs_sample`; every other key is left out.
    """
    kept = {k: result[k] for k in DOCS_COUNT_KEYS if k in result}
    if "observed_value" in result:
        observed = result["observed_value"]
        kept["observed_value"] = observed if _is_number(observed) else docs_sample(observed, samples)
    if "partial_unexpected_list" in result:
        kept["partial_unexpected_list"] = [docs_sample(v, samples) for v in result["partial_unexpected_list"] or []]
    if "partial_unexpected_counts" in result:
        # GX counts a multi-column sample ({column: value}) as the tuple of its values: counted back as the sample
        # it stands for, so that its hash is the one the summary and the sample list show.
        rows = {tuple(v.values()): v for v in result.get("partial_unexpected_list") or [] if isinstance(v, dict)}
        kept["partial_unexpected_counts"] = [
            c if "value" not in c else {
                "value": docs_sample(rows.get(tuple(c["value"]), c["value"])
                                     if isinstance(c["value"], tuple | list) else c["value"], samples),
                "count": c.get("count")}
            for c in result["partial_unexpected_counts"] or []]
    return kept


def redacted_validation(validation: ExpectationSuiteValidationResult,
                        samples: Samples = "hashed") -> ExpectationSuiteValidationResult:
    """A copy of a suite's GX validation result whose every expectation result is :func:`redacted_result`."""
    redacted = copy.deepcopy(validation)
    for r in redacted.results:
        r.result = redacted_result(r.result or {}, samples)
    return redacted


# A checked frame of at most this many rows is validated by GX's pandas engine on the driver: GX computes each
# expectation's metrics with several Spark jobs, about a second and a half per suite on a small frame, while one
# job bringing the frame over and pandas take a fraction of that. Larger frames stay on Spark, where they scale.
LOCAL_ROWS_ENV = "CDP_GX_LOCAL_ROWS"
DEFAULT_LOCAL_ROWS = 100_000


def local_rows_limit() -> int:
    """``CDP_GX_LOCAL_ROWS`` (default 100,000; 0 validates every suite on Spark)."""
    return int(os.environ.get(LOCAL_ROWS_ENV) or DEFAULT_LOCAL_ROWS)


def native(value: Any) -> Any:
    """``value`` with numpy scalars and arrays (what GX's pandas engine reports) as the Python values Spark's engine
    reports, so that a summary, and a sample's hash, are the same whichever engine checked the frame."""
    if isinstance(value, dict):
        return {k: native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(native(v) for v in value)
    if type(value).__module__ == "numpy":
        return native(value.tolist()) if hasattr(value, "tolist") else value
    if isinstance(value, float) and math.isnan(value):
        return None  # pandas' null (a missing value in an unexpected-values list), Spark's None
    return value


def small_frame(df: DataFrame, limit: int) -> Any:
    """``df`` as a pandas DataFrame when it has at most ``limit`` rows (one Spark job), else None."""
    if limit <= 0:
        return None
    local = df.limit(limit + 1).toPandas()
    return local if len(local) <= limit else None


def validate_suites(suites: list[Suite], docs: DocsTarget | None = None) -> list[ExpectationOutcome]:
    """Run every suite; return the outcome of each expectation (in suite order).

    With ``docs``, the redacted results also go into the lake's GX Data Docs (:func:`cdp.quality_docs.publish`).
    Docs that cannot be written are a WARNING, not a failed gate: the outcomes are what the gate decides on.
    """
    # GX sends usage statistics unless told not to; the platform must not call out.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx  # imported here: heavy, and only check tasks need it
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    sources: dict[str, Any] = {"spark": context.data_sources.add_spark("lake"),
                               "pandas": context.data_sources.add_pandas("small")}
    run_id = RunIdentifier(run_name=docs.run_name, run_time=docs.run_time) if docs else None
    limit = local_rows_limit()
    outcomes: list[ExpectationOutcome] = []
    validations: list[ExpectationSuiteValidationResult] = []
    for suite in suites:
        frame = small_frame(suite.dataframe, limit)
        asset = sources["spark" if frame is None else "pandas"].add_dataframe_asset(suite.name)
        batch = asset.add_batch_definition_whole_dataframe(f"{suite.name}_batch")
        gx_suite = context.suites.add(gx.ExpectationSuite(name=suite.name))
        for expectation in suite.expectations:
            gx_suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite.name}_validation", data=batch, suite=gx_suite))
        result = definition.run(batch_parameters={"dataframe": suite.dataframe if frame is None else frame},
                                run_id=run_id)
        for r in result.results:
            r.result = native(r.result or {})
        if docs:
            validations.append(redacted_validation(result, suite.samples))
        for r in result.results:
            config = r.expectation_config
            assert config is not None
            kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
            outcome = ExpectationOutcome(
                suite=suite.name,
                expectation=config.type,
                kwargs=", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items())),
                success=bool(r.success),
                observed=observed_summary(r.result or {}, suite.samples),
            )
            (log.info if outcome.success else log.error)("%s", outcome.describe())
            outcomes.append(outcome)
    if docs:
        try:
            publish(docs, validations)
        except Exception as e:  # a by-product: any failure to write it must leave the gate's verdict alone
            log.warning("GX Data Docs of stage '%s' (run date %s) not written to %s: %s: %s. The results are in "
                        "quality_results and the task log; fix the folder (free space, permissions) and re-run "
                        "the gate to write them.", docs.stage, docs.run_date, docs.folder, type(e).__name__, e,
                        exc_info=True)
    return outcomes


def raise_on_failure(stage: str, outcomes: list[ExpectationOutcome]) -> None:
    """Stop the run when any expectation failed, naming each failed expectation."""
    failed = [o for o in outcomes if not o.success]
    if failed:
        lines = "\n".join(f"  - {o.describe()}" for o in failed)
        raise DataQualityError(
            f"data-quality check '{stage}' failed {len(failed)} of {len(outcomes)} expectations; "
            f"the run stops here so that bad data does not flow on:\n{lines}")
