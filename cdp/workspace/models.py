"""Typed models of a workspace: the YAML files a data engineer writes.

Every model forbids unknown keys, so a typo (``profile_enabeld``) is an error that names the
file and the key instead of a setting silently ignored.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cdp.workspace.cadence import parse_cadence

FieldType = Literal[
    "string", "integer", "long", "double", "decimal", "boolean", "date", "timestamp", "object", "array", "map"
]
StringFormat = Literal["email", "phone", "uri"]
NamespaceType = Literal["cookie", "device", "email", "phone", "person"]
SchemaClass = Literal["profile", "event"]
FileFormat = Literal["jsonl", "csv", "parquet"]


# Windows, skews and time-to-live in days stay within a century: far beyond any real window, and
# always within what Python dates and Spark timestamps hold around a run date (10**9 days is not).
MAX_DAYS = 36_600
MAX_MINUTES = MAX_DAYS * 24 * 60
Days = Annotated[StrictInt, Field(ge=1, le=MAX_DAYS)]
DaysAgo = Annotated[StrictInt, Field(ge=0, le=MAX_DAYS)]
Count = Annotated[StrictInt, Field(ge=1)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]


class Strict(BaseModel):
    # NaN and infinity are not numbers a workspace means: refused wherever a float is declared.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


def single_character(value: str, what: str) -> str:
    """``value`` if it is exactly one character, else a ValueError naming ``what``."""
    if len(value) != 1:
        raise ValueError(f"{what} must be exactly one character, got {value!r}")
    if value in "\r\n":
        raise ValueError(f"{what} cannot be a line break")
    return value


class IdentityDescriptor(Strict):
    """Marks a field as an identity in a namespace; at most one field of a schema is primary."""

    namespace: str
    primary: bool = False


class FieldSpec(Strict):
    """One declared field of a schema."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: FieldType
    required: bool = False
    description: str = ""
    enum: list[str] | None = None
    format: StringFormat | None = None
    identity: IdentityDescriptor | None = None
    labels: list[str] = Field(default_factory=list)
    # decimal(precision, scale)
    precision: StrictInt = Field(default=18, ge=1, le=38)
    scale: StrictInt = Field(default=2, ge=0, le=38)
    # object: nested fields; array: element; map: value (keys are strings)
    fields: list[FieldSpec] | None = None
    items: FieldSpec | None = None
    values: FieldSpec | None = None

    @model_validator(mode="after")
    def _nested_shape(self) -> FieldSpec:
        if self.type == "object" and not self.fields:
            raise ValueError("an object field needs 'fields'")
        if self.type == "array" and self.items is None:
            raise ValueError("an array field needs 'items'")
        if self.type == "map" and self.values is None:
            raise ValueError("a map field needs 'values'")
        if self.format is not None and self.type != "string":
            raise ValueError(f"'format' applies to string fields, not {self.type}")
        if self.identity is not None and self.type != "string":
            raise ValueError("an identity field must be of type string")
        if self.type == "decimal" and self.scale > self.precision:
            raise ValueError(f"scale {self.scale} is larger than precision {self.precision}")
        return self


class SchemaSpec(Strict):
    """A declared schema: profile records (upserted) or experience events (append-only)."""

    name: str
    class_: SchemaClass = Field(alias="class")
    description: str = ""
    fields: list[FieldSpec]
    # events: the field holding the event's unique id, its time and its type
    id_field: str | None = None
    timestamp_field: str | None = None
    event_type_field: str | None = None

    @property
    def primary_identity(self) -> FieldSpec | None:
        return next((f for f in self.fields if f.identity and f.identity.primary), None)

    @property
    def identity_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields if f.identity is not None]

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)


class Namespace(Strict):
    """An identity namespace; higher priority ranks first (person ids above devices above cookies)."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: NamespaceType
    priority: int = 0
    unique: bool = False
    description: str = ""
    # a regex the normalised value must fully match (e.g. ECID: exactly 38 digits); checked by validate
    pattern: str | None = None
    # phone: the region (ISO 3166 code, e.g. FR, US) of numbers written without a country code
    default_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    # identity resolution does not link these normalised values, nor values in which a pattern is found
    blocked_values: list[str] = Field(default_factory=list)
    blocked_patterns: list[str] = Field(default_factory=list)
    # a link to an identity of this namespace not seen again for this many days is dropped (None: the
    # workspace's guardrails.link_ttl_days; a link between two namespaces expires after the shorter of both)
    link_ttl_days: Days | None = None


class NamespacesFile(Strict):
    namespaces: list[Namespace]


class Source(Strict):
    """Where a dataset's files land; ``{date}`` in ``path`` is the run date.

    ``local``: ``path`` is a folder relative to the landing root. ``s3``: ``path`` is a key prefix
    in ``bucket`` (credentials and endpoint come from the environment, never the workspace).
    """

    type: Literal["local", "s3"] = "local"
    path: str
    bucket: str | None = None


class CsvOptions(Strict):
    """How a dataset's landed CSV files are read: single characters for delimiter, quote and escape."""

    delimiter: str = ","
    quote: str = '"'
    escape: str = "\\"
    header: bool = True
    # a header column that is no declared field: reject quarantines the file (bad_header), ignore drops the column
    unknown_columns: Literal["reject", "ignore"] = "reject"

    @field_validator("delimiter", "quote", "escape")
    @classmethod
    def _one_character(cls, value: str, info: Any) -> str:
        return single_character(value, info.field_name)

    @model_validator(mode="after")
    def _distinct(self) -> CsvOptions:
        if self.delimiter == self.quote:
            raise ValueError(f"delimiter and quote are both {self.delimiter!r}; they must differ")
        return self


class DatasetSpec(Strict):
    """A table bound to one schema, fed by files that land daily."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    schema_: str = Field(alias="schema")
    format: FileFormat
    source: Source
    profile_enabled: bool = True
    identity_enabled: bool = True
    csv: CsvOptions = Field(default_factory=CsvOptions)
    description: str = ""
    # data-usage labels of the whole dataset: every field of it carries them (see Governance)
    labels: list[str] = Field(default_factory=list)


class Guardrails(Strict):
    """Limits from the product reference, as defaults the workspace may change."""

    max_rejected_share: Share = 0.10
    max_identities_per_record: Count = 20
    max_identity_length: Count = 1024
    blocked_identity_values: list[str] = Field(default_factory=lambda: ["null", "anonymous", "invalid", ""])
    # regexes an identity value (trimmed) must not fully match, e.g. "0+" or "test.*"
    blocked_patterns: list[str] = Field(default_factory=list)
    max_event_bytes: Count = 10 * 1024
    max_profile_record_bytes: Count = 100 * 1024
    max_future_skew_minutes: StrictInt = Field(default=60, ge=0, le=MAX_MINUTES)
    max_identities_per_graph: Count = 50
    # identity links not seen again for this many days are dropped (None: links never expire)
    link_ttl_days: Days | None = None
    # Segmentation cap: a profile with more events than this in the audiences' evaluation window (the longest
    # window any audience reads) is left out of audience evaluation, and counted.
    max_events_per_profile: Count = 5000
    # An audience whose size changes by more than this share since the previous run raises a warning.
    audience_size_change_warning_share: Share = 0.5
    # A dataset whose quarantined share of the run date's records is over quarantine_warning_factor times the
    # median share of its previous quarantine_warning_runs run dates, and over quarantine_warning_min_share (a
    # median of 0 would make one bad record a warning), raises a warning; judged once 3 previous runs exist.
    quarantine_warning_factor: float = Field(default=3.0, ge=1.0, le=1000.0)
    quarantine_warning_runs: StrictInt = Field(default=7, ge=3, le=366)
    quarantine_warning_min_share: Share = 0.01


MergePolicyType = Literal["timestamp_ordered", "dataset_precedence"]
PolicyName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
# The name of the default policy described by the top-level merge_policy / dataset_precedence keys.
IMPLICIT_DEFAULT_POLICY = "default"


class MergePolicy(Strict):
    """How the fragments of a profile are merged, attribute by attribute.

    ``timestamp_ordered``: the newest non-null value wins. ``dataset_precedence``: the non-null value of
    the first dataset of ``datasets`` that has one (datasets not listed come after, by name; ties by time).
    """

    type: MergePolicyType
    datasets: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _datasets_fit_type(self) -> MergePolicy:
        if self.type == "timestamp_ordered" and self.datasets:
            raise ValueError("'datasets' applies to type dataset_precedence only")
        if self.type == "dataset_precedence" and not self.datasets:
            raise ValueError("type dataset_precedence needs 'datasets' (most trusted first)")
        return self


# ---------------------------------------------------------------- governance

# The reference's core data-usage labels: contract (C1-C12), identity (I1-I2) and sensitive (S1-S2).
CORE_LABELS = tuple([f"C{i}" for i in range(1, 13)] + ["I1", "I2", "S1", "S2"])
CORE_LABELS_TEXT = "C1-C12, I1-I2, S1-S2"
# Marketing actions a destination may declare without defining them (custom ones go in governance.marketing_actions).
CORE_MARKETING_ACTIONS = ("analytics", "combine_with_pii", "cross_site_targeting", "data_science", "direct_mail",
                          "email_targeting", "export_to_third_party", "onsite_advertising", "onsite_personalization",
                          "segment_match", "single_identity_personalization")
LabelCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
Purpose = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")]


class CustomLabel(Strict):
    """A data-usage label of the workspace's own, beside the core ones."""

    description: str = ""


class MarketingAction(Strict):
    """A marketing action of the workspace's own, beside the core ones."""

    description: str = ""


class UsagePolicy(Strict):
    """Forbids data carrying any of ``labels`` for any of ``actions``: a destination that declares one of the
    actions may neither export a field carrying one of the labels nor activate an audience whose rule reads one."""

    description: str = ""
    labels: list[str] = Field(min_length=1)
    actions: list[str] = Field(min_length=1)


class ConsentPurpose(Strict):
    """A consent purpose (``marketing.email``) and the boolean profile attribute that holds each person's choice
    (a dotted path into object fields is fine, e.g. ``consents.marketing.email``): true is consent; false or
    missing is none."""

    attribute: str
    description: str = ""


class Governance(Strict):
    """``governance:`` in workspace.yaml: custom labels and marketing actions, usage policies, consent purposes."""

    labels: dict[LabelCode, CustomLabel] = Field(default_factory=dict)
    marketing_actions: dict[Name, MarketingAction] = Field(default_factory=dict)
    policies: dict[PolicyName, UsagePolicy] = Field(default_factory=dict)
    consent_purposes: dict[Purpose, ConsentPurpose] = Field(default_factory=dict)

    @property
    def known_labels(self) -> set[str]:
        """Core labels and the custom ones."""
        return set(CORE_LABELS) | set(self.labels)

    @property
    def known_actions(self) -> set[str]:
        """Core marketing actions and the custom ones."""
        return set(CORE_MARKETING_ACTIONS) | set(self.marketing_actions)


class PathsPolicy(Strict):
    """Whether local paths may leave their roots (the landing root for dataset sources, the exports root
    for local destinations). Off by default: a '..' or a symbolic link must not read or write elsewhere."""

    allow_outside_landing_root: bool = False
    allow_outside_exports_root: bool = False


# ---------------------------------------------------------------- alerts
# Ids of the Airflow connections that alerts go through (credentials stay in the connection, never here).
AlertConnectionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]
EmailAddress = Annotated[str, StringConstraints(pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")]


class EmailAlerts(Strict):
    """E-mail alerts through the SMTP provider: ``connection`` is an Airflow connection of type smtp (host,
    port, login, password; ``from_email`` in its extra unless given here)."""

    connection: AlertConnectionId
    to: list[EmailAddress] = Field(min_length=1)
    from_email: EmailAddress | None = None


class SlackAlerts(Strict):
    """Slack alerts through the Slack provider's incoming-webhook notifier: ``connection`` is an Airflow
    connection of type slackincomingwebhook (the webhook URL, a secret, lives there)."""

    connection: AlertConnectionId


class Alerts(Strict):
    """``alerts:`` in workspace.yaml: where a failed task and a late run of the DAGs are reported."""

    email: EmailAlerts | None = None
    slack: SlackAlerts | None = None


# ---------------------------------------------------------------- maintenance
class Maintenance(Strict):
    """``maintenance:`` in workspace.yaml: what the daily ``cdp_maintenance`` run keeps (see jobs/maintenance.py).

    ``vacuum_retention_hours``: data files no Delta version younger than this needs are deleted; at least 168
    (7 days, Delta's own safety check: a reader or a writer of an older version may still need them).
    ``landing_days``: landed files (local landing zone) of run dates older than this are removed; null keeps them.
    ``quality_docs_days``: the GX Data Docs of gate runs older than this are removed by the quality gates as they
    write the site (see cdp.quality_docs).
    """

    vacuum_retention_hours: StrictInt = Field(default=168, ge=168, le=MAX_DAYS * 24)
    quarantine_days: Days = 90
    metrics_days: Days = 400
    ledger_days: Days = 400
    landing_days: Days | None = 30
    exited_membership_days: Days = 30
    quality_docs_days: Days = 30


class WorkspaceFile(Strict):
    """``workspace.yaml``: the workspace's name and defaults.

    Merge policies are named in ``merge_policies`` and ``default_merge_policy`` names the one that builds
    the profiles table; an audience may name another. Without ``default_merge_policy`` the default is
    the policy given by ``merge_policy`` (and ``dataset_precedence``), known as ``default``.
    """

    name: str
    description: str = ""
    merge_policy: MergePolicyType = "timestamp_ordered"
    dataset_precedence: list[str] = Field(default_factory=list)
    merge_policies: dict[PolicyName, MergePolicy] = Field(default_factory=dict)
    default_merge_policy: str | None = None
    guardrails: Guardrails = Field(default_factory=Guardrails)
    paths: PathsPolicy = Field(default_factory=PathsPolicy)
    governance: Governance = Field(default_factory=Governance)
    alerts: Alerts = Field(default_factory=Alerts)
    maintenance: Maintenance = Field(default_factory=Maintenance)

    @property
    def default_policy_name(self) -> str:
        """The name of the policy the profiles table is built with."""
        return self.default_merge_policy or IMPLICIT_DEFAULT_POLICY

    @property
    def policies(self) -> dict[str, MergePolicy]:
        """Every merge policy by name, the implicit ``default`` included when no default_merge_policy is named."""
        out = dict(self.merge_policies)
        if self.default_merge_policy is None and IMPLICIT_DEFAULT_POLICY not in out:
            datasets = self.dataset_precedence if self.merge_policy == "dataset_precedence" else []
            # Built without validation: the legacy keys allow dataset_precedence with an empty list.
            out[IMPLICIT_DEFAULT_POLICY] = MergePolicy.model_construct(type=self.merge_policy, datasets=datasets)
        return out

    def policy(self, name: str | None = None) -> MergePolicy:
        """The policy of that name (None: the default); the loader has checked every name used."""
        return self.policies[name or self.default_policy_name]


# ---------------------------------------------------------------- audiences

ComparisonOp = Literal["=", "!=", "<", "<=", ">", ">=", "in", "not_in", "exists", "missing", "between",
                       "starts_with", "ends_with", "contains", "regex"]


ArrayMatch = Literal["any", "all"]


class AttributeCondition(Strict):
    """A condition on a merged profile attribute.

    ``attribute`` may be a dotted path into object fields (``address.city``). On an array the
    operator applies to its elements, ``match: any`` (default) or ``all`` of them (an empty array
    matches neither); on a map it applies to the value under ``key``.
    """

    attribute: str
    op: ComparisonOp
    value: Any = None
    match: ArrayMatch | None = None
    key: str | None = None

    @model_validator(mode="after")
    def _value_shape(self) -> AttributeCondition:
        if self.op in ("exists", "missing"):
            if self.value is not None:
                raise ValueError(f"operator '{self.op}' takes no value")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"operator '{self.op}' needs a non-empty list as value")
        elif self.op == "between":
            if not isinstance(self.value, list) or len(self.value) != 2:
                raise ValueError("operator 'between' needs a list of two values [low, high]")
        elif self.value is None or isinstance(self.value, list | dict):
            raise ValueError(f"operator '{self.op}' needs a single value")
        return self


class Window(Strict):
    """Event days counted, relative to the run date D (never the clock), or absolute dates.

    Exactly one of: ``last_days: N`` (D-N+1 .. D), ``between_days_ago: [a, b]`` (D-b .. D-a),
    ``today: true`` (D only), ``from``/``to`` (absolute days, both included; ``to`` defaults to D).
    Days after D are never counted.
    """

    last_days: Days | None = None
    between_days_ago: list[DaysAgo] | None = None
    today: bool | None = None
    from_: dt.date | None = Field(default=None, alias="from")
    to: dt.date | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Window:
        forms = [k for k, v in (("last_days", self.last_days), ("between_days_ago", self.between_days_ago),
                                ("today", self.today), ("from", self.from_ or self.to)) if v is not None]
        if len(forms) != 1:
            raise ValueError(f"a window needs exactly one of last_days, between_days_ago, today, from/to"
                             f" (got {forms or 'none'})")
        if self.today is not None and self.today is not True:
            raise ValueError("'today' can only be true")
        if self.between_days_ago is not None:
            ago = self.between_days_ago
            if len(ago) != 2 or any(isinstance(x, bool) or x < 0 for x in ago) or ago[0] > ago[1]:
                raise ValueError("'between_days_ago' needs [a, b] with 0 <= a <= b")
        if (self.to is not None) and self.from_ is None:
            raise ValueError("'to' needs 'from'")
        if self.from_ is not None and self.to is not None and self.to < self.from_:
            raise ValueError("'to' is before 'from'")
        return self

    def bounds(self, run_date: dt.date) -> tuple[dt.date, dt.date]:
        """First and last event day counted for a run date (the last never after the run date)."""
        if self.last_days is not None:
            return run_date - dt.timedelta(days=self.last_days - 1), run_date
        if self.between_days_ago is not None:
            low, high = self.between_days_ago
            return run_date - dt.timedelta(days=high), run_date - dt.timedelta(days=low)
        if self.today:
            return run_date, run_date
        assert self.from_ is not None
        return self.from_, min(self.to or run_date, run_date)


class EventFilter(Strict):
    """A condition on a field of the event (``where:``); the operators of attribute conditions."""

    field: str
    op: ComparisonOp
    value: Any = None

    @model_validator(mode="after")
    def _value_shape(self) -> EventFilter:
        AttributeCondition(attribute=self.field, op=self.op, value=self.value)
        return self


AggregateFn = Literal["sum", "avg", "min", "max", "count_distinct"]


class Aggregate(Strict):
    """An aggregate of an event field over the window, compared with a value."""

    fn: AggregateFn
    field: str
    op: Literal["=", "!=", "<", "<=", ">", ">=", "between"]
    value: Any

    @model_validator(mode="after")
    def _value_shape(self) -> Aggregate:
        AttributeCondition(attribute=self.field, op=self.op, value=self.value)
        return self


class EventCondition(Strict):
    """At least / at most / exactly N events of a type (or an aggregate of a field) within a window."""

    event_type: str = Field(alias="type")
    dataset: str | None = None
    where: list[EventFilter] = Field(default_factory=list)
    at_least: StrictInt | None = Field(default=None, ge=0)
    at_most: StrictInt | None = Field(default=None, ge=0)
    exactly: StrictInt | None = Field(default=None, ge=0)
    aggregate: Aggregate | None = None
    within: Window

    @model_validator(mode="after")
    def _one_count(self) -> EventCondition:
        given = [x for x in (self.at_least, self.at_most, self.exactly, self.aggregate) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of at_least, at_most, exactly, aggregate")
        return self


class SequenceStep(Strict):
    """One event of a sequence: its type, optionally its dataset and filters on its fields."""

    event_type: str = Field(alias="type")
    dataset: str | None = None
    where: list[EventFilter] = Field(default_factory=list)


class SequenceCondition(Strict):
    """An event ``first`` then an event ``then`` at most ``within_hours`` later (strictly after it), both within
    the window; with ``not_between``, no such event may happen strictly between the two."""

    first: SequenceStep
    then: SequenceStep
    within_hours: float = Field(gt=0, le=MAX_DAYS * 24)
    not_between: SequenceStep | None = None
    within: Window


class RecencyCondition(Strict):
    """The last event of a type (any time up to the run date) was more / less than N days ago.

    A profile that never had such an event matches neither (use ``not`` for "never").
    """

    event_type: str = Field(alias="type")
    dataset: str | None = None
    more_than_days_ago: DaysAgo | None = None
    less_than_days_ago: Days | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> RecencyCondition:
        if (self.more_than_days_ago is None) == (self.less_than_days_ago is None):
            raise ValueError("give exactly one of more_than_days_ago, less_than_days_ago")
        return self


class Rule(Strict):
    """A node of an audience rule: exactly one of the keys below."""

    all: list[Rule] | None = None
    any: list[Rule] | None = None
    not_: Rule | None = Field(default=None, alias="not")
    attribute: str | None = None
    op: ComparisonOp | None = None
    value: Any = None
    match: ArrayMatch | None = None
    key: str | None = None
    events: EventCondition | None = None
    last_event: RecencyCondition | None = None
    sequence: SequenceCondition | None = None
    audience: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Rule:
        kinds = [k for k, v in (("all", self.all), ("any", self.any), ("not", self.not_),
                                ("attribute", self.attribute), ("events", self.events),
                                ("last_event", self.last_event), ("sequence", self.sequence),
                                ("audience", self.audience)) if v is not None]
        if len(kinds) != 1:
            raise ValueError("a rule needs exactly one of all, any, not, attribute, events, last_event, sequence,"
                             f" audience (got {kinds or 'none'})")
        if self.attribute is not None:
            if self.op is None:
                raise ValueError("an attribute rule needs 'op'")
            AttributeCondition(attribute=self.attribute, op=self.op, value=self.value)
        elif self.op is not None or self.value is not None or self.match is not None or self.key is not None:
            raise ValueError("'op', 'value', 'match' and 'key' belong to an attribute rule")
        for name, children in (("all", self.all), ("any", self.any)):
            if children is not None and not children:
                raise ValueError(f"'{name}' needs at least one rule")
        return self

    def walk(self, path: str = "rule") -> Iterator[tuple[str, Rule]]:
        """This node and every node under it, depth first in rule order, each with its key path
        (``rule.all.1.not``): the one walk that validation, compilation and classification share."""
        yield path, self
        for key, children in (("all", self.all), ("any", self.any)):
            for i, child in enumerate(children or []):
                yield from child.walk(f"{path}.{key}.{i}")
        if self.not_ is not None:
            yield from self.not_.walk(f"{path}.not")

    @property
    def attribute_condition(self) -> AttributeCondition | None:
        if self.attribute is None or self.op is None:
            return None
        return AttributeCondition(attribute=self.attribute, op=self.op, value=self.value, match=self.match,
                                  key=self.key)


class AudienceSpec(Strict):
    """An audience (segment): an id that never changes, a display name and a rule."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    description: str = ""
    # a merge policy of workspace.yaml: the profile attributes this audience's rule sees (None: the default)
    merge_policy: str | None = None
    rule: Rule


# ---------------------------------------------------------------- destinations

# Macros of an export file name; {destination} and {audience_id} identify the file (see FileDestination).
FILE_NAME_MACROS = ("destination", "audience_id", "audience_name", "date", "datetime", "timestamp")
# Placeholders of a destination's folder path (a dataset's source path knows only {date}).
DESTINATION_PATH_PLACEHOLDERS = ("date", "destination")
DATASET_PATH_PLACEHOLDERS = ("date",)
ConnectionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]
ExportFormat = Literal["csv", "jsonl", "parquet"]
Compression = Literal["none", "gzip", "snappy"]


class DestinationCsvOptions(Strict):
    """The Spark CSV writer's options; the defaults write RFC 4180 (a quote inside a field is doubled).

    ``formula_protection`` makes a text value starting with ``=``, ``+``, ``-``, ``@``, tab or CR inert in
    spreadsheets (E.164 phones and negative numbers in numeric columns are left as they are).
    """

    delimiter: str = ","
    quote: str = '"'
    escape: str = '"'
    null_value: str = ""
    empty_value: str = '""'
    header: bool = True
    date_format: str = "yyyy-MM-dd"
    timestamp_format: str = "yyyy-MM-dd'T'HH:mm:ss'Z'"
    formula_protection: bool = True

    @field_validator("delimiter", "quote", "escape")
    @classmethod
    def _one_character(cls, value: str, info: Any) -> str:
        return single_character(value, info.field_name)

    @model_validator(mode="after")
    def _distinct(self) -> DestinationCsvOptions:
        if self.delimiter == self.quote:
            raise ValueError(f"delimiter and quote are both {self.delimiter!r}; they must differ")
        return self


IDENTITY_PREFIX = "identity:"
PROFILE_ID_SOURCE = "profile_id"


class MappedField(Strict):
    """One exported column: a profile attribute (a dotted path into objects is fine), an identity
    namespace (``identity:<namespace>``) or ``profile_id``, under a header name."""

    source: str = Field(min_length=1, description="attribute, identity:<namespace> or profile_id")
    name: str | None = Field(default=None, min_length=1)
    hash: Literal["sha256"] | None = None
    # mandatory: profiles without a value are excluded from the file (and counted)
    required: bool = False
    # The namespace's type (email, phone, ...), bound by the loader once namespaces.yaml is read: a hashed
    # e-mail namespace is headed <ns>_lc_sha256 like the reference's identity map.
    _namespace_type: str | None = PrivateAttr(default=None)

    @property
    def namespace(self) -> str | None:
        """The identity namespace this column exports, or None."""
        return self.source.removeprefix(IDENTITY_PREFIX) if self.source.startswith(IDENTITY_PREFIX) else None

    @property
    def header(self) -> str:
        """The final column name: ``name``, else the attribute or namespace (hashed: ``_sha256`` appended,
        ``_lc_sha256`` for an e-mail namespace); dots become underscores."""
        if self.name is not None:
            return self.name.replace(".", "_")
        base = self.namespace if self.namespace is not None else self.source
        if self.hash is not None:
            base += "_lc_sha256" if self.namespace is not None and self._namespace_type == "email" else "_sha256"
        return base.replace(".", "_")

    def bind_namespace_type(self, namespace_type: str | None) -> None:
        """Record the type of the namespace this column exports (the loader calls it)."""
        self._namespace_type = namespace_type


class Deduplication(Strict):
    """The key of one exported row: one identity namespace, or one or two attributes (exactly one form)."""

    namespace: str | None = None
    attributes: list[str] | None = Field(default=None, min_length=1, max_length=2)

    @model_validator(mode="after")
    def _one_form(self) -> Deduplication:
        if (self.namespace is None) == (self.attributes is None):
            raise ValueError("give exactly one of namespace, attributes")
        return self


def audiences_once(value: list[str]) -> list[str]:
    """A destination's audiences, each listed once (the validator every destination type shares)."""
    duplicates = sorted({a for a in value if value.count(a) > 1})
    if duplicates:
        raise ValueError(f"audience(s) {', '.join(duplicates)} listed more than once")
    return value


class FileDestination(Strict):
    """What every file destination shares: audiences, mapping, format, file names and layout.

    ``file_name`` is a template (no extension: the exporter adds .csv / .jsonl / .parquet and .gz) with
    the macros {destination}, {audience_id}, {audience_name} (a slug of the name), {date} (YYYYMMDD),
    {datetime} (YYYYMMDDTHHMMSS) and {timestamp} (epoch seconds). ``layout: combined`` writes one file
    with a membership column per audience (then {audience_id} is optional).
    """

    name: Name
    audiences: list[str] = Field(min_length=1, max_length=250)
    # the folder (local, SFTP) or prefix (object stores) files go to; {date} and {destination} allowed
    path: str
    connection: ConnectionId | None = Field(default=None, validate_default=True)
    format: ExportFormat = "csv"
    compression: Compression | None = None
    csv: DestinationCsvOptions = Field(default_factory=DestinationCsvOptions)
    file_name: str = "{destination}_{audience_id}_{date}"
    layout: Literal["per_audience", "combined"] = "per_audience"
    export: Literal["full", "incremental"] = "full"
    include_membership_status: bool = True
    mapping: list[MappedField] = Field(min_length=1, max_length=50)
    deduplication: Deduplication | None = None
    split_rows: Count = 5_000_000
    manifest: bool = False
    encryption: Literal["pgp"] | None = None
    description: str = ""
    # governance: what the destination is used for (policies forbid labels for actions) and the consent
    # purposes a profile must have granted to be delivered
    marketing_actions: list[Name] = Field(default_factory=list)
    consent: list[str] = Field(default_factory=list)
    # cadence (cdp.workspace.cadence): absent or daily exports with cdp_daily; every 3h|6h|8h|12h or
    # after_audience_evaluation runs as the DAG cdp_activate__<name>
    schedule: str | None = None

    # Types whose credentials and endpoint come from an Airflow connection.
    needs_connection: ClassVar[bool] = True

    @field_validator("schedule")
    @classmethod
    def _schedule_is_a_cadence(cls, value: str | None) -> str | None:
        return None if value is None else parse_cadence(value)

    # Field validators (not one model validator) so that each problem names its key.
    @field_validator("audiences")
    @classmethod
    def _audiences_once(cls, value: list[str]) -> list[str]:
        return audiences_once(value)

    @field_validator("connection")
    @classmethod
    def _connection_fits_type(cls, value: str | None) -> str | None:
        kind = get_args(cls.model_fields["type"].annotation)[0]
        if cls.needs_connection and value is None:
            raise ValueError(f"type {kind} needs a connection: the id of the Airflow connection holding the "
                             "credentials and endpoint")
        if not cls.needs_connection and value is not None:
            raise ValueError(f"type {kind} writes under the exports root and takes no connection; remove it")
        return value

    @field_validator("compression")
    @classmethod
    def _compression_fits_format(cls, value: Compression | None, info: ValidationInfo) -> Compression | None:
        file_format = info.data.get("format")
        allowed = {"csv": ("none", "gzip"), "jsonl": ("none", "gzip"), "parquet": ("none", "snappy")}.get(
            str(file_format), ("none", "gzip", "snappy"))
        if value is not None and value not in allowed:
            raise ValueError(f"compression {value} does not apply to format {file_format} "
                             f"(use {' or '.join(allowed)})")
        return value

    @field_validator("csv")
    @classmethod
    def _csv_only_for_csv(cls, value: DestinationCsvOptions, info: ValidationInfo) -> DestinationCsvOptions:
        if info.data.get("format", "csv") != "csv":
            raise ValueError(f"csv options apply to format csv, not {info.data.get('format')}; remove them")
        return value

    @field_validator("encryption")
    @classmethod
    def _encryption_needs_connection(cls, value: str | None) -> str | None:
        if value is not None and not cls.needs_connection:
            raise ValueError("encryption needs the public key of a connection; a local destination has none")
        return value

    @property
    def type_name(self) -> str:
        """The destination's ``type`` (each subclass declares it as a literal)."""
        return str(getattr(self, "type", "?"))

    @property
    def effective_compression(self) -> Compression:
        """The compression used: as given, else none for csv / jsonl and snappy for parquet."""
        if self.compression is not None:
            return self.compression
        return "snappy" if self.format == "parquet" else "none"

    @property
    def extension(self) -> str:
        """What the exporter appends to a rendered file name (``.csv.gz``, ``.parquet``...)."""
        return f".{self.format}" + (".gz" if self.effective_compression == "gzip" else "")


class LocalDestination(FileDestination):
    """A folder under the exports root (a landing zone other systems pick up from)."""

    type: Literal["local"]
    path: str = Field(description="folder under the exports root, may be empty; {date} and {destination} allowed")
    retention_days: Days | None = None

    needs_connection: ClassVar[bool] = False


class S3Destination(FileDestination):
    """Amazon S3 or an S3-compatible store (endpoint and credentials from the connection)."""

    type: Literal["s3"]
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    path: str = Field(default="", description="key prefix")
    sse: Literal["AES256", "aws:kms"] | None = None
    kms_key_id: str | None = None

    @field_validator("kms_key_id")
    @classmethod
    def _kms(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("sse") != "aws:kms":
            raise ValueError("kms_key_id applies to sse: aws:kms only")
        return value


class AzureBlobDestination(FileDestination):
    """Azure Blob Storage / ADLS Gen2: a container and a folder path in it."""

    type: Literal["azure_blob"]
    container: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
    path: str = ""


class GcsDestination(FileDestination):
    """Google Cloud Storage: a bucket and a folder path in it."""

    type: Literal["gcs"]
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
    path: str = ""


class SftpDestination(FileDestination):
    """A remote folder on an SFTP server (host, port, user, key and known host key from the connection)."""

    type: Literal["sftp"]
    path: str = Field(description="remote folder")


# ---------------------------------------------------------------- streaming destinations

StreamingAuth = Literal["none", "bearer", "oauth2_client_credentials", "oauth2_password"]
# Header names a destination may not set itself: the sender owns them (body framing, idempotency, auth).
RESERVED_HEADERS = ("authorization", "content-type", "content-encoding", "content-length", "host")
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")]


class Batching(Strict):
    """How messages are grouped into one request / produce call.

    ``best_effort``: small batches sent at once (``max_messages`` defaults to 50); ``configured``: up to
    ``max_messages`` messages, or what is ready after ``max_seconds``, whichever comes first.
    """

    mode: Literal["best_effort", "configured"] = "best_effort"
    max_messages: StrictInt = Field(default=50, ge=1, le=10_000)
    max_seconds: float = Field(default=1.0, gt=0, le=300)


class StreamingRetry(Strict):
    """Retries of one batch on network errors, timeouts, 429 and 5xx (exponential backoff with jitter,
    ``Retry-After`` honoured up to ``max_wait_seconds``); ``give_up_after_days``: a failed record is retried by
    later runs until it is delivered or this many days old, then reported as given up."""

    attempts: StrictInt = Field(default=5, ge=1, le=100)
    initial_wait_seconds: float = Field(default=0.5, ge=0, le=600)
    max_wait_seconds: float = Field(default=30.0, ge=0, le=3600)
    give_up_after_days: Days = 7


class StreamingDestination(Strict):
    """What every streaming destination shares: one JSON message per profile whose state changed.

    A message holds the ``mapping``'s attributes (renamed), the identity map of the mapped namespaces (hashed
    where asked), the membership map of ``audiences``, the profile id, a message id stable for the same change,
    the run date and run id (``docs/schemas/profile_change.schema.json``). Endpoint and secrets come from the
    Airflow connection named by ``connection``.
    """

    name: Name
    audiences: list[str] = Field(min_length=1, max_length=250)
    connection: ConnectionId
    mapping: list[MappedField] = Field(min_length=1, max_length=50)
    batching: Batching = Field(default_factory=Batching)
    # messages per second to this destination (None: as fast as the endpoint acknowledges)
    rate_limit: float | None = Field(default=None, gt=0, le=1_000_000)
    retry: StreamingRetry = Field(default_factory=StreamingRetry)
    description: str = ""
    # governance, as for file destinations
    marketing_actions: list[Name] = Field(default_factory=list)
    consent: list[str] = Field(default_factory=list)
    # cadence, as for file destinations
    schedule: str | None = None

    @field_validator("schedule")
    @classmethod
    def _schedule_is_a_cadence(cls, value: str | None) -> str | None:
        return None if value is None else parse_cadence(value)

    # What the file-destination checks read from every destination: streaming ones have no such keys.
    deduplication: ClassVar[None] = None
    layout: ClassVar[str] = "profile"

    @field_validator("audiences")
    @classmethod
    def _audiences_once(cls, value: list[str]) -> list[str]:
        return audiences_once(value)

    @property
    def type_name(self) -> str:
        """The destination's ``type`` (each subclass declares it as a literal)."""
        return str(getattr(self, "type", "?"))


class HttpDestination(StreamingDestination):
    """POST JSON batches (an array of messages) to an HTTP API.

    The connection holds the base URL (``host``, with scheme and port) and the secrets: the bearer token
    (password), OAuth2's ``token_url`` / ``client_id`` / ``client_secret`` (extra) and the password grant's
    user (login / password), mutual TLS's ``client_cert`` / ``client_key`` and a ``ca_cert`` (extra, PEM).
    """

    type: Literal["http"]
    path: str = ""
    auth: StreamingAuth = "none"
    headers: dict[HeaderName, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    gzip: bool = False
    verify_tls: bool = True
    mutual_tls: bool = False
    idempotency_header: HeaderName = "Idempotency-Key"
    scopes: list[str] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _url_path(cls, value: str) -> str:
        if value and (not value.startswith("/") or any(c.isspace() or c == "#" for c in value)):
            raise ValueError(f"{value!r} is not a URL path: it must start with '/' (it follows the connection's "
                             "base URL) and hold no space or '#'")
        return value

    @field_validator("headers")
    @classmethod
    def _headers_not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(h for h in value if h.lower() in RESERVED_HEADERS)
        if reserved:
            raise ValueError(f"header(s) {', '.join(reserved)} are set by the sender; remove them (a token "
                             "belongs in the connection, with auth: bearer)")
        bad = sorted(h for h, v in value.items() if any(c in v for c in "\r\n\0"))
        if bad:
            raise ValueError(f"header(s) {', '.join(bad)} hold a line break or NUL; remove it")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes_for_oauth(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if value and not str(info.data.get("auth", "none")).startswith("oauth2"):
            raise ValueError("scopes apply to auth oauth2_client_credentials or oauth2_password only")
        return value


class KafkaDestination(StreamingDestination):
    """Produce to a Kafka topic (Apache Kafka or Azure Event Hubs' Kafka endpoint) with an idempotent producer,
    ``acks=all``, key = profile id. The connection holds the bootstrap servers (``host``, comma-separated
    ``host:port``) and, for SASL, ``security_protocol`` / ``sasl_mechanism`` (extra) with login / password
    (Event Hubs: ``$ConnectionString`` and the namespace's connection string)."""

    type: Literal["kafka"]
    topic: str

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value) or value in (".", ".."):
            raise ValueError(f"{value!r} is not a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-'")
        return value
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"


class KinesisDestination(StreamingDestination):
    """PutRecords to an Amazon Kinesis data stream (batches of up to 500 records, partition key = profile id).
    The connection is an AWS one: key id / secret (login / password), ``region_name`` and an optional
    ``endpoint_url`` (extra)."""

    type: Literal["kinesis"]
    stream: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")

    @field_validator("batching")
    @classmethod
    def _put_records_limit(cls, value: Batching) -> Batching:
        if value.max_messages > 500:
            raise ValueError(f"max_messages {value.max_messages} is over 500, the most PutRecords takes")
        return value


STREAMING_TYPES: dict[str, type[StreamingDestination]] = {
    "http": HttpDestination, "kafka": KafkaDestination, "kinesis": KinesisDestination}

DESTINATION_TYPES: dict[str, type[FileDestination] | type[StreamingDestination]] = {
    "local": LocalDestination, "s3": S3Destination, "azure_blob": AzureBlobDestination, "gcs": GcsDestination,
    "sftp": SftpDestination, **STREAMING_TYPES}

# One destination file, a union discriminated on ``type``.
DestinationSpec = Annotated[LocalDestination | S3Destination | AzureBlobDestination | GcsDestination
                            | SftpDestination | HttpDestination | KafkaDestination | KinesisDestination,
                            Field(discriminator="type")]
# The previous name of the local kind, kept for code written against it.
LocalFileDestination = LocalDestination
