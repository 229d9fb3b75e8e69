"""Broken copies of examples/retail: each case is a small edit and the exact `cdp validate` output it must give.

``{ws}`` in an expected line is the workspace folder, ``{landing}`` / ``{exports}`` the roots the test
sets in CDP_LANDING / CDP_EXPORTS, ``{outside}`` a folder beside them. The summary line
``N problem(s) found`` is checked by the test, not listed here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LAUGHS = (b'id: lol\nname: lol\nrule:\n  attribute: tier\n  op: in\n  value: [a]\n'
          b'x: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
          + b"".join(f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n".encode()
                     for p, n in zip("abcdefgh", "bcdefghi", strict=True)))


@dataclass(frozen=True)
class Roots:
    """The folders a case may touch besides the workspace."""

    ws: Path
    landing: Path
    exports: Path
    outside: Path


Edit = Callable[[Roots], None]


def replace(file: str, old: str, new: str) -> Edit:
    def run(roots: Roots) -> None:
        path = roots.ws / file
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {file}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return run


def append(file: str, text: str) -> Edit:
    def run(roots: Roots) -> None:
        with (roots.ws / file).open("a", encoding="utf-8") as handle:
            handle.write(text)
    return run


def write(file: str, content: str | bytes) -> Edit:
    def run(roots: Roots) -> None:
        path = roots.ws / file
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return run


def remove(file: str) -> Edit:
    def run(roots: Roots) -> None:
        path = roots.ws / file
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return run


def empty_workspace(roots: Roots) -> None:
    for entry in roots.ws.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def symlink_landing_out(roots: Roots) -> None:
    roots.landing.mkdir(parents=True, exist_ok=True)
    os.symlink(roots.outside, roots.landing / "crm")


def broken_symlink(roots: Roots) -> None:
    os.symlink(roots.outside / "missing.yaml", roots.ws / "audiences" / "lost.yaml")


def destination(name: str, body: str) -> Edit:
    return write(f"destinations/{name}.yaml", f"name: {name}\n{body}")


def audience(audience_id: str, rule: str) -> Edit:
    return write(f"audiences/{audience_id}.yaml", f"id: {audience_id}\nname: {audience_id}\nrule:\n{rule}")


DEST = "destinations/marketing_landing.yaml"
MAPPING = 'mapping:\n  - {source: "identity:crm_id", name: crm_id}\n'
S3 = f"type: s3\nconnection: partner_s3\nbucket: partner-bucket\naudiences: [gold_members]\n{MAPPING}"
DECLARED = "declared: crm_id, ecid, email, loyalty_id, phone"
MACROS = "macros: {destination}, {audience_id}, {audience_name}, {date}, {datetime}, {timestamp}"
JAVA = "is not a valid regular expression (Java syntax, which Spark uses)"

# (case id, edits, expected problem lines)
CASES: list[tuple[str, list[Edit], list[str]]] = []


def case(case_id: str, edits: list[Edit], *expected: str) -> None:
    CASES.append((case_id, edits, list(expected)))


# ---------------------------------------------------------------- files and YAML
case("not_utf8", [write("audiences/gold_members.yaml", b"id: gold_members\nname: Caf\xe9 members\nrule: {}\n")],
     "audiences/gold_members.yaml: is not UTF-8: byte 0xe9 at offset 26 (line 2) is not valid UTF-8; save the "
     "file as UTF-8")
case("impossible_date", [replace("audiences/cart_abandoners.yaml", "within: {last_days: 7}}\n  ",
                                 "within: {from: 2026-02-30}}\n  ")],
     "audiences/cart_abandoners.yaml: line 5: '2026-02-30' is not a valid date or time (day is out of range for "
     "month); correct it, or quote it if it is text")
case("nesting_too_deep", [audience("deep", "  " + "[" * 70 + "]" * 70 + "\n")],
     "audiences/deep.yaml: line 4: nesting is deeper than 64 levels; flatten the file")
case("duplicate_key", [replace("audiences/gold_members.yaml", "  op: in\n", "  op: in\n  value: [silver]\n")],
     "audiences/gold_members.yaml: rule.value: key 'value' appears twice in the same mapping (lines 6 and 7); "
     "keep one")
case("duplicate_top_key", [append("datasets/crm_profiles.yaml", "format: jsonl\n")],
     "datasets/crm_profiles.yaml: format: key 'format' appears twice in the same mapping (lines 3 and 7); keep one")
case("syntax_error", [write("namespaces.yaml", "namespaces: [\n")],
     "namespaces.yaml: is not valid YAML: expected the node content, but found '<stream end>' at line 2, column 1")
case("two_documents", [append("audiences/gold_members.yaml", "---\nid: other\n")],
     "audiences/gold_members.yaml: is not valid YAML: but found another document at line 7, column 1 (expected "
     "a single document in the stream at line 1)")
case("python_tag", [write("audiences/evil.yaml", "id: !!python/object/apply:os.system [ls]\n")],
     "audiences/evil.yaml: is not valid YAML: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object/apply:os.system' at line 1, column 5")
case("billion_laughs", [write("audiences/lol.yaml", LAUGHS)],
     "audiences/lol.yaml: f: line 12: expands to more than 100000 values (through aliases or sheer size); a "
     "workspace file must stay small: write the values out or split the file")
case("alias_cycle", [write("audiences/loop.yaml", "id: loop\nname: loop\nrule: &r {all: [*r]}\n")],
     "audiences/loop.yaml: rule.all.0: line 3: an alias refers to the structure that contains it; write the "
     "values out")
case("empty_file", [write("audiences/empty.yaml", "")],
     "audiences/empty.yaml: must be a YAML mapping (the file is empty)")
case("upper_case_extension", [write("audiences/vip.YAML", "id: vip\n")],
     "audiences/vip.YAML: has an upper-case extension and is not read: rename it to vip.yaml")
case("non_yaml_file", [write("schemas/notes.txt", "todo\n"), write("schemas/.gitkeep", ""),
                       write("audiences/.DS_Store", b"\x00\x01")],
     "schemas/notes.txt: is not a YAML file: only .yaml and .yml files belong in schemas/; move it out of the "
     "workspace")
case("subfolder", [write("audiences/old/gold.yaml", "id: gold\n")],
     "audiences/old: is a folder: only the files directly in audiences/ are read; move its files up or out of "
     "the workspace")
case("misspelt_folder", [write("audience/vip.yaml", "id: vip\n")],
     "audience: is not a workspace folder (the folders are schemas, datasets, audiences, destinations); rename or "
     "move it")
case("unknown_root_file", [write("destination.yaml", "name: x\n")],
     "destination.yaml: is not a workspace file (the files at the top are workspace.yaml and namespaces.yaml; the "
     "others go in schemas, datasets, audiences, destinations)")
case("broken_symlink", [broken_symlink],
     "audiences/lost.yaml: cannot be read: No such file or directory (a broken symbolic link?); give the user "
     "running cdp read access or remove the file")
case("file_instead_of_folder", [remove("datasets"), write("datasets", "crm\n")],
     "datasets: is not a folder: datasets/ holds one YAML file per item")
case("no_dataset", [remove("datasets")],
     "datasets: no dataset is declared: add one file per dataset (datasets/<name>.yaml) naming its schema, format "
     "and source")
case("empty_workspace", [empty_workspace],
     "{ws}: the workspace is empty: it needs workspace.yaml, namespaces.yaml and the folders schemas/ and datasets/ "
     "(see the README, The workspace)")
case("workspace_yaml_missing", [remove("workspace.yaml")], "workspace.yaml: is missing")
case("namespaces_missing_one_problem", [remove("namespaces.yaml")], "namespaces.yaml: is missing")

# ---------------------------------------------------------------- one root cause, one problem
# Before the loader parsed each namespace entry on its own, this one typo gave nine problems: every identity
# field of every schema and the destination's identity column reported 'namespace ... is not declared'.
case("mistyped_namespace_type", [replace("namespaces.yaml", "type: email", "type: e-mail")],
     "namespaces.yaml: namespaces.2.type: Input should be 'cookie', 'device', 'email', 'phone' or 'person'")
case("mistyped_namespace_code", [replace("namespaces.yaml", "code: crm_id", "code: crm_idd")],
     "schemas/crm_profile.yaml: fields.crm_id.identity.namespace: namespace 'crm_id' is not declared in "
     "namespaces.yaml (declared: crm_idd, ecid, email, loyalty_id, phone); also named by schemas/web_event.yaml: "
     "fields.crm_id.identity.namespace, destinations/crm_api.yaml: mapping.0.source, "
     "destinations/crm_sync_azure.yaml: mapping.0.source, destinations/marketing_landing.yaml: mapping.0.source, "
     "destinations/partner_sftp.yaml: mapping.0.source, destinations/profile_bus.yaml: mapping.0.source, "
     "destinations/profile_stream.yaml: mapping.0.source")
case("mistyped_namespace_reference", [replace("schemas/loyalty_member.yaml", "namespace: email", "namespace: emial")],
     f"schemas/loyalty_member.yaml: fields.email.identity.namespace: namespace 'emial' is not declared in "
     f"namespaces.yaml ({DECLARED})")
case("broken_schema_no_cascade", [replace("schemas/loyalty_member.yaml", "type: long", "type: int64")],
     "schemas/loyalty_member.yaml: fields.3.type: Input should be 'string', 'integer', 'long', 'double', "
     "'decimal', 'boolean', 'date', 'timestamp', 'object', 'array' or 'map'")
case("broken_audience_no_cascade", [replace("audiences/gold_members.yaml", "op: in", "op: among")],
     "audiences/gold_members.yaml: rule.op: Input should be '=', '!=', '<', '<=', '>', '>=', 'in', 'not_in', "
     "'exists', 'missing', 'between', 'starts_with', 'ends_with', 'contains' or 'regex'")
case("duplicate_namespace", [append("namespaces.yaml", "  - code: email\n    type: email\n")],
     "namespaces.yaml: namespaces.5.code: namespace 'email' is declared twice")

# ---------------------------------------------------------------- regular expressions (Java, as Spark)
case("python_only_named_group", [audience("named", "  {attribute: email, op: regex, value: '(?P<user>[a-z]+)@x'}\n")],
     f"audiences/named.yaml: rule.value: {JAVA}: Unknown inline modifier near index 2")
case("namespace_pattern_java", [replace("namespaces.yaml", '"^[0-9]{38}$"', '"^[0-9]{38}$)"')],
     f"namespaces.yaml: namespaces.4.pattern: {JAVA}: Unmatched closing ')' near index 10")
case("blocked_pattern_not_anchorable", [append("workspace.yaml", "  blocked_patterns: ['\\Qtest']\n")],
     "workspace.yaml: guardrails.blocked_patterns.0: cannot be anchored to match the whole value: the platform "
     "matches '^(?:\\\\Qtest)$', which is not a valid regular expression (Java syntax, which Spark uses): "
     "Unclosed group near index 12")
case("namespace_blocked_pattern", [replace("namespaces.yaml", "    type: email\n",
                                           "    type: email\n    blocked_patterns: ['*@test']\n")],
     f"namespaces.yaml: namespaces.2.blocked_patterns.0: {JAVA}: Dangling meta character '*' near index 0")
case("event_filter_regex", [audience("urls", "  events: {type: page_view, where: [{field: page_url, op: regex, "
                                             "value: '[a-'}], at_least: 1, within: {last_days: 3}}\n")],
     f"audiences/urls.yaml: rule.events.where.0.value: {JAVA}: Illegal character range near index 3")
case("timestamp_format", [append(DEST, "csv: {timestamp_format: \"yyyy-MM-dd'T'HH:mm{ss\"}\n")],
     "destinations/marketing_landing.yaml: csv.timestamp_format: is not a valid date-time format (Java "
     "DateTimeFormatter pattern, which Spark uses): Pattern includes reserved character: '{'")

# ---------------------------------------------------------------- export file names
case("file_name_slash", [replace(DEST, '"{destination}_{audience_id}_{date}"', '"{destination}/{audience_id}"')],
     "destinations/marketing_landing.yaml: file_name: contains a '/' or '\\': a file name cannot hold a folder; put "
     "folders in path")
case("file_name_dot_dot", [replace(DEST, '"{destination}_{audience_id}_{date}"', '"{destination}..{audience_id}"')],
     "destinations/marketing_landing.yaml: file_name: contains '..'; use another separator")
case("file_name_control", [replace(DEST, '"{destination}_{audience_id}_{date}"', '"{destination}\\t{audience_id}"')],
     "destinations/marketing_landing.yaml: file_name: contains the control character U+0009; remove it")
case("file_name_leading_dot", [replace(DEST, '"{destination}_{audience_id}_{date}"', '".{destination}_{audience_id}"')],
     "destinations/marketing_landing.yaml: file_name: starts with '.': the file would be hidden (and the "
     "exporter's temporary files start with '.')")
case("file_name_unknown_macro", [replace(DEST, '_{date}"', '_{day}"')],
     f"destinations/marketing_landing.yaml: file_name: unknown macro {{day}} ({MACROS})")
case("file_name_missing_audience_id", [replace(DEST, '"{destination}_{audience_id}_{date}"', '"{destination}_{date}"')],
     "destinations/marketing_landing.yaml: file_name: must contain {audience_id}: with layout per_audience, "
     "{destination} and {audience_id} make each file's name its own")
case("file_name_stray_brace", [replace(DEST, '_{date}"', '_{date"')],
     f"destinations/marketing_landing.yaml: file_name: has a '{{' or '}}' that is not part of a macro ({MACROS})")
case("file_name_too_long", [replace(DEST, '_{date}"', '_{datetime}_' + "x" * 200 + '"')],
     "destinations/marketing_landing.yaml: file_name: names can be 264 bytes long (audience 'french_high_points', "
     "the longest date-time, the extension .csv and a split suffix of up to 7 bytes), more than 255: shorten "
     "file_name or the audience's id or name")
case("file_names_collide", [audience("landing_gold_members", "  {attribute: tier, op: '=', value: gold}\n"),
                            destination("marketing", "type: local\npath: marketing\naudiences: [landing_gold_members]\n"
                                        + MAPPING)],
     "destinations/marketing_landing.yaml: file_name: destinations 'marketing' and 'marketing_landing' write into "
     "the same place and can write the same file (e.g. 'marketing_landing_gold_members_00000000.csv' for audiences "
     "'landing_gold_members' and 'gold_members'); give one another path or file_name")

# ---------------------------------------------------------------- destination models and mapping
case("destination_unknown_type", [replace(DEST, "type: local", "type: ftp")],
     "destinations/marketing_landing.yaml: type: unknown destination type 'ftp' (known: azure_blob, gcs, http, kafka, "
     "kinesis, local, s3, sftp)")
case("destination_without_type", [replace(DEST, "type: local\n", "")],
     "destinations/marketing_landing.yaml: type: is required (one of: azure_blob, gcs, http, kafka, kinesis, local, "
     "s3, sftp)")
case("s3_without_connection", [destination("partner", S3.replace("connection: partner_s3\n", ""))],
     "destinations/partner.yaml: connection: Value error, type s3 needs a connection: the id of the Airflow "
     "connection holding the credentials and endpoint")
case("local_with_connection", [replace(DEST, "type: local\n", "type: local\nconnection: my_conn\n")],
     "destinations/marketing_landing.yaml: connection: Value error, type local writes under the exports root and "
     "takes no connection; remove it")
case("snappy_csv", [replace(DEST, "format: csv\n", "format: csv\ncompression: snappy\n")],
     "destinations/marketing_landing.yaml: compression: Value error, compression snappy does not apply to format "
     "csv (use none or gzip)")
case("csv_options_on_parquet", [replace(DEST, "format: csv\n", "format: parquet\ncsv: {header: false}\n")],
     "destinations/marketing_landing.yaml: csv: Value error, csv options apply to format csv, not parquet; remove "
     "them")
case("destination_empty_delimiter", [append(DEST, "csv: {delimiter: ''}\n")],
     "destinations/marketing_landing.yaml: csv.delimiter: Value error, delimiter must be exactly one character, "
     "got ''")
case("kms_key_without_kms", [destination("partner", S3 + "sse: AES256\nkms_key_id: alias/x\n")],
     "destinations/partner.yaml: kms_key_id: Value error, kms_key_id applies to sse: aws:kms only")
case("no_audiences", [replace(DEST, "audiences: [gold_members, cart_abandoners, french_high_points]", "audiences: []")],
     "destinations/marketing_landing.yaml: audiences: List should have at least 1 item after validation, not 0")
case("audience_listed_twice", [replace(DEST, "cart_abandoners, french", "gold_members, french")],
     "destinations/marketing_landing.yaml: audiences: Value error, audience(s) gold_members listed more than once")
case("unknown_audience", [replace(DEST, "cart_abandoners,", "cart_abandonners,")],
     "destinations/marketing_landing.yaml: audiences.1: audience 'cart_abandonners' is not defined")
case("mapping_unknown_attribute", [replace(DEST, "{source: country}", "{source: favourite_colour}")],
     "destinations/marketing_landing.yaml: mapping.4.source: attribute 'favourite_colour' is not a profile "
     "attribute")
case("hash_plain_text", [replace(DEST, "{source: first_name}", "{source: first_name, hash: sha256}")],
     "destinations/marketing_landing.yaml: mapping.2.hash: 'hash' applies to e-mail and phone values; 'first_name' "
     "is a string without a format")
case("hash_person_namespace", [replace(DEST, "name: crm_id}", "name: crm_id, hash: sha256}")],
     "destinations/marketing_landing.yaml: mapping.0.hash: 'hash' applies to e-mail and phone identities; "
     "namespace 'crm_id' is person")
case("duplicate_header", [replace(DEST, "{source: country}", "{source: country, name: email}")],
     "destinations/marketing_landing.yaml: mapping.4.name: column 'email' appears twice (mapping.1 has the same "
     "header); rename one")
case("header_is_membership_column", [replace(DEST, "{source: country}", "{source: country, name: membership_status}")],
     "destinations/marketing_landing.yaml: mapping.4.name: column 'membership_status' is also a membership column "
     "the export adds; rename it")
case("dedup_unknown_attribute", [append(DEST, "deduplication: {attributes: [email, mobile]}\n")],
     "destinations/marketing_landing.yaml: deduplication.attributes.1: attribute 'mobile' is not a profile "
     "attribute")
case("dedup_two_forms", [append(DEST, "deduplication: {namespace: email, attributes: [email]}\n")],
     "destinations/marketing_landing.yaml: deduplication: Value error, give exactly one of namespace, attributes")
case("dedup_unknown_namespace", [append(DEST, "deduplication: {namespace: mail}\n")],
     f"destinations/marketing_landing.yaml: deduplication.namespace: namespace 'mail' is not declared in "
     f"namespaces.yaml ({DECLARED})")
case("identifies_no_one", [replace(DEST, '  - {source: "identity:crm_id", name: crm_id}\n  - {source: email}\n', "")],
     "destinations/marketing_landing.yaml: mapping: maps no identity namespace, no identity attribute and not "
     "profile_id: its rows would identify no one; add e.g. {source: \"identity:<namespace>\"} or {source: "
     "profile_id}")
case("too_many_mapped_fields", [append(DEST, "".join(f"  - {{source: city, name: c{i}}}\n" for i in range(46)))],
     "destinations/marketing_landing.yaml: mapping: List should have at most 50 items after validation, not 51")
case("split_rows_zero", [append(DEST, "split_rows: 0\n")],
     "destinations/marketing_landing.yaml: split_rows: Input should be greater than or equal to 1")

# ---------------------------------------------------------------- paths
case("source_path_up", [replace("datasets/crm_profiles.yaml", '"crm/{date}"', '"../../etc/{date}"')],
     "datasets/crm_profiles.yaml: source.path: '../../etc/2000-01-01' leaves the landing root ({landing}): it goes "
     "up out of it with '..'; use a folder under the root, or allow it with paths: {allow_outside_landing_root: "
     "true} in workspace.yaml")
case("source_path_absolute", [replace("datasets/crm_profiles.yaml", '"crm/{date}"', '"/srv/crm/{date}"')],
     "datasets/crm_profiles.yaml: source.path: '/srv/crm/2000-01-01' leaves the landing root ({landing}): it is an "
     "absolute path; use a folder under the root, or allow it with paths: {allow_outside_landing_root: true} in "
     "workspace.yaml")
case("source_path_symlink_out", [symlink_landing_out],
     "datasets/crm_profiles.yaml: source.path: 'crm/2000-01-01' leaves the landing root ({landing}): it leads to "
     "{outside}/2000-01-01 through a symbolic link; use a folder under the root, or allow it with paths: "
     "{allow_outside_landing_root: true} in workspace.yaml")
case("source_path_outside_allowed_but_other_error",
     [replace("datasets/crm_profiles.yaml", '"crm/{date}"', '"/srv/crm/{date}"'),
      append("workspace.yaml", "paths: {allow_outside_landing_root: true}\n"),
      replace("datasets/web_events.yaml", '"web/{date}"', '"web/{day}"')],
     "datasets/web_events.yaml: source.path: unknown placeholder {day} (placeholders: {date})")
case("source_path_without_date", [replace("datasets/crm_profiles.yaml", '"crm/{date}"', '"crm"')],
     "datasets/crm_profiles.yaml: source.path: must contain {date} so that each run reads its own day")
case("source_path_format_spec", [replace("datasets/crm_profiles.yaml", '"crm/{date}"', '"crm/{date:%Y}"')],
     "datasets/crm_profiles.yaml: source.path: placeholder {date} takes no format or conversion; write {date}")
case("destination_path_up", [replace(DEST, "path: marketing", "path: ../marketing")],
     "destinations/marketing_landing.yaml: path: '../marketing' leaves the exports root ({exports}): it goes up out "
     "of it with '..'; use a folder under the root, or allow it with paths: {allow_outside_exports_root: true} in "
     "workspace.yaml")
case("destination_path_absolute", [replace(DEST, "path: marketing", "path: /tmp/marketing")],
     "destinations/marketing_landing.yaml: path: '/tmp/marketing' leaves the exports root ({exports}): it is an "
     "absolute path; use a folder under the root, or allow it with paths: {allow_outside_exports_root: true} in "
     "workspace.yaml")
case("destination_path_placeholder", [replace(DEST, "path: marketing", "path: 'marketing/{audience_id}'")],
     "destinations/marketing_landing.yaml: path: unknown placeholder {audience_id} (placeholders: {date}, "
     "{destination})")

# ---------------------------------------------------------------- numbers in range and values that fit
case("share_above_one", [replace("workspace.yaml", "max_rejected_share: 0.10", "max_rejected_share: 1.5")],
     "workspace.yaml: guardrails.max_rejected_share: Input should be less than or equal to 1")
case("share_nan", [replace("workspace.yaml", "max_rejected_share: 0.10", "max_rejected_share: .nan")],
     "workspace.yaml: guardrails.max_rejected_share: Input should be a finite number")
case("count_zero", [append("workspace.yaml", "  max_identities_per_record: 0\n")],
     "workspace.yaml: guardrails.max_identities_per_record: Input should be greater than or equal to 1")
case("count_bool", [append("workspace.yaml", "  max_identities_per_graph: true\n")],
     "workspace.yaml: guardrails.max_identities_per_graph: Input should be a valid integer")
case("size_negative", [append("workspace.yaml", "  max_event_bytes: -1\n")],
     "workspace.yaml: guardrails.max_event_bytes: Input should be greater than or equal to 1")
case("skew_too_large", [append("workspace.yaml", "  max_future_skew_minutes: 100000000000\n")],
     "workspace.yaml: guardrails.max_future_skew_minutes: Input should be less than or equal to 52704000")
case("window_too_long", [replace("audiences/engaged_readers.yaml", "last_days: 14", "last_days: 1000000000")],
     "audiences/engaged_readers.yaml: rule.events.within.last_days: Input should be less than or equal to 36600")
case("link_ttl_zero", [replace("namespaces.yaml", "    priority: 40\n", "    priority: 40\n    link_ttl_days: 0\n")],
     "namespaces.yaml: namespaces.3.link_ttl_days: Input should be greater than or equal to 1")
case("dataset_delimiter_two_chars", [append("datasets/crm_profiles.yaml", "csv: {delimiter: ';;'}\n")],
     "datasets/crm_profiles.yaml: csv.delimiter: Value error, delimiter must be exactly one character, got ';;'")
case("dataset_empty_quote", [append("datasets/crm_profiles.yaml", "csv: {quote: ''}\n")],
     "datasets/crm_profiles.yaml: csv.quote: Value error, quote must be exactly one character, got ''")
case("between_out_of_order", [audience("mid", "  {attribute: points, op: between, value: [2000, 1000]}\n")],
     "audiences/mid.yaml: rule.value: between [2000, 1000]: the low bound is above the high bound; write [low, high]")
case("date_value_not_iso", [audience("young", "  {attribute: birth_date, op: '>', value: yesterday}\n")],
     "audiences/young.yaml: rule.value: attribute 'birth_date' is date; 'yesterday' is not an ISO date (YYYY-MM-DD)")
case("bool_for_long", [replace("audiences/french_high_points.yaml", 'op: ">=", value: 1000', 'op: ">=", value: true')],
     "audiences/french_high_points.yaml: rule.all.1.value: attribute 'points' is long; the value must be a number")
case("long_out_of_range", [replace("audiences/french_high_points.yaml", "value: 1000}",
                                   "value: 100000000000000000000}")],
     "audiences/french_high_points.yaml: rule.all.1.value: attribute 'points' is long; 100000000000000000000 is out "
     "of the range of long (-9223372036854775808 .. 9223372036854775807)")
case("boolean_value_text", [replace("audiences/french_high_points.yaml", "value: true}", "value: yes please}")],
     "audiences/french_high_points.yaml: rule.all.2.value: attribute 'consent_marketing' is boolean; the value must "
     "be true or false")
case("timestamp_value_in_list", [audience("recent", "  {attribute: updated_at, op: in, value: [2026-01-01, soon]}\n")],
     "audiences/recent.yaml: rule.value.1: attribute 'updated_at' is timestamp; 'soon' is not an ISO-8601 time "
     "(YYYY-MM-DDTHH:MM:SS, UTC unless an offset is given)")
case("decimal_scale_above_precision", [append("schemas/loyalty_member.yaml",
                                              "  - {name: balance, type: decimal, precision: 4, scale: 6}\n")],
     "schemas/loyalty_member.yaml: fields.6: Value error, scale 6 is larger than precision 4")
case("audiences_collide_in_one_destination",
     [write("audiences/a.yaml", "id: a\nname: BC\nrule: {attribute: tier, op: '=', value: gold}\n"),
      write("audiences/ab.yaml", "id: ab\nname: C\nrule: {attribute: tier, op: '=', value: gold}\n"),
      destination("pair", "type: local\npath: pair\naudiences: [a, ab]\nfile_name: '{destination}_{audience_id}"
                  "{audience_name}'\n" + MAPPING)],
     "destinations/pair.yaml: file_name: audiences 'a' and 'ab' can get the same file name (e.g. 'pair_abc.csv'); "
     "follow {audience_id} with a character ids cannot hold, such as '-'")
case("encryption_on_local", [append(DEST, "encryption: pgp\n")],
     "destinations/marketing_landing.yaml: encryption: Value error, encryption needs the public key of a "
     "connection; a local destination has none")
case("sftp_without_path", [destination("partner", "type: sftp\nconnection: partner_sftp\naudiences: [gold_members]\n"
                                       + MAPPING)],
     "destinations/partner.yaml: path: is required")
case("azure_container_name", [destination("partner", "type: azure_blob\nconnection: partner_azure\n"
                                          "container: Exports_2026\naudiences: [gold_members]\n" + MAPPING)],
     "destinations/partner.yaml: container: String should match pattern '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'")
case("root_file_misnamed", [remove("workspace.yaml"), write("workspace.yml", "name: retail\n")],
     "workspace.yml: is not read: name it workspace.yaml")
case("upper_case_extension_no_cascade", [remove("audiences/gold_members.yaml"),
                                          write("audiences/gold_members.YML", "id: gold_members\n")],
     "audiences/gold_members.YML: has an upper-case extension and is not read: rename it to gold_members.yml")
case("file_too_large", [write("audiences/huge.yaml", "id: huge\nname: huge\n" + "# padding\n" * 120_000)],
     "audiences/huge.yaml: is larger than 1048576 bytes, the limit of a workspace file; split it")
# A renamed schema field is one root cause: the audience and the destination that name it give one problem.
case("renamed_field_one_problem", [replace("schemas/loyalty_member.yaml", "{name: tier,", "{name: loyalty_tier,")],
     "audiences/gold_members.yaml: rule.attribute: unknown attribute 'tier' (profile attributes: birth_date, city, "
     "consent_marketing, country, crm_id, email, first_name, joined_on, last_name, loyalty_id, loyalty_tier, phone, "
     "points, updated_at); also named by destinations/crm_api.yaml: mapping.3.source, "
     "destinations/crm_sync_azure.yaml: mapping.2.source, destinations/marketing_landing.yaml: mapping.3.source, "
     "destinations/profile_stream.yaml: mapping.1.source")

# ---------------------------------------------------------------- streaming destinations (http, kafka, kinesis)
STREAM_MAPPING = 'mapping:\n  - {source: "identity:crm_id", name: crm_id}\n'
case("http_without_connection", [destination("crm_api", "type: http\naudiences: [gold_members]\n" + STREAM_MAPPING)],
     "destinations/crm_api.yaml: connection: is required")
case("http_authorization_header", [destination("crm_api", "type: http\nconnection: crm_api\naudiences: [gold_members]\n"
                                               "headers: {Authorization: Bearer abc, X-Team: crm}\n" + STREAM_MAPPING)],
     "destinations/crm_api.yaml: headers: Value error, header(s) Authorization are set by the sender; remove them (a "
     "token belongs in the connection, with auth: bearer)")
case("http_relative_path", [destination("crm_api", "type: http\nconnection: crm_api\npath: v1/profiles\n"
                                        "audiences: [gold_members]\n" + STREAM_MAPPING)],
     "destinations/crm_api.yaml: path: Value error, 'v1/profiles' is not a URL path: it must start with '/' (it "
     "follows the connection's base URL) and hold no space or '#'")
case("http_scopes_without_oauth", [destination("crm_api", "type: http\nconnection: crm_api\nscopes: [write]\n"
                                               "audiences: [gold_members]\n" + STREAM_MAPPING)],
     "destinations/crm_api.yaml: scopes: Value error, scopes apply to auth oauth2_client_credentials or "
     "oauth2_password only")
case("streaming_rate_limit_zero", [destination("crm_api", "type: http\nconnection: crm_api\nrate_limit: 0\n"
                                               "audiences: [gold_members]\n" + STREAM_MAPPING)],
     "destinations/crm_api.yaml: rate_limit: Input should be greater than 0")
case("streaming_give_up_zero", [destination("crm_api", "type: http\nconnection: crm_api\n"
                                            "retry: {give_up_after_days: 0}\naudiences: [gold_members]\n"
                                            + STREAM_MAPPING)],
     "destinations/crm_api.yaml: retry.give_up_after_days: Input should be greater than or equal to 1")
case("kinesis_batch_over_500", [destination("events_stream", "type: kinesis\nconnection: aws\nstream: profiles\n"
                                            "batching: {mode: configured, max_messages: 1000}\n"
                                            "audiences: [gold_members]\n" + STREAM_MAPPING)],
     "destinations/events_stream.yaml: batching: Value error, max_messages 1000 is over 500, the most PutRecords takes")
case("kafka_topic_name", [destination("bus", "type: kafka\nconnection: bus\ntopic: 'profile changes'\n"
                                      "audiences: [gold_members]\n" + STREAM_MAPPING)],
     "destinations/bus.yaml: topic: Value error, 'profile changes' is not a Kafka topic name: 1 to 249 letters, "
     "digits, '.', '_' or '-'")
case("kafka_unknown_audience_and_no_identity", [destination("bus", "type: kafka\nconnection: bus\ntopic: profiles\n"
                                                            "audiences: [gold_membres]\nmapping:\n"
                                                            "  - {source: first_name}\n")],
     "destinations/bus.yaml: audiences.0: audience 'gold_membres' is not defined",
     "destinations/bus.yaml: mapping: maps no identity namespace, no identity attribute and not profile_id: its rows "
     "would identify no one; add e.g. {source: \"identity:<namespace>\"} or {source: profile_id}")
case("http_hash_person_namespace", [destination("crm_api", "type: http\nconnection: crm_api\n"
                                                "audiences: [gold_members]\nmapping:\n"
                                                "  - {source: 'identity:crm_id', hash: sha256}\n"
                                                "  - {source: favourite}\n")],
     "destinations/crm_api.yaml: mapping.0.hash: 'hash' applies to e-mail and phone identities; namespace 'crm_id' "
     "is person",
     "destinations/crm_api.yaml: mapping.1.source: attribute 'favourite' is not a profile attribute")
