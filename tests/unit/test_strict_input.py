"""Strict request input: names, money and scores, content types, cursors and idempotency fingerprints."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from fastloans_gateway.api.cursors import decode_cursor, encode_cursor
from fastloans_gateway.api.deps import json_content_type, unique_keys
from fastloans_gateway.applications import new_application, request_fingerprint
from fastloans_gateway.problems import Problem
from fastloans_gateway.schemas import EXAMPLE, LoanApplicationCreate, LoanApplicationUpdate, render_application

VALID = EXAMPLE
MODELS = [LoanApplicationCreate, LoanApplicationUpdate]


def refusal(model: type, **fields: object) -> dict[str, str]:
    """The one {field: message} error of validating VALID with `fields` changed."""
    body = {**VALID, **fields} if model is LoanApplicationCreate else dict(fields)
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return {".".join(map(str, e["loc"])): e["msg"] for e in caught.value.errors()}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "text",
    [
        "1_000",
        "\u0661\u0660\u0660\u0660",
        "\uff11\uff10\uff10\uff10",
        "\u06f1\u06f0\u06f0\u06f0",
        "1 000",
        "1,000",
        "0x10",
        "1e99999",
        "NaN",
        "Infinity",
        "",
        "+",
        ".",
    ],
)
def test_money_strings_take_only_ascii_digits(model: type, text: str) -> None:
    assert "ASCII digits" in refusal(model, loan_amount=text)["loan_amount"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2000", "2000.00"),
        (" 2000.5 ", "2000.50"),
        ("2e3", "2000.00"),
        (2000, "2000.00"),
        (Decimal("2000.00"), "2000.00"),
        (".5", "0.50"),
    ],
)
def test_money_in_ascii_is_accepted_and_kept_to_two_places(given: object, stored: str) -> None:
    assert str(LoanApplicationCreate.model_validate({**VALID, "loan_amount": given}).loan_amount) == stored


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("zero", [Decimal("-0.00"), Decimal("-0"), "-0.00", "-0", "-0e2"])
def test_negative_zero_debt_is_zero(model: type, zero: object) -> None:
    body = {**VALID, "monthly_debt": zero} if model is LoanApplicationCreate else {"monthly_debt": zero}
    debt = model.model_validate(body).monthly_debt
    assert str(debt) == "0.00" and not debt.is_signed()


def test_the_accepted_form_of_negative_zero_renders_as_zero() -> None:
    body = LoanApplicationCreate.model_validate({**VALID, "monthly_debt": Decimal("-0.00")}).model_dump()
    row = new_application(uuid.uuid4(), body)
    assert render_application(row)["monthly_debt"] == "0.00"


@pytest.mark.parametrize("score", ["700", "\u0667\u0660\u0660", "\uff17\uff10\uff10", 700.0, True])
def test_credit_scores_are_json_integers_only(score: object) -> None:
    assert "credit_score" in refusal(LoanApplicationCreate, credit_score=score)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Ada\x00Lovelace", "U+0000"),
        ("Ada\x1b[31m Lovelace", "U+001B"),
        ("Ada\r\nLovelace", "U+000D"),
        ("Ada\tLovelace", "U+0009"),
        ("Ada\x7f", "U+007F"),
        ("Ada\x85Lovelace", "U+0085"),
        ("\u202eecalevoL adA", "U+202E"),
        ("Ada \u202aLovelace", "U+202A"),
        ("Ada\u2066Lovelace\u2069", "U+2066"),
        ("Ada\u200fLovelace", "U+200F"),
        ("\ufeffAda", "U+FEFF"),
        ("Ada\u2028Lovelace", "U+2028"),
        ("\u200b", "U+200B"),
        ("\u200b\u200b\u2060", "U+200B"),
    ],
)
def test_names_refuse_control_and_format_characters(model: type, name: str, says: str) -> None:
    message = refusal(model, applicant_name=name)["applicant_name"]
    assert says in message and name not in message


@pytest.mark.parametrize("model", MODELS)
def test_names_refuse_unpaired_surrogates(model: type) -> None:
    assert "applicant_name" in refusal(model, applicant_name="Ada\ud800")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "name", ["\u200c", "\u200d\u200c", "\u3164", "\u3164 \u115f", "\u0301\u0301", "...", "42", "\u2800"]
)
def test_names_need_a_visible_letter(model: type, name: str) -> None:
    assert refusal(model, applicant_name=name)["applicant_name"].endswith("at least one letter")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Jose\u0301 Garci\u0301a", "José García"),  # decomposed accents are composed (NFC)
        ("  Zoë  ", "Zoë"),
        ("محمد عبد الله", "محمد عبد الله"),
        (
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
        ),  # ZWNJ
        ("李小龍", "李小龍"),
        ("Ada \U0001f469\u200d\U0001f4bb", "Ada \U0001f469\u200d\U0001f4bb"),  # ZWJ emoji sequence
    ],
)
def test_real_names_are_kept_in_nfc(model: type, given: str, stored: str) -> None:
    body = {**VALID, "applicant_name": given} if model is LoanApplicationCreate else {"applicant_name": given}
    assert model.model_validate(body).applicant_name == stored


def test_the_length_limit_counts_the_normalised_name() -> None:
    name = LoanApplicationCreate.model_validate({**VALID, "applicant_name": "e\u0301" * 200}).applicant_name
    assert name == "é" * 200


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("application/json", True),
        ("Application/JSON", True),
        ("application/json; charset=utf-8", True),
        ("application/json;charset=UTF-8", True),
        ('application/json; charset="utf-8"', True),
        ("application/merge-patch+json", False),
        ("application/problem+json", False),
        ("application/x+json", False),
        ("application/json; charset=latin-1", False),
        ("application/json; charset=utf-16", False),
        ("application/json; boundary=x", False),
        ("application/json; charset=utf-8; charset=utf-8", False),
        ("application/jsonx", False),
        ("text/json", False),
        ("", False),
        ("application/json, text/plain", False),
    ],
)
def test_only_application_json_in_utf_8(header: str, accepted: bool) -> None:
    assert json_content_type(header) is accepted


def test_duplicate_keys_are_refused_naming_the_key() -> None:
    with pytest.raises(Problem) as caught:
        json.loads('{"loan_amount": "1", "credit_score": 700, "loan_amount": "900000"}', object_pairs_hook=unique_keys)
    assert caught.value.status == 422 and caught.value.errors == [
        {"field": "loan_amount", "message": "given more than once"}
    ]
    assert json.loads('{"a": {"b": 1}, "b": 2}', object_pairs_hook=unique_keys) == {"a": {"b": 1}, "b": 2}


@pytest.mark.parametrize("document", ['{"applicant_name": "Ada\\ud800"}', '{"\\udfff": 1}', '{"a": {"x\\ud83d": 1}}'])
def test_unpaired_surrogate_escapes_are_malformed_json(document: str) -> None:
    with pytest.raises(Problem) as caught:
        json.loads(document, object_pairs_hook=unique_keys)
    assert caught.value.status == 400
    assert json.loads('{"n": "\\ud83d\\ude00"}', object_pairs_hook=unique_keys) == {"n": "\U0001f600"}


def fingerprint(**fields: object) -> str:
    return request_fingerprint(LoanApplicationCreate.model_validate({**VALID, **fields}).model_dump())


def test_idempotency_compares_values_not_spellings() -> None:
    assert (
        fingerprint(loan_amount=2000)
        == fingerprint(loan_amount="2000.00")
        == fingerprint(loan_amount="2e3")
        == fingerprint(loan_amount=Decimal("2000.0"))
    )
    assert fingerprint(monthly_debt="-0.00") == fingerprint(monthly_debt=0)
    assert fingerprint(applicant_name="  Jose\u0301 ") == fingerprint(applicant_name="José")
    assert fingerprint(loan_amount="2000.01") != fingerprint(loan_amount="2000.00")


def test_fingerprints_of_two_place_amounts_are_unchanged() -> None:
    # Keys stored before amounts were compared by value were hashed with the amounts' two-place text.
    assert (
        request_fingerprint({"a": Decimal("2000.00"), "b": Decimal("0.00")})
        == "010f4b0f8b4faa5d1edab2d03a22d07dc7ec1754a236b7066743fb6660bf984f"
    )


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


IDENT = uuid.UUID("7d1f3a52-5c4e-4f0e-9b7a-1f6a0c2d9e11")


@pytest.mark.parametrize(
    "created",
    [
        datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
    ],
)
def test_issued_cursors_decode(created: datetime) -> None:
    assert decode_cursor(encode_cursor(created, IDENT)) == (created, IDENT)


def test_cursors_are_issued_in_utc() -> None:
    local = datetime(2026, 3, 1, 12, tzinfo=timezone(timedelta(hours=3)))
    created, _ = decode_cursor(encode_cursor(local, IDENT))
    assert created == local and created.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "cursor",
    [
        cursor_of(f"0001-01-01T00:00:00+14:00|{IDENT}"),
        cursor_of(f"9999-12-31T23:59:59-14:00|{IDENT}"),
        cursor_of(f"2026-03-01T09:30:15+02:00|{IDENT}"),
        cursor_of(f"2026-03-01T09:30:15|{IDENT}"),
        cursor_of(f"2026-03-01T09:30:15Z|{IDENT}"),
        cursor_of(f"2026-03-01T09:30:15+00:00|{str(IDENT).upper()}"),
        cursor_of(f"2026-03-01T09:30:15+00:00|{IDENT}|x"),
        cursor_of("2026-03-01T09:30:15+00:00"),
        cursor_of(f"2026-03-01 09:30:15+00:00|{IDENT}"),
        cursor_of(f"+2026-03-01T09:30:15+00:00|{IDENT}"),
        encode_cursor(datetime(2026, 3, 1, tzinfo=UTC), IDENT) + "=",
        encode_cursor(datetime(2026, 3, 1, tzinfo=UTC), IDENT).rstrip("="),
        "!!",
        "",
        "é",
        "\x00",
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
    ],
)
def test_only_cursors_the_api_could_have_issued_are_accepted(cursor: str) -> None:
    with pytest.raises(Problem) as caught:
        decode_cursor(cursor)
    assert caught.value.status == 400 and caught.value.errors == [{"field": "cursor", "message": "invalid"}]
