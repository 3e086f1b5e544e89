"""HTML main content (`ingest.html_main_content`): an intranet page whose menus, banner, cookie notice, sidebar and
footer are plain <div>s (no <nav>/<header>/<footer> tags for the tag-based reader to drop) is ingested through the
real pipeline; with trafilatura ('on', and 'auto' on a page without <main>) the boilerplate is gone from the stored
chunks while the main text and its table (Markdown, header repeated in every chunk of it) stay; 'off' keeps today's
reader, boilerplate included; 'auto' trusts a page's own <main>."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from assistant.storage.orm import Chunk
from ingest.ingest_service import IngestService
from ingest.loaders import LoaderOptions, load_document

BOILERPLATE = (
    "ACME Intranet Portal",  # site banner
    "Cafeteria menu",  # top menu
    "We use cookies",  # cookie notice
    "Related: parking permits",  # sidebar
    "Copyright 2026 ACME Corporation",  # footer
)
MENU = " ".join(
    f'<li><a href="/{word.lower()}">{word}</a></li>'
    for word in ("Home", "People", "Cafeteria menu", "Forms", "IT desk", "Travel", "Benefits", "Search")
)
ROOMS = [(f"Room {100 + i}", f"{4 + i % 9} people", "projector" if i % 2 else "whiteboard") for i in range(40)]


def _page(main_tag: str = "div") -> bytes:
    """A realistic intranet page: the content in a <div> (or `main_tag`), everything around it boilerplate."""
    rows = "".join(f"<tr><td>{room}</td><td>{seats}</td><td>{kit}</td></tr>" for room, seats, kit in ROOMS)
    story = (
        "<p>Meeting rooms on the fourth floor are booked through the facilities calendar at least one working day "
        "ahead. A booking that is not confirmed by nine o'clock on the day is released for others, marker heron.</p>"
        "<p>Rooms with a projector must be left with the projector switched off and the cable returned to its drawer; "
        "the facilities team checks every room on Friday afternoon and reports damage to the booking owner.</p>"
    )
    return f"""<!DOCTYPE html><html><head><title>Meeting rooms</title></head><body>
<div class="top"><div class="brand">ACME Intranet Portal</div><ul class="menu">{MENU}</ul></div>
<div class="cookie-banner">We use cookies to remember your settings. <a href="/privacy">Read more</a></div>
<div class="layout">
  <div class="sidebar"><ul><li><a href="/parking">Related: parking permits</a></li>
    <li><a href="/bikes">Related: bicycle storage</a></li><li><a href="/lockers">Related: lockers</a></li></ul></div>
  <{main_tag} class="content"><h1>Meeting rooms</h1>{story}
    <h2>Rooms and equipment</h2><p>Every room, its size and what it is equipped with:</p>
    <table><thead><tr><th>Room</th><th>Seats</th><th>Equipment</th></tr></thead><tbody>{rows}</tbody></table>
    <p>Report a broken projector to the IT desk, marker plover.</p></{main_tag}>
</div>
<div class="site-footer"><p>Copyright 2026 ACME Corporation</p><a href="/imprint">Imprint</a>
  <a href="/contact">Contact</a></div>
</body></html>""".encode()


def _chunks(service: IngestService, name: str, data: bytes, collection: str) -> list[str]:
    result = service.ingest_file(name, data, collection)
    assert result.status == "ingested", result.error
    with service.db.session() as session:
        return list(session.scalars(select(Chunk.text).where(Chunk.collection == collection).order_by(Chunk.id)))


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_boilerplate_is_dropped_and_the_text_and_table_kept(
    make_service: Callable[..., IngestService], mode: str
) -> None:
    service = make_service(html_main_content=mode, chunk_tokens=64, chunk_overlap=8)
    chunks = _chunks(service, "rooms.html", _page(), "facilities")
    text = "\n".join(chunks)
    for noise in BOILERPLATE:
        assert noise not in text, noise
    assert "marker heron" in text and "marker plover" in text and "released for others" in text

    header = "| Room | Seats | Equipment |\n| --- | --- | --- |\n"
    tables = [chunk for chunk in chunks if "| Room 1" in chunk]
    assert len(tables) > 1  # the table spans several chunks, each naming its columns
    assert all(chunk.startswith(header) for chunk in tables)
    rows = [line for chunk in tables for line in chunk.split("\n")[2:]]
    assert rows == [f"| {room} | {seats} | {kit} |" for room, seats, kit in ROOMS]  # every row once, in order
    service.close()


def test_off_keeps_the_tag_based_reader_and_auto_trusts_a_main_element() -> None:
    def text(data: bytes, mode: str) -> str:
        return "\n".join(
            b.text for b in load_document("rooms.html", data, LoaderOptions(html_main_content=mode)).blocks
        )

    whole = text(_page(), "off")  # <div>s are not boilerplate to the tag-based reader
    assert all(noise in whole for noise in BOILERPLATE) and "marker heron" in whole
    marked = _page(main_tag="main")
    assert text(marked, "auto") == text(marked, "off")  # the page marks its content: read as it marks it
    assert "Cafeteria menu" not in text(marked, "auto") and "marker plover" in text(marked, "auto")
    sections = {b.section for b in load_document("rooms.html", _page(), LoaderOptions(html_main_content="on")).blocks}
    assert sections == {"Meeting rooms", "Meeting rooms > Rooms and equipment"}  # headings survive trafilatura


def test_a_page_trafilatura_finds_nothing_in_is_read_whole_with_a_warning() -> None:
    page = b"<html><body><div><img src='plan.png'></div><pre>\n</pre></body></html>"
    parsed = load_document("plan.html", page, LoaderOptions(html_main_content="on"))
    assert parsed.report.warnings == ["no main content found apart from boilerplate: the whole page was read"]
    assert parsed.blocks == load_document("plan.html", page, LoaderOptions(html_main_content="off")).blocks
