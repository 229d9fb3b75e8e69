"""Typed models of a workspace: the YAML files a data engineer writes.

Every model forbids unknown keys, so a typo (``profile_enabeld``) is an error that names the
file and the key instead of a setting silently ignored.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

FieldType = Literal[
    "string", "integer", "long", "double", "decimal", "boolean", "date", "timestamp", "object", "array", "map"
]
StringFormat = Literal["email", "phone", "uri"]
NamespaceType = Literal["cookie", "device", "email", "phone", "person"]
SchemaClass = Literal["profile", "event"]
FileFormat = Literal["jsonl", "csv", "parquet"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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
    precision: int = Field(default=18, ge=1, le=38)
    scale: int = Field(default=2, ge=0, le=38)
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
    link_ttl_days: int | None = Field(default=None, ge=1)


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
    delimiter: str = ","
    quote: str = '"'
    escape: str = "\\"
    header: bool = True
    # a header column that is no declared field: reject quarantines the file (bad_header), ignore drops the column
    unknown_columns: Literal["reject", "ignore"] = "reject"


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


class Guardrails(Strict):
    """Limits from the product reference, as defaults the workspace may change."""

    max_rejected_share: float = Field(default=0.10, ge=0.0, le=1.0)
    max_identities_per_record: int = 20
    max_identity_length: int = 1024
    blocked_identity_values: list[str] = Field(default_factory=lambda: ["null", "anonymous", "invalid", ""])
    # regexes an identity value (trimmed) must not fully match, e.g. "0+" or "test.*"
    blocked_patterns: list[str] = Field(default_factory=list)
    max_event_bytes: int = 10 * 1024
    max_profile_record_bytes: int = 100 * 1024
    max_future_skew_minutes: int = 60
    max_identities_per_graph: int = 50
    # identity links not seen again for this many days are dropped (None: links never expire)
    link_ttl_days: int | None = Field(default=None, ge=1)
    # Segmentation cap: a profile with more events than this in the audiences' evaluation window (the longest
    # window any audience reads) is left out of audience evaluation, and counted.
    max_events_per_profile: int = Field(default=5000, ge=0)
    # An audience whose size changes by more than this share since the previous run raises a warning.
    audience_size_change_warning_share: float = Field(default=0.5, ge=0.0)


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

    last_days: int | None = Field(default=None, ge=1)
    between_days_ago: list[int] | None = None
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
    at_least: int | None = Field(default=None, ge=0)
    at_most: int | None = Field(default=None, ge=0)
    exactly: int | None = Field(default=None, ge=0)
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
    within_hours: float = Field(gt=0)
    not_between: SequenceStep | None = None
    within: Window


class RecencyCondition(Strict):
    """The last event of a type (any time up to the run date) was more / less than N days ago.

    A profile that never had such an event matches neither (use ``not`` for "never").
    """

    event_type: str = Field(alias="type")
    dataset: str | None = None
    more_than_days_ago: int | None = Field(default=None, ge=0)
    less_than_days_ago: int | None = Field(default=None, ge=1)

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


class MappedField(Strict):
    """One exported column: a profile attribute or an identity namespace, under a header name."""

    source: str = Field(description="attribute name, or identity:<namespace>")
    name: str | None = None

    @property
    def header(self) -> str:
        return (self.name or self.source.removeprefix("identity:")).replace(".", "_")

    @property
    def namespace(self) -> str | None:
        return self.source.removeprefix("identity:") if self.source.startswith("identity:") else None


class LocalFileDestination(Strict):
    """Files written to a folder (a landing zone other systems pick up from)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: Literal["local"]
    path: str = Field(description="folder, relative to the exports root unless absolute")
    format: Literal["csv"] = "csv"
    audiences: list[str]
    mapping: list[MappedField]
    file_name: str = "{destination}_{audience_id}_{date}"
    include_membership_status: bool = True
    csv: CsvOptions = Field(default_factory=CsvOptions)

    @model_validator(mode="after")
    def _template(self) -> LocalFileDestination:
        for must in ("{destination}", "{audience_id}"):
            if must not in self.file_name:
                raise ValueError(f"file_name must contain {must}")
        return self


# Later destination kinds (S3, SFTP, Kafka, ...) join this as a union discriminated on ``type``.
DestinationSpec = LocalFileDestination
