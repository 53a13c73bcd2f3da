"""The documentation stays true to the repository: the generated config reference is current,
every relative Markdown link points to an existing file (and heading), and README's quick-start
test command is the one CI runs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import load_script
from lib.config.reference import REGENERATE_COMMAND, config_reference_markdown

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "config_reference.md"
MARKDOWN_FILES = sorted([REPO / "README.md", REPO / "pretrained" / "README.md", *(REPO / "docs").glob("*.md")])

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation other than '-' and
    '_' removed, spaces -> '-'."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)                # code spans keep their text
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)      # links keep their text
    text = re.sub(r"<[^>]+>", "", text)                        # inline HTML
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    result = set()
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        anchor = github_anchor(match.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


def relative_links(path: Path) -> list[str]:
    """Link targets in a Markdown file outside code, without external (scheme) links."""
    prose = "\n".join(_prose_lines(path.read_text(encoding="utf-8")))  # link text may wrap lines
    return [target for target in _LINK.findall(_INLINE_CODE.sub("", prose))
            if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target)]  # http:, https:, mailto:


def test_github_anchor_rules():
    assert github_anchor("HIPTrack-CLS: the multi-task model") == "hiptrack-cls-the-multi-task-model"
    assert github_anchor("Are the labels learnable? (label probe)") == "are-the-labels-learnable-label-probe"
    assert github_anchor("`MODEL.CLS_HEAD` keys") == "modelcls_head-keys"
    assert github_anchor("Ablation: baseline vs multi-task vs fusion") == "ablation-baseline-vs-multi-task-vs-fusion"


def test_config_reference_is_current():
    expected = config_reference_markdown()
    actual = REFERENCE.read_text(encoding="utf-8") if REFERENCE.is_file() else ""
    assert actual == expected, (
        f"{REFERENCE.relative_to(REPO)} is out of date with the config schema; run: {REGENERATE_COMMAND}")


def test_show_config_writes_the_reference(tmp_path):
    show_config = load_script(REPO / "tracking" / "show_config.py")
    out = tmp_path / "sub" / "reference.md"
    assert show_config.main(["--reference", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == config_reference_markdown()


def test_config_reference_lists_every_key_and_legacy_key():
    from lib.config.hiptrack import LEGACY_KEYS, get_default_config
    from lib.config.node import describe

    text = config_reference_markdown()
    for dotted, _default, comment in describe(get_default_config()):
        assert f"| `{dotted}` |" in text
    for dotted in LEGACY_KEYS:
        assert f"| `{dotted}` |" in text


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            shown = linked.relative_to(REPO) if linked.is_relative_to(REPO) else linked
            broken.append(f"{target}: no such file {shown}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.relative_to(REPO)}")
    assert not broken, f"broken links in {path.relative_to(REPO)}:\n  " + "\n  ".join(broken)


def test_readme_quick_start_matches_ci():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci_commands = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    assert ci_commands[-1] == "python -m pytest -q"
    quick_start = r"^pip install -r requirements\.txt -e \. && python tracking/quickstart\.py(\s|$)"
    assert re.search(quick_start, readme, re.MULTILINE)
    assert re.search(r"^python -m pytest -q(\s|$)", readme, re.MULTILINE)
