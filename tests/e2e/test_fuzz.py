"""Hypothesis against the running gateway: raw bodies, headers, query strings and paths a client could send.

Every answer must be below 500, and every error on the API an RFC 9457 problem+json. The strategies
mix JSON that is nearly right (each field replaced by an odd value: lone surrogate escapes, huge exponents,
non-ASCII digits, control characters, duplicate keys) with arbitrary bytes, so the parser, the validation
and the storage are all reached.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastloans.contracts import POLICY_PATH
from tests.conftest import MigratedDb, issue_test_key
from tests.e2e.test_pipeline import APPROVED, URL

PROBLEM = "application/problem+json"
FUZZ = settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True
)

# Strings of every kind of character, surrogates included (written as JSON escapes).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
# Names: letters mixed with what a name must not hold (controls, format characters, surrogates, separators),
# the characters known to be trouble among them often.
TROUBLE = st.sampled_from(
    [
        "\x00",
        "\x1b",
        "\r",
        "\n",
        "\x7f",
        "\u202e",
        "\u2066",
        "\u200b",
        "\ufeff",
        "\ud800",
        "\udfff",
        "\u2028",
        "\u3164",
        "\u0301",
    ]
)
NAMES = st.text(
    st.one_of(
        TROUBLE, st.characters(categories=["Cc", "Cf", "Cs", "Zl", "Zp", "Zs", "Mn"]), st.characters(categories=["L"])
    ),
    min_size=1,
    max_size=30,
)
# Raw JSON number text, exponents far past what Python's Decimal represents included.
NUMBER_TOKENS = st.one_of(
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,30})(\.[0-9]{0,30})?([eE][+-]?[0-9]{1,30})?\Z"),
    st.from_regex(r"\A-?[1-9](\.[0-9]{1,3})?[eE][+-]?[1-9][0-9]{17,30}\Z"),
)
ODD_DIGITS = st.text(
    st.sampled_from("0123456789_.,-+eE \u0660\u0661\u06f1\uff10\uff11\u0967\u00b2\u2155"), min_size=1, max_size=12
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    ANY_TEXT,
    ODD_DIGITS,
)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3), max_leaves=8
)
ENCODED = JSON_VALUES.map(json.dumps)
MONEY = st.one_of(NUMBER_TOKENS, ODD_DIGITS.map(json.dumps), NUMBER_TOKENS.map(json.dumps), ENCODED)
# For each field, values near the edge of what it takes, as JSON text.
FIELD_VALUES = {
    "applicant_name": st.one_of(NAMES.map(json.dumps), ANY_TEXT.map(json.dumps), ENCODED),
    "credit_score": st.one_of(NUMBER_TOKENS, ODD_DIGITS.map(json.dumps), ENCODED),
    "loan_amount": MONEY,
    "monthly_income": MONEY,
    "monthly_debt": MONEY,
    "loan_purpose": st.one_of(ANY_TEXT.map(json.dumps), ENCODED),
    "employment_status": st.one_of(ANY_TEXT.map(json.dumps), ENCODED),
}


@st.composite
def nearly_valid_bodies(draw: st.DrawFn, *, partial: bool = False) -> bytes:
    """A valid application with one field or a few replaced by odd values, and maybe a key repeated or added.

    `partial`: only some of the fields (a PATCH).
    """
    members = [(name, json.dumps(value)) for name, value in APPROVED.items()]
    if partial:
        members = draw(st.lists(st.sampled_from(members), min_size=1, max_size=3, unique=True))
    changed = draw(
        st.one_of(
            st.sets(st.integers(0, len(members) - 1), min_size=1, max_size=1),
            st.sets(st.integers(0, len(members) - 1), max_size=3),
        )
    )
    for index in changed:
        name = members[index][0]
        members[index] = (name, draw(FIELD_VALUES[name]))
    if draw(st.integers(0, 4)) == 0:
        members.append((draw(st.sampled_from(sorted(APPROVED))), draw(ENCODED)))
    if draw(st.integers(0, 4)) == 0:
        members.append((draw(ANY_TEXT), draw(ENCODED)))
    text = "{" + ", ".join(f"{json.dumps(name)}: {value}" for name, value in members) + "}"
    return text.encode("utf-8")


def bodies(*, partial: bool = False) -> st.SearchStrategy[bytes]:
    """Mostly nearly valid bodies; some any JSON, some any bytes."""
    nearly = nearly_valid_bodies(partial=partial)
    return st.one_of(
        nearly, nearly, nearly, nearly, JSON_VALUES.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300)
    )


# Header values HTTP can carry: visible ASCII and obs-text, no CR, LF or NUL.
HEADER_VALUES = st.binary(max_size=80).map(lambda raw: bytes(b for b in raw if b >= 0x20 and b != 0x7F).strip())
JSON_TYPE = st.sampled_from([b"application/json", b"application/json; charset=utf-8"])
CONTENT_TYPES = st.one_of(
    JSON_TYPE,
    JSON_TYPE,
    JSON_TYPE,
    st.sampled_from(
        [
            b"application/json; charset=latin-1",
            b"application/x+json",
            b"",
            b"text/plain",
            b"application/json;;",
            b"application/json; charset",
        ]
    ),
    HEADER_VALUES,
)


@st.composite
def cursors(draw: st.DrawFn) -> str:
    """Cursor-shaped values: any time at any offset (dates at both ends of the calendar likely), any text."""
    offset = timezone(timedelta(minutes=draw(st.integers(-1439, 1439))))
    edge = st.sampled_from([datetime.min, datetime.max, datetime(1, 1, 1, 13, 59), datetime(9999, 12, 31, 10)])
    created = draw(st.one_of(edge, st.datetimes())).replace(tzinfo=offset)
    ident = draw(st.one_of(st.uuids().map(str), st.uuids().map(str), ANY_TEXT))
    inner = draw(
        st.one_of(st.just(f"{created.isoformat()}|{ident}"), st.just(f"{created.isoformat()}|{ident}"), ANY_TEXT)
    )
    encoded = base64.urlsafe_b64encode(inner.encode("utf-8", "surrogatepass")).decode()
    return draw(st.one_of(st.just(encoded), st.just(encoded), st.just(encoded.rstrip("=")), ANY_TEXT))


def _query(params: dict[str, str]) -> str:
    return "&".join(f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in params.items())


@st.composite
def moments(draw: st.DrawFn) -> str:
    """A time as text: any date at any offset (the ends of the calendar likely), or naive, or any text."""
    offset = timezone(timedelta(minutes=draw(st.integers(-1439, 1439))))
    edge = st.sampled_from([datetime.min, datetime.max, datetime(1, 1, 8), datetime(9999, 12, 24)])
    moment = draw(st.one_of(edge, st.datetimes()))
    return draw(st.one_of(st.just(moment.replace(tzinfo=offset).isoformat()), st.just(moment.isoformat()), ANY_TEXT))


QUERY_STRINGS = st.one_of(
    cursors().map(lambda cursor: _query({"cursor": cursor})),
    st.fixed_dictionaries(
        {},
        optional={
            "cursor": cursors(),
            "limit": st.one_of(ANY_TEXT, st.integers().map(str)),
            "status": ANY_TEXT,
            "wait": ANY_TEXT,
        },
    ).map(_query),
    st.binary(max_size=60).map(lambda raw: quote(raw, safe="=&%")),
)


@pytest.fixture(scope="module")
def http(api_url: str, tenant_key: str) -> Iterator[httpx.Client]:
    """A blocking client as the test tenant (Hypothesis drives plain functions)."""
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {tenant_key}"}, timeout=40) as client:
        yield client


@pytest.fixture(scope="module")
async def admin_key(migrated_db: MigratedDb) -> str:
    """A key with the admin scope (the policy report needs it)."""
    return await issue_test_key(migrated_db.primary_url, f"fuzz-admin-{uuid.uuid4().hex[:6]}", ("admin",))


@pytest.fixture(scope="module")
def admin_http(api_url: str, admin_key: str) -> Iterator[httpx.Client]:
    """A blocking client with the admin key."""
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=40) as client:
        yield client


@pytest.fixture(scope="module")
def application(http: httpx.Client) -> str:
    """The URL of one application to PATCH."""
    response = http.post(URL, json=APPROVED)
    assert response.status_code == 202, response.text
    return f"{URL}/{response.json()['id']}"


def assert_answered(response: httpx.Response) -> None:
    """No 5xx; an API error is problem+json."""
    assert response.status_code < 500, (response.request.method, response.request.url, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM, response.text[:200]
        assert response.json()["status"] == response.status_code


@FUZZ
@given(body=bodies(), content_type=CONTENT_TYPES)
@example(body=json.dumps({**APPROVED, "applicant_name": "Ada\x00Lovelace"}).encode(), content_type=b"application/json")
@example(body=b'{"loan_amount": 1e99999999999999999999}', content_type=b"application/json")
@example(body=b'{"applicant_name": "\\ud800"}', content_type=b"application/json")
@example(body=b'{"\\ud800": 1}', content_type=b"application/json")
def test_post_bodies_never_get_a_5xx(http: httpx.Client, body: bytes, content_type: bytes) -> None:
    assert_answered(http.post(URL, content=body, headers={"content-type": content_type}))


@FUZZ
@given(body=bodies(partial=True), content_type=CONTENT_TYPES)
@example(body=b'{"applicant_name": "Ada\\u0000Lovelace"}', content_type=b"application/json")
def test_patch_bodies_never_get_a_5xx(http: httpx.Client, application: str, body: bytes, content_type: bytes) -> None:
    assert_answered(http.patch(application, content=body, headers={"content-type": content_type}))


@FUZZ
@given(
    idempotency_key=HEADER_VALUES,
    accept=HEADER_VALUES,
    traceparent=HEADER_VALUES,
    tracestate=HEADER_VALUES,
    authorization=st.one_of(st.none(), HEADER_VALUES),
)
def test_headers_never_get_a_5xx(
    http: httpx.Client,
    idempotency_key: bytes,
    accept: bytes,
    traceparent: bytes,
    tracestate: bytes,
    authorization: bytes | None,
) -> None:
    headers = {
        "content-type": b"application/json",
        "idempotency-key": idempotency_key or b"k",
        "accept": accept,
        "traceparent": traceparent,
        "tracestate": tracestate,
    }
    if authorization is not None:
        headers["authorization"] = authorization
    assert_answered(http.post(URL, content=json.dumps(APPROVED).encode(), headers=headers))


@FUZZ
@given(query=QUERY_STRINGS)
@example(query="cursor=" + base64.urlsafe_b64encode(f"0001-01-01T00:00:00+14:00|{uuid.uuid4()}".encode()).decode())
@example(query="cursor=" + base64.urlsafe_b64encode(f"9999-12-31T23:59:59-14:00|{uuid.uuid4()}".encode()).decode())
def test_list_query_strings_never_get_a_5xx(http: httpx.Client, query: str) -> None:
    assert_answered(http.get(f"{URL}?{query}"))


@FUZZ
@given(
    segment=st.one_of(st.uuids().map(str), ANY_TEXT, st.binary(max_size=40).map(quote)),
    query=QUERY_STRINGS,
    method=st.sampled_from(["GET", "HEAD", "DELETE", "PATCH", "PUT", "OPTIONS", "PROPFIND", "TRACE"]),
)
def test_paths_and_methods_never_get_a_5xx(http: httpx.Client, segment: str, query: str, method: str) -> None:
    path = quote(segment.encode("utf-8", "surrogatepass"), safe="%")
    response = http.request(
        method, f"{URL}/{path}?{query}", content=b"{}", headers={"content-type": "application/json"}
    )
    assert response.status_code < 500, (method, path, query, response.text[:300])


@settings(FUZZ, max_examples=150)
@given(params=st.fixed_dictionaries({}, optional={"since": moments(), "until": moments()}))
@example(params={"since": "0001-01-01T00:00:00+14:00"})
@example(params={"until": "9999-12-31T23:59:59-14:00", "since": "9999-12-31T00:00:00-14:00"})
def test_report_windows_never_get_a_5xx(admin_http: httpx.Client, params: dict[str, str]) -> None:
    assert_answered(admin_http.get(f"{POLICY_PATH}/challenger?{_query(params)}"))
