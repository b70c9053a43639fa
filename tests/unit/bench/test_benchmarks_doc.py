"""BENCHMARKS.md sections: a benchmark re-run alone replaces its own section only."""

from __future__ import annotations

from bench.benchmarks_doc import Section, merge, parse, render

OLD = """# Benchmarks

Written by make bench.

## Codec

| figure | value |
| encode | 1 |

<details><summary>output</summary>
old codec output
</details>

Why the codec's target was retired.

## API

| figure | value |
| req/s | 5 |

<details><summary>output</summary>
old api output
</details>
"""


def test_parse_splits_the_header_the_generated_part_and_the_note() -> None:
    header, sections = parse(OLD)
    assert header == ["# Benchmarks", "", "Written by make bench.", ""]
    assert [s.title for s in sections] == ["Codec", "API"]
    assert sections[0].generated[-1] == "</details>"
    assert sections[0].note == ["", "Why the codec's target was retired.", ""]
    assert sections[1].note == []
    assert render(header, sections) == OLD


def test_a_rerun_section_replaces_its_figures_and_keeps_its_note() -> None:
    header, old = parse(OLD)
    fresh = Section("Codec", ["", "| encode | 2 |", "</details>"], [])
    merged = merge(old, [fresh], ["Codec", "API"])
    text = render(header, merged)
    assert "| encode | 2 |" in text
    assert "| encode | 1 |" not in text
    assert "Why the codec's target was retired." in text
    # the section not re-run is untouched
    assert "old api output" in text
    assert text.index("## Codec") < text.index("## API")


def test_a_new_section_takes_its_place_in_the_order() -> None:
    header, old = parse(OLD)
    fresh = Section("Webhooks", ["", "| deliveries/s | 600 |", "</details>"], [])
    merged = merge(old, [fresh], ["Codec", "Webhooks", "API"])
    assert [s.title for s in merged] == ["Codec", "Webhooks", "API"]
    text = render(header, merged)
    assert text.count("## ") == 3
    # a heading straight under the previous section's `</details>` would not render
    assert "</details>\n## " not in text
