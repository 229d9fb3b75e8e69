"""Exports delivered to real servers on loopback (moto's S3, Azurite, fake-gcs-server, OpenSSH's sshd):
exact bytes of every format, exactly once across re-runs, kills and servers that fail, counts that reconcile."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from export_lake import D, build_lake
from pydantic import TypeAdapter
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from servers.fault_proxy import FaultProxy
from servers.processes import S3_KEY_ID, S3_SECRET, AzuriteServer, FakeGcsServer, MotoServer, Server, SshdServer
from servers.streaming import HttpReceiver, KafkaBroker
from servers.targets import Target

from cdp.errors import DestinationError
from cdp.lake import DESTINATION_METRICS, EXPORT_LEDGER
from cdp.run_context import RunContext
from cdp.settings import Settings
from cdp.storage import env_var_name
from cdp.workspace.loader import Workspace, load_workspace
from cdp.workspace.models import DestinationSpec, S3Destination
from jobs import evaluate_audiences, export

QUALIFIED = "2026-11-28T00:00:00Z"
ANN_SHA = hashlib.sha256(b"ann@example.com").hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def retail(repo_root: Path) -> Workspace:
    return load_workspace(repo_root / "examples" / "retail")


@pytest.fixture()
def ctx(spark: SparkSession, retail: Workspace, lake: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> RunContext:
    context = RunContext(D, "run-1", Settings(workspace=str(retail.root), lake=lake,
                                               landing=str(tmp_path / "landing"), exports=str(tmp_path / "exports")))
    build_lake(spark, retail, context.lake)
    evaluate_audiences.run(spark, retail, context)
    # A small retry budget keeps the "server stays down" case short.
    monkeypatch.setenv("CDP_DESTINATION_ATTEMPTS", "3")
    monkeypatch.setenv("CDP_DESTINATION_MAX_WAIT", "0.2")
    return context


def with_destination(ws: Workspace, dest: Any) -> Workspace:
    return dataclasses.replace(ws, destinations={**ws.destinations, dest.name: dest})


def destination(config: dict[str, Any]) -> Any:
    """A destination as the loader reads it (the namespace types bound to the mapping)."""
    dest = TypeAdapter(DestinationSpec).validate_python(config)
    for mapped in dest.mapping:
        if mapped.namespace is not None:
            mapped.bind_namespace_type({"email": "email", "phone": "phone"}.get(mapped.namespace, "person"))
    return dest


def connect(monkeypatch: pytest.MonkeyPatch, server: Server, connection_id: str, port: int | None = None) -> None:
    monkeypatch.setenv(env_var_name(connection_id), json.dumps(server.connection_via(port or server.port)))


def fetch(server: Server, kind: str, bucket: str, key: str) -> bytes:
    """The bytes of one delivered object, read straight from the server."""
    if isinstance(server, MotoServer):
        return bytes(server.client().get_object(Bucket=bucket, Key=key)["Body"].read())
    if isinstance(server, AzuriteServer):
        return bytes(server.service().get_blob_client(bucket, key).download_blob().readall())
    if isinstance(server, FakeGcsServer):
        return bytes(server.client().bucket(bucket).blob(key).download_as_bytes())
    assert isinstance(server, SshdServer)
    return (server.root / key).read_bytes()


def metrics_row(spark: SparkSession, ctx: RunContext, name: str) -> dict[str, Any]:
    rows = [r.asDict() for r in spark.read.format("delta").load(ctx.lake.path(DESTINATION_METRICS)).collect()
            if r["destination"] == name]
    assert len(rows) == 1
    return rows[0]


def ledger_rows(spark: SparkSession, ctx: RunContext, name: str) -> list[tuple[Any, ...]]:
    return sorted((r["file_name"], r["kind"], r["rows"], r["status"]) for r in
                  spark.read.format("delta").load(ctx.lake.path(EXPORT_LEDGER)).collect() if r["destination"] == name)


def test_s3_gzip_csv_with_hashed_emails_mandatory_tier_sse_and_manifest(
        spark: SparkSession, retail: Workspace, ctx: RunContext, moto_server: MotoServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    Target("s3", moto_server).prepare()
    connect(monkeypatch, moto_server, "partner_s3")
    dest = destination({
        "name": "partner_s3", "type": "s3", "connection": "partner_s3", "bucket": "cdp-exports",
        "path": "{destination}/{date}", "audiences": ["gold_members", "cart_abandoners"], "compression": "gzip",
        "sse": "AES256", "manifest": True,
        "mapping": [{"source": "identity:email", "hash": "sha256"}, {"source": "first_name"},
                    {"source": "tier", "required": True}]})
    ws = with_destination(retail, dest)
    metrics = export.run(spark, ws, ctx, "partner_s3")
    # Ann is gold; Bob (platinum) has no e-mail identity and Cy (a cart abandoner) none at all: no one to match.
    header = b"email_lc_sha256,first_name,tier,membership_status,last_qualification_time\n"
    gold = header + f"{ANN_SHA},Ann,gold,realized,{QUALIFIED}\n".encode()
    client = moto_server.client()
    prefix = "partner_s3/2026-11-27/"
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="cdp-exports", Prefix=prefix)["Contents"])
    assert keys == [prefix + "partner_s3_cart_abandoners_20261127.csv.gz",
                    prefix + "partner_s3_gold_members_20261127.csv.gz",
                    prefix + "partner_s3_manifest_20261127.manifest.json"]
    delivered = {k.removeprefix(prefix): fetch(moto_server, "s3", "cdp-exports", k) for k in keys}
    assert gzip.decompress(delivered["partner_s3_gold_members_20261127.csv.gz"]) == gold
    assert gzip.decompress(delivered["partner_s3_cart_abandoners_20261127.csv.gz"]) == header
    head = client.head_object(Bucket="cdp-exports", Key=prefix + "partner_s3_gold_members_20261127.csv.gz")
    assert head["ServerSideEncryption"] == "AES256"
    manifest = json.loads(delivered["partner_s3_manifest_20261127.manifest.json"])
    assert manifest["destination"] == "partner_s3" and manifest["run_date"] == "2026-11-27"
    assert [(f["name"], f["rows"], f["bytes"], f["sha256"]) for f in manifest["files"]] == [
        ("partner_s3_gold_members_20261127.csv.gz", 1, len(delivered["partner_s3_gold_members_20261127.csv.gz"]),
         sha(delivered["partner_s3_gold_members_20261127.csv.gz"])),
        ("partner_s3_cart_abandoners_20261127.csv.gz", 0,
         len(delivered["partner_s3_cart_abandoners_20261127.csv.gz"]),
         sha(delivered["partner_s3_cart_abandoners_20261127.csv.gz"]))]
    assert metrics["received"] == metrics["activated"] + metrics["excluded.no_identity"] \
        + metrics["excluded.missing_mandatory"] + metrics["excluded.deduplicated"] + metrics["failed"]
    assert (metrics["received"], metrics["activated"], metrics["excluded.no_identity"]) == (3, 1, 2)

    # A re-run renders the same bytes and sends nothing again (the ledger says delivered, same SHA-256).
    before = {k: client.head_object(Bucket="cdp-exports", Key=k)["LastModified"] for k in keys}
    export.run(spark, ws, dataclasses.replace(ctx, run_id="run-2"), "partner_s3")
    assert {k: client.head_object(Bucket="cdp-exports", Key=k)["LastModified"] for k in keys} == before
    assert ledger_rows(spark, ctx, "partner_s3") == [
        ("partner_s3_cart_abandoners_20261127.csv.gz", "data", 0, "delivered"),
        ("partner_s3_gold_members_20261127.csv.gz", "data", 1, "delivered"),
        ("partner_s3_manifest_20261127.manifest.json", "manifest", 2, "delivered")]


def test_azure_jsonl_gcs_parquet_and_sftp_csv_options(
        spark: SparkSession, retail: Workspace, ctx: RunContext, azurite_server: AzuriteServer,
        gcs_server: FakeGcsServer, sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for kind, server in (("azure_blob", azurite_server), ("gcs", gcs_server), ("sftp", sshd_server)):
        Target(kind, server).prepare()
        connect(monkeypatch, server, f"partner_{kind}")
    base = {"audiences": ["gold_members"], "file_name": "{audience_id}_{date}_{destination}"}
    blob = {"name": "partner_blob", "type": "azure_blob", "connection": "partner_azure_blob",
            "container": "cdp-exports", "path": "cdp", "format": "jsonl",
            "mapping": [{"source": "identity:crm_id", "name": "crm_ids"}, {"source": "email"}, {"source": "points"}]}
    gcs = {"name": "partner_gcs", "type": "gcs", "connection": "partner_gcs", "bucket": "cdp-exports",
           "path": "cdp", "format": "parquet", "include_membership_status": False,
           "mapping": [{"source": "profile_id"}, {"source": "country"}, {"source": "points"}]}
    sftp = {"name": "partner_sftp", "type": "sftp", "connection": "partner_sftp", "path": str(sshd_server.root),
            "csv": {"delimiter": ";", "header": False},
            "mapping": [{"source": "identity:crm_id"}, {"source": "first_name"}]}
    ws = retail
    for config in (blob, gcs, sftp):
        ws = with_destination(ws, destination({**config, **base}))
    for name in ("partner_blob", "partner_gcs", "partner_sftp"):
        export.run(spark, ws, ctx, name)

    lines = fetch(azurite_server, "azure_blob", "cdp-exports", "cdp/gold_members_20261127_partner_blob.jsonl")
    assert [json.loads(x) for x in lines.decode().splitlines()] == [
        {"crm_ids": ["C1"], "email": "ann@example.com", "points": 1500, "membership_status": "realized",
         "last_qualification_time": QUALIFIED},
        {"crm_ids": ["C2", "C3"], "email": "bob@example.com", "points": 200, "membership_status": "realized",
         "last_qualification_time": QUALIFIED}]
    table = pq.read_table(io.BytesIO(fetch(gcs_server, "gcs", "cdp-exports",
                                           "cdp/gold_members_20261127_partner_gcs.parquet")))
    assert table.column_names == ["profile_id", "country", "points"]
    assert table.to_pylist() == [{"profile_id": "prof_a", "country": "FR", "points": 1500},
                                 {"profile_id": "prof_b", "country": "DE", "points": 200}]
    # RFC 4180 by default: the quote inside Bob's name is doubled; no header line, ';' between fields.
    assert fetch(sshd_server, "sftp", "", "gold_members_20261127_partner_sftp.csv") == (
        f'C1;Ann;realized;{QUALIFIED}\nC2|C3;"Bob ""Bobby"", Jr";realized;{QUALIFIED}\n'.encode())


@pytest.fixture()
def flaky_s3(moto_server: MotoServer) -> Iterator[FaultProxy]:
    Target("s3", moto_server).prepare()
    with FaultProxy(moto_server.port) as proxy:
        yield proxy


def s3_dest(name: str) -> S3Destination:
    return destination({
        "name": name, "type": "s3", "connection": name, "bucket": "cdp-exports", "path": name,
        "audiences": ["gold_members", "french_high_points"],
        "mapping": [{"source": "identity:crm_id", "name": "crm_id"}, {"source": "first_name"}]})


def test_a_server_failing_its_first_attempts_still_gets_each_file_once(
        spark: SparkSession, retail: Workspace, ctx: RunContext, moto_server: MotoServer, flaky_s3: FaultProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    connect(monkeypatch, moto_server, "flaky_s3", flaky_s3.port)
    flaky_s3.configure(http_error_first=2, http_status=503)
    ws = with_destination(retail, s3_dest("flaky_s3"))
    metrics = export.run(spark, ws, ctx, "flaky_s3")
    listed = moto_server.client().list_objects_v2(Bucket="cdp-exports", Prefix="flaky_s3/")["Contents"]
    assert sorted(o["Key"] for o in listed) == ["flaky_s3/flaky_s3_french_high_points_20261127.csv",
                                                "flaky_s3/flaky_s3_gold_members_20261127.csv"]
    assert (metrics["files"], metrics["activated"], metrics["failed"]) == (2, 2, 0)


def test_a_destination_that_stays_down_fails_counts_and_is_caught_up_by_the_next_run(
        spark: SparkSession, retail: Workspace, ctx: RunContext, moto_server: MotoServer, flaky_s3: FaultProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    connect(monkeypatch, moto_server, "down_s3", flaky_s3.port)
    flaky_s3.configure(http_error_first=1000, http_status=503)
    ws = with_destination(retail, s3_dest("down_s3"))
    with pytest.raises(DestinationError, match=r"destination down_s3: 2 file\(s\) not delivered, first "
                                               r"down_s3_gold_members_20261127.csv: could not .* after 3 attempts: "
                                               r"HTTP 503"):
        export.run(spark, ws, ctx, "down_s3")
    failed = metrics_row(spark, ctx, "down_s3")
    assert (failed["received"], failed["activated"], failed["failed"], failed["files"], failed["status"]) == (
        2, 0, 2, 0, "failed")
    assert ledger_rows(spark, ctx, "down_s3") == [
        ("down_s3_french_high_points_20261127.csv", "data", 0, "planned"),
        ("down_s3_gold_members_20261127.csv", "data", 2, "planned")]

    flaky_s3.configure()  # back up
    export.run(spark, ws, dataclasses.replace(ctx, run_id="retry"), "down_s3")
    assert [s for *_, s in ledger_rows(spark, ctx, "down_s3")] == ["delivered", "delivered"]
    caught_up = metrics_row(spark, ctx, "down_s3")
    assert (caught_up["activated"], caught_up["failed"], caught_up["status"]) == (2, 0, "delivered")


def test_killed_mid_delivery_then_re_run_sends_only_what_is_missing(
        spark: SparkSession, retail: Workspace, ctx: RunContext, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = retail
    sent: list[str] = []
    real_put = export.Transport.put

    class Killed(BaseException):
        """Stands for SIGKILL during the second upload."""

    def put(self: Any, local_path: str, name: str, *, sha256: str) -> Any:
        if sent:
            # Half a file under a temporary name, as a killed upload leaves it.
            Path(self.root, f".{name}.{'0' * 32}.tmp").write_bytes(b"half")
            raise Killed
        sent.append(name)
        return real_put(self, local_path, name, sha256=sha256)

    monkeypatch.setattr(export.Transport, "put", put)
    with pytest.raises(Killed):
        export.run(spark, ws, ctx, "marketing_landing")
    folder = Path(ctx.settings.exports) / "marketing"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".marketing_landing_cart_abandoners_20261127.csv.00000000000000000000000000000000.tmp",
        "marketing_landing_gold_members_20261127.csv"]

    monkeypatch.setattr(export.Transport, "put", real_put)
    resent: list[str] = []
    monkeypatch.setattr(export.Transport, "put", lambda self, path, name, *, sha256: (
        resent.append(name), real_put(self, path, name, sha256=sha256))[1])
    export.run(spark, ws, dataclasses.replace(ctx, run_id="after-kill"), "marketing_landing")
    assert resent == ["marketing_landing_cart_abandoners_20261127.csv",
                      "marketing_landing_french_high_points_20261127.csv"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "marketing_landing_cart_abandoners_20261127.csv", "marketing_landing_french_high_points_20261127.csv",
        "marketing_landing_gold_members_20261127.csv"]


def test_the_export_gate_fails_on_a_doctored_count(spark: SparkSession, retail: Workspace, ctx: RunContext) -> None:
    from cdp.delta_io import replace_slice
    from cdp.errors import DataQualityError
    from jobs import check_quality

    export.run(spark, retail, ctx, "marketing_landing")
    outcomes = check_quality.run(spark, retail, ctx, "exports")
    assert [(o.suite, o.success) for o in outcomes] == [("destination_counts", True)] * 2

    # Someone (or a bug) records one more activated profile than the files hold.
    path = ctx.lake.path(DESTINATION_METRICS)
    doctored = spark.read.format("delta").load(path).withColumn("activated", F.col("activated") + 1)
    replace_slice(doctored, path, "destination = 'marketing_landing'", DESTINATION_METRICS.partition_by)
    with pytest.raises(DataQualityError) as failed:
        check_quality.run(spark, retail, ctx, "exports")
    message = str(failed.value)
    assert message.startswith("data-quality check 'exports' failed 2 of 2 expectations")
    assert "marketing_landing: received 3 != activated 3 + excluded 1 + failed 0" in message
    assert "marketing_landing: activated 3 but the delivered files hold 2 row(s)" in message


@pytest.fixture(scope="module")
def partner_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A partner's PGP key pair made with GnuPG: (armoured public key, the GnuPG home holding the private key)."""
    home = tmp_path_factory.mktemp("partner-gpg")
    home.chmod(0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home), "--passphrase", "", "--pinentry-mode", "loopback"]
    subprocess.run([*gpg, "--quick-gen-key", "Partner <partner@example.com>", "future-default", "default", "never"],
                   check=True, capture_output=True)
    public = subprocess.run([*gpg, "--armor", "--export", "partner@example.com"], check=True, capture_output=True,
                            text=True).stdout
    yield public, home
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


def decrypt(home: Path, data: bytes) -> bytes:
    """What the partner reads after decrypting with its private key."""
    return subprocess.run(["gpg", "--batch", "--homedir", str(home), "--decrypt"], input=data, check=True,
                          capture_output=True).stdout


def test_pgp_encrypted_files_decrypt_to_the_rendered_bytes_and_are_sent_once(
        spark: SparkSession, retail: Workspace, ctx: RunContext, sshd_server: SshdServer,
        partner_key: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    public, home = partner_key
    connection = sshd_server.connection()
    connection["extra"] = {**connection["extra"], "pgp_public_key": public}
    monkeypatch.setenv(env_var_name("partner_pgp"), json.dumps(connection))
    folder = sshd_server.root / "pgp"
    dest = destination({
        "name": "partner_pgp", "type": "sftp", "connection": "partner_pgp", "path": str(folder),
        "audiences": ["gold_members"], "encryption": "pgp", "manifest": True,
        "mapping": [{"source": "identity:crm_id", "name": "crm_id"}, {"source": "first_name"}]})
    ws = with_destination(retail, dest)
    metrics = export.run(spark, ws, ctx, "partner_pgp")
    assert sorted(p.name for p in folder.iterdir()) == ["partner_pgp_gold_members_20261127.csv.pgp",
                                                        "partner_pgp_manifest_20261127.manifest.json"]
    encrypted = (folder / "partner_pgp_gold_members_20261127.csv.pgp").read_bytes()
    assert b"Ann" not in encrypted
    plain = (b"crm_id,first_name,membership_status,last_qualification_time\n"
             + f'C1,Ann,realized,{QUALIFIED}\nC2|C3,"Bob ""Bobby"", Jr",realized,{QUALIFIED}\n'.encode())
    assert decrypt(home, encrypted) == plain
    # The manifest (not encrypted) names the delivered file and describes it as rendered (once decrypted).
    manifest = json.loads((folder / "partner_pgp_manifest_20261127.manifest.json").read_text())
    fingerprint = subprocess.run(["gpg", "--batch", "--homedir", str(home), "--with-colons", "--list-keys"],
                                 check=True, capture_output=True, text=True).stdout.split("fpr:::::::::")[1][:40]
    assert manifest["encryption"] == {"type": "pgp", "recipient": fingerprint}
    assert [(f["name"], f["rows"], f["bytes"], f["sha256"]) for f in manifest["files"]] == [
        ("partner_pgp_gold_members_20261127.csv.pgp", 2, len(plain), sha(plain))]
    assert (metrics["activated"], metrics["files"], metrics["rows"]) == (2, 1, 2)

    # A re-run encrypts anew (another session key) but the rendered file is the same: nothing is sent again.
    mtime = (folder / "partner_pgp_gold_members_20261127.csv.pgp").stat().st_mtime_ns
    export.run(spark, ws, dataclasses.replace(ctx, run_id="run-2"), "partner_pgp")
    assert (folder / "partner_pgp_gold_members_20261127.csv.pgp").stat().st_mtime_ns == mtime
    assert ledger_rows(spark, ctx, "partner_pgp") == [
        ("partner_pgp_gold_members_20261127.csv.pgp", "data", 2, "delivered"),
        ("partner_pgp_manifest_20261127.manifest.json", "manifest", 1, "delivered")]


@pytest.mark.parametrize(("extra", "message"), [
    ({}, "encryption: pgp needs the partner's public key: put it (ASCII-armoured, '-----BEGIN PGP PUBLIC KEY "
         "BLOCK-----') in the extra 'pgp_public_key' of the Airflow connection 'partner_nokey'"),
    ({"pgp_public_key": "-----BEGIN PGP PUBLIC KEY BLOCK-----\nnot a key\n-----END PGP PUBLIC KEY BLOCK-----\n"},
     "the extra 'pgp_public_key' of connection 'partner_nokey' is not a usable PGP public key (no key could be "
     "read); export it with 'gpg --armor --export <key id>'"),
    ({"pgp_public_key": "-----BEGIN PGP PRIVATE KEY BLOCK-----\n...\n-----END PGP PRIVATE KEY BLOCK-----\n"},
     "the extra 'pgp_public_key' of connection 'partner_nokey' holds a private key: put only the partner's "
     "public key there (never a private key)"),
])
def test_a_destination_that_cannot_encrypt_sends_nothing(
        spark: SparkSession, retail: Workspace, ctx: RunContext, sshd_server: SshdServer,
        monkeypatch: pytest.MonkeyPatch, extra: dict[str, str], message: str) -> None:
    from cdp.destinations.encryption import EncryptionError

    connection = sshd_server.connection()
    connection["extra"] = {**connection["extra"], **extra}
    monkeypatch.setenv(env_var_name("partner_nokey"), json.dumps(connection))
    folder = sshd_server.root / "nokey"
    dest = destination({"name": "partner_nokey", "type": "sftp", "connection": "partner_nokey", "path": str(folder),
                        "audiences": ["gold_members"], "encryption": "pgp", "mapping": [{"source": "first_name"}]})
    with pytest.raises(EncryptionError) as refused:
        export.run(spark, with_destination(retail, dest), ctx, "partner_nokey")
    assert str(refused.value) == message
    assert not folder.exists()


def test_the_example_destinations_deliver_to_the_demo_servers(
        spark: SparkSession, retail: Workspace, ctx: RunContext, moto_server: MotoServer,
        azurite_server: AzuriteServer, gcs_server: FakeGcsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example workspace as `make demo` runs it: its demo_* connections on the servers the demo starts."""
    from servers.processes import AsyncsshSftpServer

    with AsyncsshSftpServer() as sftp_server:
        servers: dict[str, Server] = {"s3": moto_server, "azure_blob": azurite_server, "gcs": gcs_server,
                                      "sftp": sftp_server}
        for kind, server in servers.items():
            Target(kind, server, bucket="cdp-demo").prepare()
            connect(monkeypatch, server, f"demo_{kind}")
        metrics = {name: export.run(spark, retail, ctx, name)
                   for name in ("ads_partner_s3", "crm_sync_azure", "analytics_gcs", "partner_sftp")}
        s3_keys = sorted(o["Key"] for o in moto_server.client().list_objects_v2(Bucket="cdp-demo")["Contents"])
        blobs = sorted(b.name for b in azurite_server.service().get_container_client("cdp-demo").list_blobs())
        gcs_names = sorted(b.name for b in gcs_server.client().list_blobs("cdp-demo"))
        sftp_files = sorted(str(p.relative_to(sftp_server.root)) for p in sftp_server.root.rglob("*") if p.is_file())
        ads = pq.read_table(io.BytesIO(fetch(moto_server, "s3", "cdp-demo",
                                             "ads/2026-11-27/ads_partner_s3_gold_members_20261127.parquet")))
        crm = gzip.decompress(fetch(azurite_server, "azure_blob", "cdp-demo",
                                    "crm/2026-11-27/crm_sync_azure_gold_members_20261127.jsonl.gz"))
        analytics = gzip.decompress(fetch(gcs_server, "gcs", "cdp-demo",
                                          "analytics/2026-11-27/analytics_gcs_20261127.csv.gz"))
        mail = (sftp_server.root / "outbound" / "2026-11-27"
                / "retail_french_high_points_20261127_partner_sftp.csv").read_bytes()

    assert s3_keys == ["ads/2026-11-27/ads_partner_s3_engaged_readers_20261127.parquet",
                       "ads/2026-11-27/ads_partner_s3_gold_members_20261127.parquet",
                       "ads/2026-11-27/ads_partner_s3_manifest_20261127.manifest.json"]
    assert blobs == ["crm/2026-11-27/crm_sync_azure_cart_abandoners_20261127.jsonl.gz",
                     "crm/2026-11-27/crm_sync_azure_gold_members_20261127.jsonl.gz"]
    assert gcs_names == ["analytics/2026-11-27/analytics_gcs_20261127.csv.gz",
                         "analytics/2026-11-27/analytics_gcs_20261127.manifest.json"]
    assert sftp_files == ["outbound/2026-11-27/retail_french_high_points_20261127_partner_sftp.csv",
                          "outbound/2026-11-27/retail_manifest_20261127_partner_sftp.manifest.json"]
    # Only hashed identities leave for the ad platform; Bob has no e-mail: excluded, not sent anonymously.
    assert ads.column_names == ["email_lc_sha256", "phone_sha256", "country", "membership_status",
                                "last_qualification_time"]
    assert [(r["email_lc_sha256"], r["phone_sha256"], r["country"], r["membership_status"])
            for r in ads.to_pylist()] == [([ANN_SHA], None, "FR", "realized")]
    assert [json.loads(line) for line in crm.decode().splitlines()] == [
        {"crm_id": ["C1"], "first_name": "Ann", "loyalty_tier": "gold", "points": 1500,
         "membership_status": "realized", "last_qualification_time": QUALIFIED},
        {"crm_id": ["C2", "C3"], "first_name": 'Bob "Bobby", Jr', "loyalty_tier": "platinum", "points": 200,
         "membership_status": "realized", "last_qualification_time": QUALIFIED}]
    # One file for every audience, a status column each (no qualification times: include_membership_status false).
    assert analytics.decode() == (
        "profile_id,loyalty_id,country,city,gold_members_status,cart_abandoners_status,engaged_readers_status,"
        "french_high_points_status\n"
        "prof_a,,FR,,realized,,realized,\n"
        "prof_b,L2,DE,,realized,,,\n"
        "prof_c,,US,,,realized,,\n")
    # No French customer with 1,000 points who consented: the partner still gets the day's (empty) file.
    assert mail == b"customer_id;first_name;last_name;city;points;membership_status;last_qualification_time\n"
    assert {name: (m["received"], m["activated"], m["excluded.no_identity"], m["files"])
            for name, m in metrics.items()} == {
        "ads_partner_s3": (3, 2, 1, 2), "crm_sync_azure": (3, 2, 1, 2), "analytics_gcs": (3, 3, 0, 1),
        "partner_sftp": (0, 0, 0, 1)}


def test_example_streaming_destinations_to_the_demo_endpoints(
        spark: SparkSession, retail: Workspace, ctx: RunContext, moto_server: MotoServer,
        http_receiver: HttpReceiver, kafka_broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's streaming destinations as `make demo` runs them: demo_http, demo_kafka, demo_kinesis on the
    endpoints scripts/local_servers.py starts (topic and stream cdp-demo)."""
    import boto3

    http_receiver.control("reset")
    kafka_broker.create_topic("cdp-demo")
    kinesis = boto3.client("kinesis", endpoint_url=moto_server.url, region_name="us-east-1",
                           aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)
    kinesis.create_stream(StreamName="cdp-demo", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="cdp-demo", WaiterConfig={"Delay": 0.2})
    for kind, server in (("http", http_receiver), ("kafka", kafka_broker), ("kinesis", moto_server)):
        monkeypatch.setenv(env_var_name(f"demo_{kind}"), json.dumps(server.connection()))

    metrics = {name: export.run(spark, retail, ctx, name) for name in ("crm_api", "profile_bus", "profile_stream")}

    def body(message: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in message.items() if k not in ("messageId", "runId", "runDate", "destination")}

    http = {m["profileId"]: body(m) for m in http_receiver.messages()}
    bus = {key.decode(): body(json.loads(value)) for key, value, _ in kafka_broker.consume("cdp-demo", expected=1)}
    shard = kinesis.describe_stream(StreamName="cdp-demo")["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="cdp-demo", ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    stream = {r["PartitionKey"]: body(json.loads(r["Data"]))
              for r in kinesis.get_records(ShardIterator=iterator, Limit=100)["Records"]}
    gold = {"status": "realized", "lastQualificationTime": QUALIFIED}
    assert all(r["headers"]["x-team"] == "crm" and r["gzip"] and r["path"] == "/v1/profiles"
               for r in http_receiver.requests())
    assert http == {
        "prof_a": {"profileId": "prof_a", "attributes": {"firstName": "Ann", "loyaltyTier": "gold", "points": 1500},
                   "identityMap": {"crm_id": [{"id": "C1"}], "email_lc_sha256": [{"id": ANN_SHA}]},
                   "segmentMembership": {"gold_members": gold}},
        "prof_b": {"profileId": "prof_b", "attributes": {"firstName": 'Bob "Bobby", Jr', "loyaltyTier": "platinum",
                                                         "points": 200},
                   "identityMap": {"crm_id": [{"id": "C2"}, {"id": "C3"}]},
                   "segmentMembership": {"gold_members": gold}}}
    # The one cart abandoner is an anonymous visitor: no CRM id, no e-mail, nothing to key it by downstream.
    assert bus == {}
    assert stream == {
        "prof_a": {"profileId": "prof_a", "attributes": {"tier": "gold", "points": 1500},
                   "identityMap": {"crm_id": [{"id": "C1"}]}, "segmentMembership": {"gold_members": gold}},
        "prof_b": {"profileId": "prof_b", "attributes": {"tier": "platinum", "points": 200},
                   "identityMap": {"crm_id": [{"id": "C2"}, {"id": "C3"}]},
                   "segmentMembership": {"gold_members": gold}}}
    assert {name: (m["received"], m["activated"], m["excluded.no_identity"], m["failed"])
            for name, m in metrics.items()} == {
        "crm_api": (2, 2, 0, 0), "profile_bus": (1, 0, 1, 0), "profile_stream": (3, 2, 1, 0)}
