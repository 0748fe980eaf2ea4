"""Schemathesis hooks for tests/fuzz/run.sh.

`steward_json_bodies` (a check):
Steward promises a JSON body on every response (but for the files a few operations serve on
success: report CSVs, invoice PDFs, the metrics text), and the Telnyx error envelope
(`{"errors": [{"code", "title", "detail", ...}]}`) on every error, whatever the input.
The built-in `content_type_conformance` and `response_schema_conformance` checks only
look at responses whose status the document lists, so an error with an undocumented
status (e.g. a 400 or 405 from the framework) would slip past them. This check looks
at every response, documented or not.

`before_call` (a hook): keeps the run from revoking the keys it runs with. An account may
revoke its own key (`DELETE /v2/api_keys/{key_id}`), and the stateful phase feeds ids from
`GET /v2/api_keys` into that operation; once the manager's key is gone every later request
is a 401 and the rest of the run tests nothing. Such a request is sent for a key id that
does not exist instead.

`flatmap_body` for `POST /admin/v1/price_lists` (a hook): the document can only say that
the body is a `text/csv` string, so generated bodies are never a price list and the import
never succeeds. Half of the bodies are replaced with CSV built from the documented columns
(valid or nearly: any product, prefix, rate and increments), so the success path and its
200 schema get checked too.
"""

from __future__ import annotations

import json
import os

import schemathesis
from hypothesis import strategies as st

# Key ids are the part of an API key before its `_`.
_PROTECTED_KEY_IDS = {
    os.environ[name].split("_", 1)[0].upper()
    for name in ("STEWARD_FUZZ_MANAGER_KEY", "STEWARD_FUZZ_OPERATOR_KEY", "STEWARD_FUZZ_INGEST_KEY")
    if os.environ.get(name)
}
_ABSENT_KEY_ID = "KEY00000000000000000000000000000000"


@schemathesis.hook
def before_call(context, case, kwargs):
    key_id = (case.path_parameters or {}).get("key_id")
    if isinstance(key_id, str) and key_id.strip().upper() in _PROTECTED_KEY_IDS:
        case.path_parameters["key_id"] = _ABSENT_KEY_ID


_PRODUCTS = ["voice_outbound", "voice_inbound", "sms_outbound", "sms_inbound", "mms_outbound", "mms_inbound",
             "number_rental"]
_CSV_HEADER = "product,prefix,rate,initial_increment_s,subsequent_increment_s"


@st.composite
def _price_list_csv(draw):
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        product = draw(st.sampled_from(_PRODUCTS))
        prefix = draw(st.sampled_from(["", "+"])) + draw(st.text(alphabet="0123456789", max_size=6))
        rate = draw(st.decimals(min_value=0, max_value=100, places=draw(st.integers(0, 10)), allow_nan=False))
        rate = draw(st.sampled_from([format(rate, "f"), format(rate, "f"), str(rate)]))  # str() may be 1E-7
        if product.startswith("voice"):
            increments = draw(st.sampled_from(["60,60", "6,6", "1,1", "30,6", "60,60", "0,0", ","]))
        else:
            increments = draw(st.sampled_from([",", ",", ",", ",", "60,60"]))
        rows.append(f"{product},{prefix},{rate},{increments}")
    return "\n".join([_CSV_HEADER, *rows]) + "\n"


@schemathesis.hook("flatmap_body").apply_to(method="POST", path="/admin/v1/price_lists")
def price_list_bodies(context, body):
    if not isinstance(body, str):
        return st.just(body)
    return st.one_of(st.just(body), _price_list_csv())


# Media types of the files some operations serve on success (errors are always JSON).
DOCUMENT_MEDIA_TYPES = {"text/csv", "application/pdf", "application/openmetrics-text"}


def _content_type(response) -> str:
    values = response.headers.get("content-type") or []
    return values[0] if values else ""


@schemathesis.check
def steward_json_bodies(ctx, response, case):
    """Every response is JSON; every 4xx/5xx carries a well-formed error envelope."""
    status = response.status_code
    if status in (204, 304) or case.method.upper() == "HEAD":
        return None
    media_type = _content_type(response).split(";", 1)[0].strip().lower()
    if status < 400 and media_type in DOCUMENT_MEDIA_TYPES:
        # A file the operation serves (a report CSV, an invoice PDF, the metrics text):
        # `content_type_conformance` checks it is the documented one.
        return None
    if media_type != "application/json":
        raise AssertionError(
            f"{status} response with Content-Type {media_type or '<none>'!r}, expected application/json; "
            f"body: {response.content[:300]!r}"
        )
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"{status} response body is not JSON ({exc}): {response.content[:300]!r}") from None
    if status < 400:
        return None
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        raise AssertionError(f"{status} error body has no non-empty `errors` array: {response.content[:300]!r}")
    for error in errors:
        if not isinstance(error, dict) or not all(
            isinstance(error.get(field), str) for field in ("code", "title", "detail")
        ):
            raise AssertionError(
                f"{status} error object lacks string code/title/detail: {json.dumps(error)[:300]}"
            )
    return None
