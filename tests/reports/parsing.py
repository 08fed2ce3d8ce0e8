"""A small element tree from HTML, for tests that look at what a page shows (its tables, its chart data)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    def iter(self, tag: str | None = None) -> Iterator[Element]:
        """This element and every element below it, in document order, optionally of one tag."""
        if tag is None or self.tag == tag:
            yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter(tag)

    def find(self, tag: str | None = None, **attrs: str) -> Element | None:
        """The first element below (or at) this one with the tag and attribute values given (id_ for id)."""
        wanted = {key.rstrip("_").replace("_", "-"): value for key, value in attrs.items()}
        for element in self.iter(tag):
            if all(element.attrs.get(key) == value for key, value in wanted.items()):
                return element
        return None

    @property
    def text(self) -> str:
        return "".join(child if isinstance(child, str) else child.text for child in self.children)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {key: value or "" for key, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Element(tag, {key: value or "" for key, value in attrs}))

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Element:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def table_rows(table: Element) -> list[list[str]]:
    """The text of each body cell, row by row."""
    body = table.find("tbody") or table
    return [[cell.text.strip() for cell in row.iter("td")] for row in body.iter("tr") if any(row.iter("td"))]



def chart_data(document: Element) -> dict:
    """The charts a page carries, by name, as its browser reads them (the JSON data block)."""
    block = document.find("script", id_="tunelab-charts")
    return json.loads(block.text) if block is not None else {}
