"""The docs are checked like code: the README stays a front page, every link and anchor resolves, every
docs page can be reached from the README, every section the code cites exists, every environment variable
the code reads is in the contract, and nothing cites a file outside the repository.

Standalone: the standard library and pytest only; no shared fixtures, no servers.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONTRACT = DOCS / "contract.md"
README_MAX_LINES = 300

# Sections code cites as `docs/contract.md "<heading>"`; their names are part of the contract.
CONTRACT_SECTIONS = ("Configuration", "Commands", "The event", "Delivery and storage guarantees", "API",
                     "Access control")

# Where the code reads the environment: the project, the app, the local stack and gunicorn's settings.
ENVIRONMENT_READERS = ("activity_service", "logs", "stack", "gunicorn.conf.py")
_ENVIRONMENT_READ = re.compile(
    r"""env_(?:str|int|bool|list)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
    r"""|os\.environ(?:\.get|\.setdefault|\.pop)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
    r"""|os\.environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]"""
    r"""|os\.getenv\(\s*["']([A-Z][A-Z0-9_]*)["']"""
)

# Built from parts, so that this file does not cite what it looks for.
_OUTSIDE_CITATIONS = re.compile("|".join((re.escape("CONTRACT" + ".md"), re.escape(".." + "/shared"),
                                          re.escape("/shared" + "/design"))))
# Never read for citations: environments, data, generated output, and the fuzz corpus (arbitrary bytes).
_NOT_SOURCES = {".git", ".venv", ".venv-scanners", ".data", "artifacts", "staticfiles", "__pycache__",
                "node_modules", ".pytest_cache", ".ruff_cache"}
_NOT_SOURCE_PATHS = ("fuzz/corpus/",)

_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HTML_ANCHOR = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")
# `docs/contract.md "The event"` (or with a comma), and the older forms `README "<section>"`, `(README, <section>)`.
_CITATION = re.compile(r"""(docs/[\w./-]+\.md),?\s+"([^"\n]+)\"""")
_README_CITATION = re.compile(r"""\bREADME(?:\.md)?(?:,\s*|\s+)"([^"\n]+)"|\(README(?:\.md)?,\s*([^)"\n]+)\)""")


def markdown_files():
    return [README, *sorted(DOCS.rglob("*.md"))]


def prose_lines(text):
    """The lines of a Markdown text, blank inside fenced code blocks, with inline code spans removed."""
    lines, fenced = [], None
    for line in text.splitlines():
        fence = _FENCE.match(line)
        if fence:
            fenced = fence.group(1) if fenced is None else (None if fence.group(1) == fenced else fenced)
            lines.append("")
        elif fenced is not None:
            lines.append("")
        else:
            lines.append(re.sub(r"(`+)(?:(?!\1).)+?\1", "", line))
    return lines


def heading_texts(text):
    """The text of every ATX heading outside code blocks, inline code kept (it counts in the slug)."""
    headings, fenced = [], None
    for line in text.splitlines():
        fence = _FENCE.match(line)
        if fence:
            fenced = fence.group(1) if fenced is None else (None if fence.group(1) == fenced else fenced)
            continue
        if fenced is None and (match := _HEADING.match(line)):
            headings.append(match.group(2))
    return headings


def github_slug(heading):
    """GitHub's anchor for a heading: the rendered text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = text.replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    """Every anchor a Markdown file offers: its headings' slugs (repeats numbered as GitHub does) and HTML anchors."""
    text = path.read_text(encoding="utf-8")
    found, seen = set(), {}
    for heading in heading_texts(text):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    found.update(_HTML_ANCHOR.findall(text))
    return found


def relative_links(path):
    """(line number, target) of every link in a Markdown file that is not a URL."""
    links = []
    for number, line in enumerate(prose_lines(path.read_text(encoding="utf-8")), start=1):
        targets = [match.group(1) for match in _INLINE_LINK.finditer(line)]
        if reference := _REFERENCE.match(line):
            targets.append(reference.group(1))
        for target in targets:
            target = target.strip("<>")
            if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto:, ...
                links.append((number, target))
    return links


def link_problem(source, target):
    """Why `target`, linked from `source`, does not resolve; None when it does."""
    file_part, _, anchor = target.partition("#")
    resolved = (source.parent / file_part).resolve() if file_part else source
    if not resolved.is_relative_to(ROOT):
        return f"{target!r} leaves the repository"
    if not resolved.exists():
        return f"{target!r}: no such file"
    if anchor:
        if resolved.suffix != ".md":
            return f"{target!r}: an anchor into a file that is not Markdown"
        if anchor not in anchors(resolved):
            return f"{target!r}: {resolved.relative_to(ROOT)} has no heading with the anchor #{anchor}"
    return None


def linked_markdown(path):
    """The Markdown files inside the repository that `path` links to."""
    linked = set()
    for _, target in relative_links(path):
        file_part = target.partition("#")[0]
        if file_part:
            resolved = (path.parent / file_part).resolve()
            if resolved.is_dir() and (resolved / "README.md").exists():
                resolved = resolved / "README.md"
            if resolved.suffix == ".md" and resolved.is_file():
                linked.add(resolved)
    return linked


def repository_files():
    """Files in the repository (tracked, and new ones not ignored); a walk when git is not there."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                                cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
        paths = [ROOT / name for name in listed.decode("utf-8", "surrogateescape").split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        paths = []
        for folder, subfolders, names in os.walk(ROOT):
            subfolders[:] = [name for name in subfolders if name not in _NOT_SOURCES]
            paths.extend(Path(folder) / name for name in names)
    return [path for path in paths
            if path.is_file() and not _NOT_SOURCES & set(path.relative_to(ROOT).parts)
            and not path.relative_to(ROOT).as_posix().startswith(_NOT_SOURCE_PATHS)]


def environment_variables_read():
    """{variable: [where it is read]} over the places the code reads its environment."""
    read = {}
    for reader in ENVIRONMENT_READERS:
        location = ROOT / reader
        sources = sorted(location.rglob("*.py")) if location.is_dir() else [location]
        for source in sources:
            for match in _ENVIRONMENT_READ.finditer(source.read_text(encoding="utf-8")):
                name = next(group for group in match.groups() if group)
                read.setdefault(name, []).append(str(source.relative_to(ROOT)))
    return read


@pytest.mark.parametrize(("heading", "slug"), [
    # Anchors the README linked to before docs/ existed, as GitHub rendered them.
    ("Retention (`ACTIVITY_LOG_RETENTION_DAYS`)", "retention-activity_log_retention_days"),
    ("Local brokers: Tansu and Apache Kafka", "local-brokers-tansu-and-apache-kafka"),
    ("Upgrading the stored layout (`migrate_activity_logs`)", "upgrading-the-stored-layout-migrate_activity_logs"),
    ("0001. The event id is the document's `_id`, as a string", "0001-the-event-id-is-the-documents-_id-as-a-string"),
    ("Consumer: a partition is paused", "consumer-a-partition-is-paused"),
])
def test_anchors_follow_githubs_slug_rules(heading, slug):
    assert github_slug(heading) == slug


def test_a_repeated_heading_gets_a_numbered_anchor(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Runbook\n## Check\n```\n## Not a heading\n```\n## Check\n", encoding="utf-8")
    assert anchors(page) == {"runbook", "check", "check-1"}


def test_the_readme_is_a_front_page_of_at_most_300_lines():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, (f"README.md has {lines} lines (at most {README_MAX_LINES}): move manuals, "
                                       "measurements and reasons into docs/")


@pytest.mark.parametrize("page", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_and_heading_in_the_repository(page):
    problems = [f"line {number}: {problem}" for number, target in relative_links(page)
                if (problem := link_problem(page, target))]
    assert not problems, f"{page.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_every_docs_page_is_reached_from_the_readme():
    reached, frontier = set(), [README]
    while frontier:
        page = frontier.pop()
        for linked in linked_markdown(page) - reached:
            reached.add(linked)
            if linked.is_relative_to(DOCS):
                frontier.append(linked)
    pages = set(DOCS.rglob("*.md"))
    assert pages, "docs/ holds no Markdown pages"
    unreached = sorted(str(page.relative_to(ROOT)) for page in pages - reached)
    assert not unreached, f"not linked from the README, nor from a docs page it links: {unreached}"
    top_level = {page for page in pages if page.parent == DOCS} - linked_markdown(README)
    assert not top_level, f"docs pages the README does not link directly: {sorted(p.name for p in top_level)}"


def test_the_contract_has_the_sections_code_cites():
    headings = set(heading_texts(CONTRACT.read_text(encoding="utf-8")))
    missing = [section for section in CONTRACT_SECTIONS if section not in headings]
    assert not missing, f"docs/contract.md lacks the sections {missing}"


def test_every_citation_of_a_section_names_a_heading_there():
    problems = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        citations = [*_CITATION.findall(text),
                     *(("README.md", quoted or bare.strip()) for quoted, bare in _README_CITATION.findall(text))]
        for cited_page, section in citations:
            page = ROOT / cited_page
            if section.startswith("<") and section.endswith(">"):
                continue  # a placeholder, as in "cite it as docs/contract.md "<heading>""
            if not page.is_file():
                problems.append(f"{path.relative_to(ROOT)} cites {cited_page}, which does not exist")
            elif section not in heading_texts(page.read_text(encoding="utf-8")):
                problems.append(f"{path.relative_to(ROOT)} cites {cited_page} \"{section}\", which has no such heading")
    assert not problems, "\n".join(problems)


def test_nothing_outside_docs_cites_a_file_outside_the_repository():
    citing = []
    for path in repository_files():
        if path.is_relative_to(DOCS):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if _OUTSIDE_CITATIONS.search(line):
                citing.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not citing, "cite docs/contract.md, which a clone holds, instead:\n" + "\n".join(citing)


def test_every_environment_variable_the_code_reads_is_in_the_contract():
    read = environment_variables_read()
    assert len(read) > 20, f"found only {sorted(read)}: has settings/env.py changed its function names?"
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", CONTRACT.read_text(encoding="utf-8")))
    missing = {name: where for name, where in read.items() if name not in documented}
    assert not missing, f"read by the code but not in docs/contract.md \"Configuration\": {missing}"
