"""Which profiles a streaming destination is sent, and the message each gets (pure transform, small frames):
an unchanged profile is not sent; a profile that disappeared still gets its exit with the values last
delivered; a re-computation gives the same message ids; a resync sends everyone under new ids."""

from __future__ import annotations

import datetime as dt
import json

from pyspark.sql import SparkSession

from cdp.destinations.rows import MappingContext
from cdp.destinations.streaming.changes import ACKNOWLEDGED_STATE, RunInfo, transform_changes
from cdp.workspace.models import FieldSpec, HttpDestination, Namespace

D = dt.date(2026, 11, 26)
EVALUATED = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
BEFORE = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
DEST = HttpDestination.model_validate({
    "name": "crm_api", "type": "http", "connection": "crm_api", "audiences": ["gold", "silver"],
    "mapping": [{"source": "identity:crm_id", "name": "crm_id"}, {"source": "first_name", "name": "firstName"}]})
CTX = MappingContext({"first_name": FieldSpec(name="first_name", type="string")},
                     {"crm_id": Namespace(code="crm_id", type="person")}, text_only=False)
PROFILES = "run_date date, profile_id string, identities map<string,array<string>>, first_name string"
MEMBERS = ("run_date date, audience_id string, profile_id string, status string, last_qualification_time timestamp, "
           "status_since date")


def changes(spark: SparkSession, acknowledged: list[tuple[object, ...]], resync: bool = False) -> dict[str, dict]:
    profiles = spark.createDataFrame([(D, "p1", {"crm_id": ["C1"]}, "Ann"), (D, "p2", {"crm_id": ["C2"]}, "Bob")],
                                     PROFILES)
    members = spark.createDataFrame([
        (D, "gold", "p1", "existing", EVALUATED, D), (D, "gold", "p2", "realized", EVALUATED, D),
        # p9 no longer exists: its gold membership exited (merged away) with its last qualification time
        (D, "gold", "p9", "exited", BEFORE, D)], MEMBERS)
    out = transform_changes(members, profiles, spark.createDataFrame(acknowledged, ACKNOWLEDGED_STATE), DEST, CTX,
                            RunInfo("crm_api", D, "run-1", resync))
    return {r["profile_id"]: r.asDict() for r in out.collect()}


def test_only_changes_are_sent_and_a_vanished_profile_exits_with_its_last_values(spark: SparkSession) -> None:
    first = changes(spark, [])
    assert sorted(first) == ["p1", "p2"]  # the first run back-fills the members; p9 was never delivered
    p9_state = json.dumps({"attributes": {"firstName": "Zoe"}, "identityMap": {"crm_id": [{"id": "C9"}]}})
    acknowledged = [("p1", first["p1"]["signature"], first["p1"]["state_json"], {"gold": EVALUATED}),
                    ("p9", "old-signature", p9_state, {"gold": BEFORE})]
    second = changes(spark, acknowledged)
    assert sorted(second) == ["p2", "p9"]  # p1 is unchanged
    assert second["p2"]["message_id"] == first["p2"]["message_id"]  # the same change, the same id
    exit_message = json.loads(second["p9"]["payload"])
    assert {k: v for k, v in exit_message.items() if k != "messageId"} == {
        "profileId": "p9", "destination": "crm_api", "runDate": "2026-11-26", "runId": "run-1",
        "attributes": {"firstName": "Zoe"}, "identityMap": {"crm_id": [{"id": "C9"}]},
        "segmentMembership": {"gold": {"status": "exited", "lastQualificationTime": "2026-11-26T00:00:00Z"}}}
    assert second["p9"]["memberships"] == {} and second["p9"]["excluded"] is None
    assert json.loads(second["p2"]["payload"])["segmentMembership"] == {
        "gold": {"status": "realized", "lastQualificationTime": "2026-11-27T00:00:00Z"}}

    resync = changes(spark, acknowledged, resync=True)
    assert sorted(resync) == ["p1", "p2", "p9"]
    assert resync["p1"]["message_id"] != first["p1"]["message_id"]  # a resync is a new delivery: new ids
    assert json.loads(resync["p1"]["payload"])["segmentMembership"]["gold"]["status"] == "existing"
