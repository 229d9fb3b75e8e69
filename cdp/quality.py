"""Great Expectations over Spark DataFrames: run suites, keep every result, name what failed.

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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

from pyspark.sql import DataFrame

from cdp.errors import DataQualityError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Suite:
    """Expectations to run against one DataFrame."""

    name: str
    dataframe: DataFrame
    expectations: list[Any]  # great_expectations.expectations.Expectation instances
    # "hashed" unless every checked column holds only platform-built text (counts, file names, statuses).
    samples: Literal["hashed", "plain"] = "hashed"


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


def observed_summary(result: dict[str, Any], samples: Literal["hashed", "plain"] = "hashed") -> str | None:
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


def validate_suites(suites: list[Suite]) -> list[ExpectationOutcome]:
    """Run every suite; return the outcome of each expectation (in suite order)."""
    # GX sends usage statistics unless told not to; the platform must not call out.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx  # imported here: heavy, and only check tasks need it
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_spark("lake")
    outcomes: list[ExpectationOutcome] = []
    for suite in suites:
        asset = source.add_dataframe_asset(suite.name)
        batch = asset.add_batch_definition_whole_dataframe(f"{suite.name}_batch")
        gx_suite = context.suites.add(gx.ExpectationSuite(name=suite.name))
        for expectation in suite.expectations:
            gx_suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite.name}_validation", data=batch, suite=gx_suite))
        result = definition.run(batch_parameters={"dataframe": suite.dataframe})
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
    return outcomes


def raise_on_failure(stage: str, outcomes: list[ExpectationOutcome]) -> None:
    """Stop the run when any expectation failed, naming each failed expectation."""
    failed = [o for o in outcomes if not o.success]
    if failed:
        lines = "\n".join(f"  - {o.describe()}" for o in failed)
        raise DataQualityError(
            f"data-quality check '{stage}' failed {len(failed)} of {len(outcomes)} expectations; "
            f"the run stops here so that bad data does not flow on:\n{lines}")
