"""A notice's PDF, made from its stored HTML with WeasyPrint (Pango and a font from Debian's packages)."""

from __future__ import annotations

from typing import Any, NoReturn


def _no_fetching(url: str, *args: Any, **kwargs: Any) -> NoReturn:
    """Refuse every URL: a notice is self-contained, and a stored one must render the same wherever it is made."""
    raise ValueError(f"a notice loads nothing from outside ({url[:40]})")


def html_to_pdf(html: str) -> bytes:
    """The PDF of a rendered notice (CPU-bound: call it off the event loop)."""
    # Imported here: WeasyPrint loads Pango when imported, which only the PDF path needs.
    import weasyprint

    document = weasyprint.HTML(string=html, url_fetcher=_no_fetching)
    pdf: bytes = document.write_pdf()
    return pdf
