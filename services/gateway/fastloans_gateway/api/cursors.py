"""The opaque cursors of paged lists: a position (a time and an id), encoded, and checked when it comes back."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

from fastloans_gateway.problems import Problem


def encode_cursor(at: datetime, ident: uuid.UUID) -> str:
    """The opaque cursor naming the position after (at, id)."""
    return base64.urlsafe_b64encode(f"{at.astimezone(UTC).isoformat()}|{ident}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names, or 400 unless it is exactly one the API could have issued.

    Issued cursors hold a UTC time: another offset could take a date outside what PostgreSQL converts
    (year 1 at +14:00), and any other spelling of a valid position is refused the same way.
    """
    try:
        at, ident = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii").split("|", 1)
        position = datetime.fromisoformat(at), uuid.UUID(ident)
        if position[0].utcoffset() == timedelta(0) and encode_cursor(*position) == cursor:
            return position
    except (ValueError, UnicodeError, OverflowError):
        pass
    raise Problem(
        400,
        "invalid cursor; use next_cursor from the previous page",
        errors=[{"field": "cursor", "message": "invalid"}],
    )
