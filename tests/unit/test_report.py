"""The run report's destination lines: counts, exclusions and failures by reason, latency, the error."""

from __future__ import annotations

from cdp.report import format_report


def destination(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "destination": "crm_api", "type": "http", "mode": "incremental", "received": 10, "activated": 6,
        "excluded": {"no_identity": 1, "consent": 0}, "failed": 3, "files": 0, "bytes": 1234,
        "status": "failed", "failed_by": {"http_400": 1, "timeout": 2}, "latency_p50_ms": 850,
        "latency_p95_ms": 1900, "error": "2 message(s) not acknowledged after 5 attempt(s) (timeout: 2)"}
    return {**row, **changes}


def test_streaming_destination_lines() -> None:
    report = {"run_date": "2026-11-27", "files": [], "metrics": {}, "destinations": [destination()]}
    assert format_report(report).splitlines()[3:] == [
        f"{'destination':<22}{'type':<11}{'mode':<12}{'received':>9}{'activated':>10}{'excluded':>9}"
        f"{'failed':>7}{'files':>6}{'bytes':>10}  status",
        f"{'crm_api':<22}{'http':<11}{'incremental':<12}{10:>9}{6:>10}{1:>9}{3:>7}{0:>6}{1234:>10}  failed",
        f"{'':<22}excluded: no_identity 1",
        f"{'':<22}failed: http_400 1, timeout 2",
        f"{'':<22}latency to acknowledgement: p50 850 ms, p95 1900 ms",
        f"{'':<22}error: 2 message(s) not acknowledged after 5 attempt(s) (timeout: 2)",
    ]


def test_file_destination_has_no_latency_or_failure_lines() -> None:
    report = {"run_date": "2026-11-27", "files": [], "metrics": {}, "destinations": [destination(
        destination="ads_s3", type="s3", mode="full", received=4, activated=4, excluded={}, failed=0, files=1,
        bytes=99, status="delivered", failed_by={}, latency_p50_ms=None, latency_p95_ms=None, error=None)]}
    assert format_report(report).splitlines()[4:] == [
        f"{'ads_s3':<22}{'s3':<11}{'full':<12}{4:>9}{4:>10}{0:>9}{0:>7}{1:>6}{99:>10}  delivered"]
