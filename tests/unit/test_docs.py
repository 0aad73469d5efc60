"""The front page (README.md) and the pages of docs/ as their readers rely on them: the settings table is the
settings classes', every relative link leads to a file and every anchor to a heading, the `make` targets they name
exist, and the front page stays a front page."""

import re
from pathlib import Path

import pytest

from docs.settings import BEGIN, CONFIGURATION, END, PROCESSES, settings_table, with_table

DOCS = CONFIGURATION.parent
REPO = DOCS.parent
README = REPO / "README.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
# The pages the front page promises, one per reader.
READERS = ["architecture", "configuration", "events", "api", "operations", "development", "benchmarks"]
FRONT_PAGE_LINES = 200

FENCE = re.compile(r"^\s*```.*?^\s*```[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:", re.I)


def read(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def name(page: Path) -> str:
    return str(page.relative_to(REPO))


def prose(text: str) -> str:
    """The text without its fenced code blocks."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text lower-cased, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors by its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, … as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(text)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(text: str) -> list[str]:
    """Every link target of a page's prose that is not an address of its own scheme (https:, mailto:, …)."""
    return [link for link in LINK.findall(INLINE_CODE.sub("", prose(text))) if not SCHEME.match(link)]


def broken_links(page: Path, text: str) -> list[str]:
    """Each relative link of the page that leads to no file, or to no heading of the page it names."""
    broken = []
    for link in relative_links(text):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve()
        if path and not target.exists():
            broken.append(f"{link}: no file {target}")
        elif anchor and (not path or target.suffix == ".md"):
            headings = anchors(read(target) if path else text)
            if anchor not in headings:
                broken.append(f"{link}: no heading #{anchor} in {target.name if path else page.name}")
    return broken


def make_targets_named(text: str) -> set[str]:
    """`make X` in the prose's inline code, and `make X` opening a line of a code block."""
    named = set(re.findall(r"`make ([a-z][a-z-]*)(?=[`\s])", prose(text)))
    for block in FENCE.findall(text):
        named |= set(re.findall(r"^\s*make ([a-z][a-z-]*)\b", block, re.M))
    return named


def test_the_front_page_links_to_a_page_for_each_reader() -> None:
    pages = {page.stem for page in DOCS.glob("*.md")}
    assert set(READERS) <= pages, f"docs/ lacks {sorted(set(READERS) - pages)}"
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in relative_links(read(README))}
    unlinked = [name(page) for page in PAGES[1:] if page.resolve() not in linked]
    assert unlinked == [], "the front page links to every page of docs/"


def test_the_front_page_stays_a_front_page() -> None:
    lines = len(read(README).splitlines())
    assert lines <= FRONT_PAGE_LINES, f"README.md has {lines} lines: move the detail into docs/"
    assert BEGIN not in read(README), "the settings table lives in docs/configuration.md only"


def test_what_of_the_containers_was_not_run_is_said_once_where_the_containers_are() -> None:
    saying = [name(page) for page in PAGES if "Not run here" in read(page)]
    assert saying == ["docs/containers.md"]
    assert not [name(page) for page in PAGES if "never been run" in read(page)]


def test_the_settings_table_is_generated_from_the_settings_classes() -> None:
    text = read(CONFIGURATION)
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert with_table(text) == text, "docs/configuration.md's settings table is stale: run `make docs` and commit it"
    table = settings_table()
    for settings in PROCESSES.values():
        for field in settings.model_fields:
            assert f"| `{field.upper()}` |" in table


def test_the_table_replaces_what_stands_between_the_markers() -> None:
    assert with_table(f"before\n{BEGIN}\n| stale |\n{END}\nafter") == f"before\n{settings_table()}\nafter"
    with pytest.raises(ValueError, match="lacks the markers"):
        with_table("a page without the markers")


def test_a_setting_without_a_docstring_is_refused() -> None:
    from pydantic_settings import BaseSettings

    class Undocumented(BaseSettings):
        secret_knob: int = 3

    PROCESSES["undocumented"] = Undocumented
    try:
        with pytest.raises(ValueError, match="SECRET_KNOB"):
            settings_table()
    finally:
        del PROCESSES["undocumented"]


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_relative_link_leads_to_a_file_and_heading(page: Path) -> None:
    text = read(page)
    assert relative_links(text), f"{name(page)} has no relative link: the check would prove nothing"
    assert broken_links(page, text) == []


def test_anchor_links_are_checked_within_a_page_and_across_pages() -> None:
    within = across = 0
    for page in PAGES:
        for link in relative_links(read(page)):
            path, _, anchor = link.partition("#")
            within += bool(anchor) and not path
            across += bool(anchor) and path.endswith(".md")
    assert within and across, "the pages link to headings, in themselves and in each other"


def test_the_link_check_finds_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## The chaos soak — `make soak`\n", encoding="utf-8")
    page = tmp_path / "page.md"
    text = (
        "# A page\n\n## Is everything consistent?\n\n```bash\n# not a heading\n```\n\n"
        "[ok](other.md) [ok](#is-everything-consistent) [ok](other.md#the-chaos-soak--make-soak) [ok](https://x.org)\n"
        "`[not a link](nowhere.md)` [bad](missing.md) [bad](#not-a-heading) [bad](other.md#the-chaos-soak)\n"
    )
    broken = broken_links(page, text)
    assert [problem.partition(":")[0] for problem in broken] == [
        "missing.md",
        "#not-a-heading",
        "other.md#the-chaos-soak",
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Guarantees, and what happens when something fails", "guarantees-and-what-happens-when-something-fails"),
        ("The chaos soak — `make soak`", "the-chaos-soak--make-soak"),
        ("Is everything consistent?", "is-everything-consistent"),
        ("Under `make`", "under-make"),
        ("snake_case and kebab-case", "snake_case-and-kebab-case"),
    ],
)
def test_anchors_are_githubs(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_repeated_heading_is_numbered() -> None:
    assert anchors("# Title\n\n## Notes\n\n## Notes\n") == {"title", "notes", "notes-1"}


def test_every_make_target_named_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", read(REPO / "Makefile"), re.M))
    named = {name(page): make_targets_named(read(page)) for page in PAGES}
    assert named[name(README)] >= {"up", "test"}, "the front page names the two commands"
    unknown = {page: sorted(found - targets) for page, found in named.items() if found - targets}
    assert unknown == {}
