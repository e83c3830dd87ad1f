"""Citations of the design and methods documents name sections that exist.

Code cites ``docs/DESIGN.md §5.2`` or ``docs/METHODS.md §3.4, §3.5`` (the numbers of section
headings there). A bare "METHODS E" or "DESIGN" once pointed at sketches outside the
repository, which a reader of a clone cannot open, so an upper-case DESIGN / METHODS that is
not part of such a file name fails too, as does a section sign with no document before it.
Inside the two documents a bare ``§N`` cites the document itself.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = {name: ROOT / "docs" / f"{name}.md" for name in ("DESIGN", "METHODS")}
SECTION = r"\d+(?:\.\d+)*"
HEADING = re.compile(rf"^#{{1,6}} ({SECTION})\.? ", re.MULTILINE)
CITATION = re.compile(rf"(?:docs/)?(DESIGN|METHODS)\.md\s+(§{SECTION}(?:(?:,\s+|\s+and\s+)§{SECTION})*)")
SECTION_SIGN = re.compile(rf"§({SECTION})")
BARE_NAME = re.compile(r"\b(DESIGN|METHODS)\b")
SCANNED = ("src/napari_alseg/**/*.py", "src/napari_alseg/**/*.yaml", "tests/**/*.py", "benchmarks/**/*.py",
           "benchmarks/**/*.md", "scripts/**/*", "docs/*.md", "README.md", "pyproject.toml", "Makefile")


def sections(text: str) -> list[str]:
    """The numbers of a document's section headings (``## 3. …`` → ``3``, ``### 3.4 …`` → ``3.4``)."""
    return HEADING.findall(text)


def problems(text: str, where: str, known: dict[str, set[str]], own: str | None = None) -> list[str]:
    """What is wrong with the citations in ``text``: a cited section missing from ``known``
    (document → section numbers), a bare DESIGN / METHODS, a ``§`` citing no document.
    ``own``: the document ``text`` is, whose bare ``§N`` cite itself (None: a file of code)."""
    found = []
    covered = []
    for match in CITATION.finditer(text):
        if own is None and not match.group(0).startswith("docs/"):
            found.append(f"{where}:{_line(text, match)}: {match.group(0)!r}: cite it from the repository root, "
                         f"docs/{match.group(1)}.md")
        for number in SECTION_SIGN.findall(match.group(2)):
            if number not in known[match.group(1)]:
                found.append(f"{where}:{_line(text, match)}: {match.group(0)!r}: docs/{match.group(1)}.md has no section {number}")
        covered.append(match.span())
    for match in SECTION_SIGN.finditer(text):
        if any(start <= match.start() < end for start, end in covered):
            continue
        if own is None:
            found.append(f"{where}:{_line(text, match)}: §{match.group(1)} names no document (docs/METHODS.md §N, docs/DESIGN.md §N)")
        elif match.group(1) not in known[own]:
            found.append(f"{where}:{_line(text, match)}: §{match.group(1)}: docs/{own}.md has no such section")
    file_names = r"(?:docs/)?(?:DESIGN|METHODS)\.md" if own is not None else r"docs/(?:DESIGN|METHODS)\.md"
    blanked = re.sub(file_names, lambda name: " " * len(name.group(0)), text)  # keeps positions
    for match in BARE_NAME.finditer(blanked):
        found.append(f"{where}:{_line(text, match)}: a bare {match.group(0)!r} names no file: "
                     f"cite docs/{match.group(0)}.md §N")
    return found


def _line(text: str, match: re.Match) -> int:
    return text.count("\n", 0, match.start()) + 1


def known_sections() -> dict[str, set[str]]:
    return {name: set(sections(path.read_text(encoding="utf-8"))) for name, path in DOCUMENTS.items()}


def scanned_files() -> list[Path]:
    files = {path for pattern in SCANNED for path in ROOT.glob(pattern) if path.is_file()}
    return sorted(path for path in files if path != Path(__file__).resolve())


def test_every_citation_names_a_section_that_exists():
    known = known_sections()
    own_of = {path: name for name, path in DOCUMENTS.items()}
    found = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        found += problems(text, str(path.relative_to(ROOT)), known, own_of.get(path))
    assert not found, "\n".join(found)


def test_section_numbers_are_unique_and_the_code_cites_both_documents():
    for name, path in DOCUMENTS.items():
        numbers = sections(path.read_text(encoding="utf-8"))
        assert numbers and len(numbers) == len(set(numbers)), (name, numbers)
    code = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "src" / "napari_alseg").rglob("*.py"))
    assert "docs/DESIGN.md §" in code and "docs/METHODS.md §" in code


def test_the_check_fails_on_a_missing_section_and_on_a_bare_name():
    known = {"DESIGN": {"5", "5.2"}, "METHODS": {"3", "3.4"}}
    assert not problems("(docs/METHODS.md §3.4, docs/DESIGN.md §5 and §5.2) RESTRICTION_METHODS", "x", known)
    assert problems("docs/METHODS.md §3.5", "x", known)
    assert problems("docs/METHODS.md §3.4 and §7", "x", known)
    assert problems("MC dropout (METHODS B)", "x", known)
    assert problems('DESIGN "Scoring and strategies"', "x", known)
    assert problems("the layers of DESIGN.md", "x", known)
    assert not problems("docs/DESIGN.md\n    §5.2 and\n    §5", "x", known)
    assert problems("see §3.4", "x", known)
    assert not problems("see §3.4 and DESIGN.md §5", "docs/METHODS.md", known, own="METHODS")
    assert problems("see §9", "docs/METHODS.md", known, own="METHODS")
