"""docs/BENCHMARKS.md as sections, so a benchmark re-run alone replaces only its own.

A section starts at a `## ` heading. What a person wrote under a section's generated
part (after its closing `</details>`) is that section's note: it is kept when the
section is regenerated, since it explains figures the script cannot (why a target was
retired, what a comparison showed).
"""

from __future__ import annotations

from dataclasses import dataclass

DETAILS_END = "</details>"


@dataclass(frozen=True)
class Section:
    title: str
    generated: list[str]
    """The heading's own lines up to and including the closing `</details>`."""
    note: list[str]
    """Hand-written lines after the generated part."""

    def lines(self) -> list[str]:
        return [f"## {self.title}", *self.generated, *self.note]


def parse(text: str) -> tuple[list[str], list[Section]]:
    """The header lines and the sections of a BENCHMARKS.md, in order."""
    header: list[str] = []
    sections: list[Section] = []
    current: list[str] | None = None
    title = ""
    for line in text.splitlines():
        if line.startswith("## "):
            if current is not None:
                sections.append(_section(title, current))
            title, current = line[3:], []
        elif current is None:
            header.append(line)
        else:
            current.append(line)
    if current is not None:
        sections.append(_section(title, current))
    return header, sections


def _section(title: str, body: list[str]) -> Section:
    ends = [i for i, line in enumerate(body) if line.strip() == DETAILS_END]
    if not ends:
        return Section(title, body, [])
    split = ends[-1] + 1
    return Section(title, body[:split], body[split:])


def merge(old: list[Section], new: list[Section], order: list[str]) -> list[Section]:
    """The old sections with the new ones in their place, in `order` (then any others).

    A regenerated section keeps the old one's note, or gets a blank line's separation.
    """
    by_title = {s.title: s for s in old}
    for section in new:
        previous = by_title.get(section.title)
        note = previous.note if previous is not None and previous.note else [""]
        by_title[section.title] = Section(section.title, section.generated, note)
    ordered = [by_title.pop(t) for t in order if t in by_title]
    return ordered + list(by_title.values())


def render(header: list[str], sections: list[Section]) -> str:
    lines = list(header)
    for section in sections:
        if lines and lines[-1] != "":
            lines.append("")  # a heading right under a `</details>` would not render
        lines += section.lines()
    return "\n".join(lines).rstrip("\n") + "\n"
