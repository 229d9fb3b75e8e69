"""The lake: where each Delta table lives and what it holds.

Every table the platform writes is declared here once: its location under the lake, its Spark
schema (for tables whose columns do not depend on the workspace), its keys, partitioning and the
step that writes it. The data dictionary (docs/data_dictionary.md) is generated from these
declarations (``cdp docs``) and a test keeps the two identical.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pyspark.sql import types as T


@dataclass(frozen=True)
class TableSpec:
    """One Delta table of the lake."""

    name: str
    path: str  # relative to the lake root; {dataset} is replaced per dataset
    description: str
    written_by: str
    write_mode: str
    keys: list[str]
    partition_by: list[str] = field(default_factory=list)
    schema: T.StructType | None = None  # None: columns come from the workspace (described in `columns`)
    columns: str = ""
    # A bookkeeping table of a few rows per step, written (and maintained) only with delta-rs by
    # cdp.small_tables, never by a Spark job: a one-row commit takes milliseconds instead of a second.
    small: bool = False


REASON = T.StructType([
    T.StructField("code", T.StringType(), False),
    T.StructField("field", T.StringType(), True),
    T.StructField("message", T.StringType(), False),
])

QUARANTINE = TableSpec(
    name="quarantine",
    path="quarantine",
    description="Every rejected input record (or whole unreadable file) with all the reasons that apply.",
    written_by="validate",
    write_mode="overwrite of the (dataset, batch_date) slice (replaceWhere)",
    keys=["dataset", "batch_date", "source_file", "row_number"],
    partition_by=["dataset"],
    schema=T.StructType([
        T.StructField("dataset", T.StringType(), False),
        T.StructField("batch_date", T.DateType(), False),
        T.StructField("source_file", T.StringType(), False),
        T.StructField("row_number", T.LongType(), True),
        T.StructField("raw", T.StringType(), True),
        T.StructField("reasons", T.ArrayType(REASON, False), False),
    ]),
)

BATCH_LEDGER = TableSpec(
    name="batch_ledger",
    path="batch_ledger",
    description=("One row per landed file and run: rows read = rows valid + rows quarantined. status is staged "
                 "(valid rows in staging; written by validate), ingested (set by ingest once they are in the "
                 "dataset table; 'ok' in rows written before these statuses), rejected (batch over the rejected "
                 "share), unreadable or duplicate (content already ingested: the file counts as one quarantined "
                 "record); sha256 is the file's content hash; identities_dropped counts the identity values "
                 "dropped from its valid records (blocked, too long, not of the namespace's pattern)."),
    written_by="validate (ingest updates status)",
    write_mode="overwrite of the (dataset, batch_date) slice; ingest: UPDATE of status",
    keys=["dataset", "batch_date", "source_file"],
    partition_by=["dataset"],
    small=True,
    schema=T.StructType([
        T.StructField("dataset", T.StringType(), False),
        T.StructField("batch_date", T.DateType(), False),
        T.StructField("source_file", T.StringType(), False),
        T.StructField("rows_read", T.LongType(), False),
        T.StructField("rows_valid", T.LongType(), False),
        T.StructField("rows_quarantined", T.LongType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("run_id", T.StringType(), True),
        # Added after the first release: tables written before it gain the column on their next write.
        T.StructField("sha256", T.StringType(), True),
        T.StructField("identities_dropped", T.LongType(), True),
    ]),
)

STAGING = TableSpec(
    name="staging/<dataset>",
    path="staging/{dataset}",
    description="Validated rows of one dataset, typed by its schema, waiting for ingestion.",
    written_by="validate",
    write_mode="overwrite of the _batch_date partition (replaceWhere)",
    keys=["_batch_date", "_source_file", "_row_number"],
    partition_by=["_batch_date"],
    columns="the schema's declared fields, then _source_file, _row_number, _batch_date, _record_ts",
)

DATASET = TableSpec(
    name="datasets/<dataset>",
    path="datasets/{dataset}",
    description=("Ingested records of one dataset. Profile records: one row per primary identity, the newest "
                 "by _record_ts. Events: one row per event id."),
    written_by="ingest",
    write_mode="MERGE (profiles: upsert on the primary identity when the incoming _record_ts is not older; "
               "events: insert when the event id is new)",
    keys=["primary identity field (profiles) or id_field (events)"],
    columns="as staging/<dataset>",
)

IDENTITY_MAP = TableSpec(
    name="identity_map",
    path="identity_map",
    description=("Which profile each identity belongs to, as resolved for a run date: every identity of the "
                 "identity graph (identity_nodes), an identity dropped by the identity cap as a profile of its own."),
    written_by="resolve_identities",
    write_mode="overwrite of the run_date partition (replaceWhere)",
    keys=["run_date", "namespace", "value"],
    partition_by=["run_date"],
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("namespace", T.StringType(), False),
        T.StructField("value", T.StringType(), False),
        T.StructField("node_id", T.LongType(), False),
        T.StructField("profile_id", T.StringType(), False),
        T.StructField("first_seen", T.DateType(), False),
        T.StructField("last_seen", T.DateType(), False),
        T.StructField("component", T.LongType(), True),
    ]),
    columns=("first_seen / last_seen: the first and the latest batch date of a validated record (any version) "
             "carrying the identity; "
             "component: the smallest node id of the identity's connected component before collapse protection "
             "(what an incremental run recomputes when the component is touched); null in slices written before "
             "the column existed"),
)

IDENTITY_AUDIT = TableSpec(
    name="identity_audit",
    path="identity_audit",
    description=("Every link and identity that collapse protection dropped for a run date, with the reason: "
                 "unique_namespace (a link that would put two values of a unique namespace in one person) or "
                 "identity_cap (an identity beyond guardrails.max_identities_per_graph); and every link that "
                 "expired since the previous run: link_expired (not seen again within the link_ttl_days of its "
                 "namespaces)."),
    written_by="resolve_identities",
    write_mode="overwrite of the run_date partition (replaceWhere)",
    keys=["run_date", "reason", "namespace", "value", "other_namespace", "other_value"],
    partition_by=["run_date"],
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("component", T.LongType(), False),
        T.StructField("reason", T.StringType(), False),
        T.StructField("namespace", T.StringType(), False),
        T.StructField("value", T.StringType(), False),
        T.StructField("other_namespace", T.StringType(), True),
        T.StructField("other_value", T.StringType(), True),
        T.StructField("seen_date", T.DateType(), True),
        T.StructField("seen_ts", T.TimestampType(), True),
        T.StructField("detail", T.StringType(), False),
    ]),
    columns=("component: the smallest node id of the connected component before the rules (link_expired: the "
             "component of (namespace, value) without the link); a dropped link is "
             "(namespace, value) - (other_namespace, other_value), last seen on seen_date / seen_ts; a dropped "
             "identity has no other_*"),
)

PROFILE_ID_CHANGES = TableSpec(
    name="profile_id_changes",
    path="profile_id_changes",
    description=("How profile ids moved since the previous run's identity map: 'merge' (previous_profile_id "
                 "merged into profile_id, the id first seen earliest surviving) and 'split' (identities of "
                 "previous_profile_id now in profile_id; the part holding its oldest identity keeps the id)."),
    written_by="resolve_identities",
    write_mode="overwrite of the run_date partition (replaceWhere)",
    keys=["run_date", "profile_id", "previous_profile_id"],
    partition_by=["run_date"],
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("change", T.StringType(), False),
        T.StructField("profile_id", T.StringType(), False),
        T.StructField("previous_profile_id", T.StringType(), False),
        T.StructField("previous_run_date", T.DateType(), False),
        T.StructField("identities", T.LongType(), False),
    ]),
    columns="identities: how many identities of previous_profile_id are now in profile_id",
)

IDENTITY_LINKS = TableSpec(
    name="identity_links",
    path="identity_links",
    description=("The identity graph's edges as of a run date: two identities seen on the same record (any "
                 "validated version of it, up to the run date), with the latest batch date and record time the "
                 "link was seen. Cumulative: a later record version without one of the identities does not remove "
                 "the link; it stays until it expires (expires_on). The next run adds its batches' links to these "
                 "and recomputes only the components they touch."),
    written_by="resolve_identities",
    write_mode="overwrite of the run_date partition (replaceWhere)",
    keys=["run_date", "src", "dst"],
    partition_by=["run_date"],
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("src", T.LongType(), False),
        T.StructField("dst", T.LongType(), False),
        T.StructField("seen_date", T.DateType(), True),
        T.StructField("seen_ts", T.TimestampType(), True),
        # Added with link expiry: slices written before read null (never expires).
        T.StructField("expires_on", T.DateType(), True),
    ]),
    columns=("src < dst: node ids of identity_map.node_id; expires_on: the first run date on which the link is "
             "dropped unless seen again (seen_date + the shorter link_ttl_days of its two namespaces, a "
             "namespace without one taking guardrails.link_ttl_days); null: never expires"),
)

IDENTITY_RUNS = TableSpec(
    name="identity_runs",
    path="identity_runs",
    description=("How each run date's identity resolution was computed: 'full' (the whole staging history, "
                 "every component) or 'incremental' (the previous run's identity_nodes and identity_links plus "
                 "the batches after previous_run_date; only the components touched by their identities and links "
                 "or by an expired link are recomputed, the others copied), and why."),
    written_by="resolve_identities",
    write_mode="overwrite of the run_date partition",
    keys=["run_date"],
    partition_by=["run_date"],
    small=True,
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("mode", T.StringType(), False),
        T.StructField("reason", T.StringType(), False),
        T.StructField("previous_run_date", T.DateType(), True),
        T.StructField("config_fingerprint", T.StringType(), False),
        T.StructField("identities", T.LongType(), False),
        T.StructField("links", T.LongType(), False),
        T.StructField("recomputed_identities", T.LongType(), False),
        T.StructField("recomputed_components", T.LongType(), True),
    ]),
    columns=("config_fingerprint: hash of the namespaces' settings, the identity cap and link_ttl_days; an "
             "incremental run "
             "needs the previous run's to be equal. recomputed_components: previous components touched "
             "(null for a full run)"),
)

IDENTITY_NODES = TableSpec(
    name="identity_nodes",
    path="identity_nodes",
    description=("The identity graph's nodes as of a run date: every identity seen on a validated record (any "
                 "version of it, events too) up to the run date, with when it was first and last seen. "
                 "Cumulative: the next run adds its batches' identities to these; identities do not expire "
                 "(their links do). What an incremental run starts from, with identity_links."),
    written_by="resolve_identities",
    write_mode="overwrite of the run_date partition (replaceWhere)",
    keys=["run_date", "node_id"],
    partition_by=["run_date"],
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("node_id", T.LongType(), False),
        T.StructField("namespace", T.StringType(), False),
        T.StructField("value", T.StringType(), False),
        T.StructField("first_seen", T.DateType(), False),
        T.StructField("last_seen", T.DateType(), False),
        T.StructField("last_seen_ts", T.TimestampType(), True),
    ]),
    columns=("first_seen / last_seen: first and latest batch date of a record carrying the identity; last_seen_ts: "
             "the newest record time on last_seen (the identity cap drops the least recently seen first)"),
)

PROFILES = TableSpec(
    name="profiles",
    path="profiles",
    description=("One row per profile and run date: attributes merged by the workspace's default merge policy, "
                 "the identity map, each dataset's last update and the events counted by the segmentation cap."),
    written_by="build_profiles",
    write_mode="overwrite of the run_date partition (replaceWhere)",
    keys=["run_date", "profile_id"],
    partition_by=["run_date"],
    columns=("run_date, profile_id, identities (map namespace -> sorted values), identity_count, "
             "dataset_last_update (map dataset -> newest _record_ts of the profile's records in that dataset; "
             "datasets without one left out), events_in_window (long: the profile's events of every type in the "
             "audiences' evaluation window, from the first day any audience's event condition reads, all history "
             "when one is unbounded, to the run date; 0 when no audience reads events; compared with "
             "guardrails.max_events_per_profile), then one column per profile attribute (the fields of the "
             "profile datasets' schemas)"),
)

# The values of audience_membership.status and .exit_reason: evaluate_audiences writes them, check_quality checks them.
REALIZED = "realized"
EXISTING = "existing"
EXITED = "exited"
MEMBERSHIP_STATUSES = (REALIZED, EXISTING, EXITED)
NOT_QUALIFIED = "not_qualified"
EXCLUDED = "excluded"
PROFILE_MERGED = "profile_merged"
PROFILE_REMOVED = "profile_removed"
EXIT_REASONS = (NOT_QUALIFIED, EXCLUDED, PROFILE_MERGED, PROFILE_REMOVED)

AUDIENCE_MEMBERSHIP = TableSpec(
    name="audience_membership",
    path="audience_membership",
    description=("Membership per run date, audience and profile: realized (entered this run), existing "
                 "(still qualifies), exited (left; kept while younger than the retention). Created with the "
                 "Delta change data feed on (delta.enableChangeDataFeed=true): read changes with readChangeFeed."),
    written_by="evaluate_audiences",
    write_mode="overwrite of the run_date partition (replaceWhere)",
    keys=["run_date", "audience_id", "profile_id"],
    partition_by=["run_date"],
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("audience_id", T.StringType(), False),
        T.StructField("profile_id", T.StringType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("last_qualification_time", T.TimestampType(), False),
        T.StructField("status_since", T.DateType(), False),
        # Added after the first release: an existing table gains them (rows written earlier read null).
        T.StructField("exit_reason", T.StringType(), True),
        T.StructField("merged_into", T.StringType(), True),
    ]),
    columns=("exit_reason (null unless status = exited): not_qualified (the rules no longer match), excluded "
             "(left out by a segmentation guardrail), profile_merged (the profile id was merged into another: "
             "merged_into holds the surviving id, as on the day of the merge) or profile_removed (the profile id "
             "no longer exists: its identities are gone); an exited membership of a profile that disappears later "
             "is re-stamped with that reason and the day (status_since). merged_into: null unless profile_merged"),
)

AUDIENCE_CATALOG = TableSpec(
    name="audience_catalog",
    path="audience_catalog",
    description=("Per run date, every audience evaluated: its name, whether it is streaming-eligible or batch "
                 "only by the product's rules, and why (so no audience silently falls back to batch)."),
    written_by="evaluate_audiences",
    write_mode="overwrite of the run_date partition",
    keys=["run_date", "audience_id"],
    partition_by=["run_date"],
    small=True,
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("audience_id", T.StringType(), False),
        T.StructField("name", T.StringType(), False),
        T.StructField("evaluation", T.StringType(), False),
        T.StructField("reason", T.StringType(), False),
    ]),
)

EXPORT_LEDGER = TableSpec(
    name="export_ledger",
    path="export_ledger",
    description=("Every file of every run of every file destination: planned (name, rows, bytes, SHA-256) before "
                 "the upload, delivered once the target confirmed it. A re-run re-sends only what is not "
                 "delivered with the same SHA-256, under the same name; the last run date whose files were all "
                 "delivered is the base of an incremental export."),
    written_by="export",
    write_mode="overwrite of the (destination, run_date) slice when planning (delivered rows of the same name and "
               "SHA-256 kept); UPDATE of status when a file is delivered",
    keys=["destination", "run_date", "file_name"],
    partition_by=["destination"],
    small=True,
    schema=T.StructType([
        T.StructField("destination", T.StringType(), False),
        T.StructField("run_date", T.DateType(), False),
        T.StructField("file_name", T.StringType(), False),
        T.StructField("kind", T.StringType(), False),
        T.StructField("audience_id", T.StringType(), True),
        T.StructField("rows", T.LongType(), False),
        T.StructField("bytes", T.LongType(), False),
        T.StructField("sha256", T.StringType(), False),
        T.StructField("location", T.StringType(), False),
        T.StructField("mode", T.StringType(), False),
        T.StructField("base_run_date", T.DateType(), True),
        T.StructField("status", T.StringType(), False),
        T.StructField("run_id", T.StringType(), True),
        T.StructField("planned_at", T.TimestampType(), False),
        T.StructField("delivered_at", T.TimestampType(), True),
    ]),
    columns=("kind: data or manifest; mode: full, incremental or resync (a full export asked for); base_run_date: "
             "the day an incremental export is the difference from; status: planned or delivered; location: "
             "where the file is, without credentials"),
)

DESTINATION_METRICS = TableSpec(
    name="destination_metrics",
    path="destination_metrics",
    description=("Per run date and destination: what it received (members of its audiences, or the changes of an "
                 "incremental export), activated, excluded by reason and failed; files, rows and bytes delivered. "
                 "received = activated + excluded + failed."),
    written_by="export",
    write_mode="overwrite of the (destination, run_date) slice",
    keys=["destination", "run_date"],
    partition_by=["destination"],
    small=True,
    schema=T.StructType([
        T.StructField("destination", T.StringType(), False),
        T.StructField("run_date", T.DateType(), False),
        T.StructField("run_id", T.StringType(), True),
        T.StructField("type", T.StringType(), False),
        T.StructField("mode", T.StringType(), False),
        T.StructField("base_run_date", T.DateType(), True),
        T.StructField("received", T.LongType(), False),
        T.StructField("activated", T.LongType(), False),
        T.StructField("excluded", T.MapType(T.StringType(), T.LongType(), False), False),
        T.StructField("failed", T.LongType(), False),
        T.StructField("files", T.LongType(), False),
        T.StructField("rows", T.LongType(), False),
        T.StructField("bytes", T.LongType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("error", T.StringType(), True),
        # Added with streaming destinations: rows written before read null.
        T.StructField("failed_by", T.MapType(T.StringType(), T.LongType(), False), True),
        T.StructField("latency_p50_ms", T.LongType(), True),
        T.StructField("latency_p95_ms", T.LongType(), True),
    ]),
    columns=("excluded: reason -> count (consent, no_identity, missing_mandatory, deduplicated; streaming: consent, "
             "no_identity, missing_mandatory); failed: rows of files "
             "that could not be delivered; status: delivered, failed; error: the delivery error, without secrets. "
             "Streaming destinations (http, kafka, kinesis): received / activated / excluded / failed count "
             "messages (one per changed profile), rows the messages acknowledged, bytes their payloads, files 0; "
             "status delivered, delivered_with_failures (some records rejected or given up) or failed (the "
             "endpoint stayed unreachable); failed_by: error class -> count (http_400, timeout, "
             "connection_error, given_up, ...); latency_p50_ms / latency_p95_ms: from the end of audience "
             "evaluation (evaluate_audiences committed) to acknowledgement, over the messages acknowledged"),
)

DELIVERY_LEDGER = TableSpec(
    name="delivery_ledger",
    path="delivery_ledger",
    description=("Every message a streaming destination acknowledged (or excluded, or gave up on), per run date: "
                 "the state it carried (signature, the state as JSON, the audiences the receiver now knows the "
                 "profile in). The latest row of a profile before a run date is what that run's changes are "
                 "computed against; a message id already recorded for the run date is not sent again."),
    written_by="export (streaming destinations)",
    write_mode="MERGE on (destination, run_date, message_id) as acknowledgements arrive (folded from the "
               "executors' acknowledgement journal)",
    keys=["destination", "run_date", "message_id"],
    partition_by=["destination"],
    schema=T.StructType([
        T.StructField("destination", T.StringType(), False),
        T.StructField("run_date", T.DateType(), False),
        T.StructField("message_id", T.StringType(), False),
        T.StructField("profile_id", T.StringType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("signature", T.StringType(), False),
        T.StructField("state_json", T.StringType(), True),
        T.StructField("memberships", T.MapType(T.StringType(), T.TimestampType(), True), True),
        T.StructField("bytes", T.LongType(), False),
        T.StructField("run_id", T.StringType(), True),
        T.StructField("acknowledged_at", T.TimestampType(), True),
    ]),
    columns=("status: delivered (the endpoint acknowledged it), excluded (consent / no_identity / missing_mandatory: "
             "not sent, not reconsidered until the profile changes again), given_up (failed for longer than the "
             "destination's retry.give_up_after_days); memberships: mapped audience -> last qualification time "
             "as the receiver knows them after this message; acknowledged_at: null unless delivered"),
)

DELIVERY_FAILURES = TableSpec(
    name="delivery_failures",
    path="delivery_failures",
    description=("Per run date, the messages of a streaming destination that were not delivered: rejected by the "
                 "endpoint (a 4xx other than 408 / 429, a record error), still failing after the retries, or "
                 "given up. A failed message is sent again by later runs until it is delivered or older than "
                 "retry.give_up_after_days (then given_up)."),
    written_by="export (streaming destinations)",
    write_mode="overwrite of the (destination, run_date) slice (replaceWhere)",
    keys=["destination", "run_date", "message_id"],
    partition_by=["destination"],
    schema=T.StructType([
        T.StructField("destination", T.StringType(), False),
        T.StructField("run_date", T.DateType(), False),
        T.StructField("message_id", T.StringType(), False),
        T.StructField("profile_id", T.StringType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("error_class", T.StringType(), False),
        T.StructField("http_status", T.IntegerType(), True),
        T.StructField("response", T.StringType(), True),
        T.StructField("first_failed_run_date", T.DateType(), False),
        T.StructField("attempts", T.IntegerType(), False),
        T.StructField("run_id", T.StringType(), True),
    ]),
    columns=("status: failed or given_up; error_class: http_<status>, timeout, connection_error, kafka_<code>, "
             "kinesis_<code> or given_up's last class; response: the endpoint's answer, at most 500 characters, "
             "with the request's credentials masked; first_failed_run_date: the first run date the change "
             "failed (what give-up ages are counted from)"),
)

RUN_METRICS = TableSpec(
    name="run_metrics",
    path="run_metrics",
    description="Counts each step reports for a run date (records read, profiles, audience sizes, ...).",
    written_by="every step",
    write_mode="overwrite of the (run_date, step, scope) slice",
    keys=["run_date", "step", "scope", "metric"],
    partition_by=["step", "scope"],
    small=True,
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("step", T.StringType(), False),
        T.StructField("scope", T.StringType(), False),
        T.StructField("metric", T.StringType(), False),
        T.StructField("value", T.LongType(), False),
    ]),
)

QUALITY_RESULTS = TableSpec(
    name="quality_results",
    path="quality_results",
    description="Outcome of every Great Expectations expectation run between the steps.",
    written_by="check_<stage>",
    write_mode="overwrite of the (run_date, stage) slice",
    keys=["run_date", "stage", "suite", "expectation", "kwargs"],
    partition_by=["stage"],
    small=True,
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("stage", T.StringType(), False),
        T.StructField("suite", T.StringType(), False),
        T.StructField("expectation", T.StringType(), False),
        T.StructField("kwargs", T.StringType(), False),
        T.StructField("success", T.BooleanType(), False),
        T.StructField("observed", T.StringType(), True),
    ]),
)

STEP_RUNS = TableSpec(
    name="step_runs",
    path="step_runs",
    description=("One row per run date, step and scope (a dataset, a destination or 'all'): 'started' before the "
                 "step's first write, 'committed' after its last. A step refuses to start unless the steps it reads "
                 "from are committed for the run date, so a day half-written by a killed task is never read."),
    written_by="every Spark step (cdp.job)",
    write_mode="overwrite of the (run_date, step, scope) slice",
    keys=["run_date", "step", "scope"],
    partition_by=["step"],
    small=True,
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("step", T.StringType(), False),
        T.StructField("scope", T.StringType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("run_id", T.StringType(), True),
        T.StructField("updated_at", T.TimestampType(), False),
    ]),
    columns="updated_at: when the status was written (wall clock, for operators; nothing keys on it)",
)

EXPORT_PREVIEW_FILE = T.StructType([
    T.StructField("file_name", T.StringType(), False),
    T.StructField("kind", T.StringType(), False),
    T.StructField("audience_id", T.StringType(), True),
    T.StructField("rows", T.LongType(), False),
    T.StructField("bytes", T.LongType(), False),
    T.StructField("sha256", T.StringType(), False),
    T.StructField("already_delivered", T.BooleanType(), False),
])

EXPORT_PREVIEWS = TableSpec(
    name="export_previews",
    path="export_previews",
    description=("Per run date and destination, what a dry run (DAG Param dry_run, job option --dry-run) found the "
                 "destination would receive: the same selection, exclusions and rendering as a real export, "
                 "nothing delivered and no ledger changed. The rendered files (file destinations) and the messages "
                 "(streaming destinations, one JSON payload a line) are kept under previews/<run_date>/<destination>/ "
                 "in the lake, the only place the preview's profile values are written."),
    written_by="export --dry-run",
    write_mode="overwrite of the (destination, run_date) slice",
    keys=["destination", "run_date"],
    partition_by=["destination"],
    small=True,
    schema=T.StructType([
        T.StructField("destination", T.StringType(), False),
        T.StructField("run_date", T.DateType(), False),
        T.StructField("run_id", T.StringType(), True),
        T.StructField("type", T.StringType(), False),
        T.StructField("mode", T.StringType(), False),
        T.StructField("base_run_date", T.DateType(), True),
        T.StructField("received", T.LongType(), False),
        T.StructField("activated", T.LongType(), False),
        T.StructField("excluded", T.MapType(T.StringType(), T.LongType(), False), False),
        T.StructField("failed", T.LongType(), False),
        T.StructField("files", T.LongType(), False),
        T.StructField("rows", T.LongType(), False),
        T.StructField("bytes", T.LongType(), False),
        T.StructField("messages", T.LongType(), False),
        T.StructField("already_delivered", T.LongType(), False),
        T.StructField("file_list", T.ArrayType(EXPORT_PREVIEW_FILE, False), False),
        T.StructField("location", T.StringType(), False),
        T.StructField("previewed_at", T.TimestampType(), False),
    ]),
    columns=("received / activated / excluded (reason -> count) / failed / files / rows / bytes: what "
             "destination_metrics would record if every delivery succeeded (failed: streaming changes that would be "
             "given up, retry.give_up_after_days passed) (files, rows and bytes count data files; streaming: rows = "
             "activated messages, bytes their payloads, files 0); messages: what a streaming destination would send "
             "now (activated minus those already acknowledged for the run date; 0 for files); already_delivered: "
             "files (or messages) the ledgers already hold as delivered for the run date, which a real run would "
             "not send again; file_list: every file a file destination would deliver (the manifest last), "
             "already_delivered when the export ledger has it with the same SHA-256; location: the preview "
             "folder in the lake"),
)

# Small per-run aggregates for the Activation dashboard (plugins/cdp_provider/dashboard): written by the jobs
# next to the big tables they summarise, so that the view never scans membership, identity or quarantine data.
AUDIENCE_SIZES = TableSpec(
    name="audience_sizes",
    path="audience_sizes",
    description=("Per run date and audience: its size (realized + existing), the profiles that entered (realized) "
                 "and those that left on this run date (exited); name and evaluation are in audience_catalog."),
    written_by="evaluate_audiences",
    write_mode="overwrite of the run_date partition",
    keys=["run_date", "audience_id"],
    partition_by=["run_date"],
    small=True,
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("audience_id", T.StringType(), False),
        T.StructField("size", T.LongType(), False),
        T.StructField("realized", T.LongType(), False),
        T.StructField("existing", T.LongType(), False),
        T.StructField("exited", T.LongType(), False),
    ]),
    columns="exited: memberships whose status became exited on this run date (older exits kept for retention "
            "are not counted again)",
)

IDENTITY_SUMMARY = TableSpec(
    name="identity_summary",
    path="identity_summary",
    description=("Per run date, the identity graph at a glance: profiles, identities, links, how many identities "
                 "the profiles have (distribution) and what collapse protection dropped."),
    written_by="resolve_identities",
    write_mode="overwrite of the run_date partition",
    keys=["run_date"],
    partition_by=["run_date"],
    small=True,
    schema=T.StructType([
        T.StructField("run_date", T.DateType(), False),
        T.StructField("profiles", T.LongType(), False),
        T.StructField("identities", T.LongType(), False),
        T.StructField("links", T.LongType(), False),
        T.StructField("identities_per_profile", T.MapType(T.LongType(), T.LongType(), False), False),
        T.StructField("links_dropped", T.LongType(), False),
        T.StructField("identities_dropped", T.LongType(), False),
        T.StructField("links_expired", T.LongType(), False),
        T.StructField("profile_merges", T.LongType(), False),
        T.StructField("profile_splits", T.LongType(), False),
    ]),
    columns=("identities_per_profile: number of identities -> number of profiles that have that many; "
             "links_dropped: links dropped by the unique-namespace rule, identities_dropped: identities over the "
             "identity cap (both in identity_audit)"),
)

QUARANTINE_SUMMARY = TableSpec(
    name="quarantine_summary",
    path="quarantine_summary",
    description=("Per dataset, batch date and quarantine reason (code and field): how many records were "
                 "quarantined for it and up to three of them, masked (e-mails as a***@e***.com, phone numbers and "
                 "other long digit runs down to their last two digits)."),
    written_by="validate",
    write_mode="overwrite of the (dataset, batch_date) slice",
    keys=["dataset", "batch_date", "code", "field"],
    partition_by=["dataset"],
    small=True,
    schema=T.StructType([
        T.StructField("dataset", T.StringType(), False),
        T.StructField("batch_date", T.DateType(), False),
        T.StructField("code", T.StringType(), False),
        T.StructField("field", T.StringType(), False),
        T.StructField("records", T.LongType(), False),
        T.StructField("samples", T.ArrayType(T.StringType(), False), False),
    ]),
    columns="field: the field the reason is about, '' for a reason about the whole record; samples: the masked raw "
            "records of the lowest (source_file, row_number)",
)

ALL_TABLES = [QUARANTINE, BATCH_LEDGER, STAGING, DATASET, IDENTITY_MAP, IDENTITY_AUDIT, PROFILE_ID_CHANGES,
              IDENTITY_LINKS, IDENTITY_RUNS, IDENTITY_NODES, PROFILES, AUDIENCE_MEMBERSHIP, AUDIENCE_CATALOG,
              EXPORT_LEDGER, DESTINATION_METRICS, RUN_METRICS, QUALITY_RESULTS, STEP_RUNS, DELIVERY_LEDGER,
              DELIVERY_FAILURES, EXPORT_PREVIEWS]
ALL_TABLES += [AUDIENCE_SIZES, IDENTITY_SUMMARY, QUARANTINE_SUMMARY]


@dataclass(frozen=True)
class Lake:
    """Paths of the tables under one lake root (a folder or a URL such as s3a://bucket/lake)."""

    root: str

    def path(self, table: TableSpec, dataset: str | None = None) -> str:
        rel = table.path.format(dataset=dataset) if dataset is not None else table.path
        if "{" in rel:
            raise ValueError(f"table {table.name} needs a dataset name")
        return f"{self.root.rstrip('/')}/{rel}"


def date_literal(day: dt.date) -> str:
    """A date as a SQL literal for replaceWhere predicates."""
    return f"DATE'{day.isoformat()}'"
