"""Great Expectations over Spark DataFrames: run suites, keep every result, name what failed.

Each check task builds a few DataFrames (a table slice, or a join that makes a relation checkable
column by column) and a suite of expectations for each; :func:`validate_suites` runs them all in
one ephemeral GX context and returns one :class:`ExpectationOutcome` per expectation.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame

from cdp.errors import DataQualityError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Suite:
    """Expectations to run against one DataFrame."""

    name: str
    dataframe: DataFrame
    expectations: list[Any]  # great_expectations.expectations.Expectation instances


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


def _observed(result: dict[str, Any]) -> str | None:
    keys = ("observed_value", "unexpected_count", "unexpected_percent", "partial_unexpected_list")
    seen = {k: result[k] for k in keys if result.get(k) not in (None, [], {})}
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
                observed=_observed(r.result or {}),
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
