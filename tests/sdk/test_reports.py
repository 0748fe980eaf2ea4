"""Usage reports, report jobs and the audit trail through the official SDK, in strict mode."""

from __future__ import annotations

import datetime
import json
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import telnyx

PRICES = """product,prefix,rate,initial_increment_s,subsequent_increment_s
voice_outbound,,0.05,1,1
sms_outbound,,0.004,,
"""


def post_usage(steward, ingest_key: str, events: list[dict]) -> list[str]:
    """Sends usage events as a network element does (not an SDK call) and returns statuses."""
    request = urllib.request.Request(
        steward.base_url + "/usage_events",
        data=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Bearer {ingest_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return [result["status"] for result in json.load(response)["data"]]


@pytest.fixture(scope="module")
def usage(steward, tmp_path_factory):
    """A manager with two managed accounts (one rolling up), each with charged usage today."""
    prices = Path(tmp_path_factory.mktemp("prices")) / "prices.csv"
    prices.write_text(PRICES)
    hour_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    steward.admin(
        "import-price-list", "--file", str(prices), "--name", "sdk reports",
        "--platform-default", "--effective-from", "2020-01-01T00:00:00Z",
    )
    ingest_key = steward.admin("create-ingest-key")["api_key"]
    manager = steward.create_manager()
    with steward.client(manager.api_key) as sdk:
        own = sdk.managed_accounts.create(business_name="Reports Own").data
        rollup = sdk.managed_accounts.create(business_name="Reports Rollup", rollup_billing=True).data
    when = hour_ago.strftime("%Y-%m-%dT%H:%M:%SZ")
    event = lambda account, product, quantity: {  # noqa: E731
        "id": str(uuid.uuid4()), "account_id": account, "product": product,
        "destination": "+442079460000", "quantity": quantity, "occurred_at": when,
    }
    statuses = post_usage(steward, ingest_key, [
        event(own.id, "voice_outbound", 60),  # 0.05
        event(own.id, "sms_outbound", 2),  # 0.008
        event(rollup.id, "voice_outbound", 120),  # 0.10
    ])
    assert statuses == ["accepted"] * 3
    return {"manager": manager, "own": own, "rollup": rollup}


def test_a_manager_reports_cost_per_managed_account(steward, usage):
    with steward.client(usage["manager"].api_key) as sdk:
        rows = list(sdk.usage_reports.list(
            product="sip-trunking", dimensions=["product", "country_code"],
            metrics=["count", "call_sec", "cost"], managed_accounts=True, date_range="last_1_days",
        ))
    by_account = {row["user_id"]: row for row in rows}
    assert by_account[usage["own"].id]["call_sec"] == 60
    assert by_account[usage["own"].id]["cost"] == pytest.approx(0.05)
    assert by_account[usage["rollup"].id]["cost"] == pytest.approx(0.10)
    assert by_account[usage["rollup"].id]["country_code"] == "GB"


def test_a_managed_account_reports_without_prices(steward, usage):
    with steward.client(usage["own"].api_key) as sdk:
        rows = list(sdk.usage_reports.list(
            product="messaging", dimensions=["message_type"], metrics=["count", "parts"],
            date_range="last_1_days",
        ))
        assert rows == [{"message_type": "SMS", "count": 1, "parts": 2}]
        with pytest.raises(telnyx.PermissionDeniedError) as refused:
            sdk.usage_reports.list(
                product="messaging", dimensions=["date"], metrics=["cost"], date_range="last_1_days",
            )
        assert "pricing is managed" in refused.value.body["errors"][0]["detail"]
        options = sdk.usage_reports.get_options().data
    assert {o.product for o in options} == {"sip-trunking", "messaging", "number-rental"}
    for option in options:
        assert "cost" not in option.product_metrics
        assert "billed_sec" not in option.product_metrics


def test_usage_reports_come_as_csv_too(steward, usage):
    with steward.client(usage["manager"].api_key) as sdk:
        raw = sdk.usage_reports.with_raw_response.list(
            product="sip-trunking", dimensions=["product"], metrics=["count", "cost"],
            managed_accounts=True, date_range="last_1_days", format="csv",
        )
    lines = raw.text().strip().splitlines()
    assert lines[0] == "user_id,product,count,cost"
    assert len(lines) == 3


def test_options_for_one_product(steward, usage):
    with steward.client(usage["manager"].api_key) as sdk:
        options = sdk.usage_reports.get_options(product="sip-trunking").data
    assert [o.product for o in options] == ["sip-trunking"]
    assert options[0].product_metrics == ["count", "call_sec", "billed_sec", "cost"]
    assert {r.record_type for r in options[0].record_types} == {"voice_outbound", "voice_inbound"}


def wait_for(fetch, attempts: int = 100):
    for _ in range(attempts):
        report = fetch().data
        if report.status != 1:
            return report
        time.sleep(0.1)
    raise AssertionError("the report job did not finish")


def test_legacy_voice_report_jobs_over_all_managed_accounts(steward, usage):
    today = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    with steward.client(usage["manager"].api_key) as sdk:
        created = sdk.legacy.reporting.usage_reports.voice.create(
            start_time=today - datetime.timedelta(days=1), end_time=today + datetime.timedelta(days=1),
            aggregation_type=0, product_breakdown=2, select_all_managed_accounts=True,
        ).data
        report = wait_for(lambda: sdk.legacy.reporting.usage_reports.voice.retrieve(created.id))
        assert report.status == 2
        assert {row["user_id"] for row in report.result["rows"]} == {usage["own"].id, usage["rollup"].id}
        with urllib.request.urlopen(report.report_url, timeout=10) as response:
            assert response.read().decode().startswith("user_id,direction,country_code,count")
        listed = list(sdk.legacy.reporting.usage_reports.voice.list(per_page=10))
        assert created.id in {r.id for r in listed}
        deleted = sdk.legacy.reporting.usage_reports.voice.delete(created.id).data
        assert deleted.id == created.id
        with pytest.raises(telnyx.NotFoundError):
            sdk.legacy.reporting.usage_reports.voice.retrieve(created.id)


def test_legacy_messaging_report_jobs_of_a_managed_account(steward, usage):
    with steward.client(usage["own"].api_key) as sdk:
        created = sdk.legacy.reporting.usage_reports.messaging.create(aggregation_type=0).data
        report = wait_for(lambda: sdk.legacy.reporting.usage_reports.messaging.retrieve(created.id))
        assert report.result["rows"][0]["parts"] == 2
        assert "cost" not in report.result["rows"][0]
        assert [r.id for r in sdk.legacy.reporting.usage_reports.messaging.list()] == [created.id]


def test_the_audit_trail_shows_what_the_manager_changed(steward, usage):
    manager = usage["manager"]
    with steward.client(manager.api_key) as sdk:
        sdk.managed_accounts.update(usage["own"].id, managed_account_allow_custom_pricing=True)
    with steward.client(usage["own"].api_key) as sdk:
        events = list(sdk.audit_events.list(sort="asc"))
        recent = list(sdk.audit_events.list(
            filter={"created_after": datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)},
            page_size=1,
        ))
    kinds = [(e.change_type, e.change_made_by) for e in events]
    assert ("managed_account.create", "account_manager") in kinds
    assert ("managed_account.update", "account_manager") in kinds
    update = next(e for e in events if e.change_type == "managed_account.update")
    assert update.changes[0].field == "managed_account_allow_custom_pricing"
    assert update.changes[0].from_ is False and update.changes[0].to is True
    assert update.user_id == usage["own"].id
    assert len(recent) == len(events)
