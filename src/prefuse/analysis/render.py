"""A tiny document model (headings, text, preformatted blocks, tables, figures) and its
two renderings: self-contained HTML and Markdown with the figures as files beside it.

All text may come from data files (ids, raw text, labels), so both renderers escape it.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str


@dataclass
class Pre:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    """A PNG figure; ``name`` is its file stem under ``figures/``."""

    name: str
    title: str
    png: bytes


Block = Heading | Text | Pre | Table | Figure

# The page needs nothing but its inline style and data-URI images; the policy makes the
# browser refuse anything else (scripts, fetches), whatever text the data smuggles in.
CSP = ('<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
       'img-src data:; style-src \'unsafe-inline\'">')

STYLE = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left;
         vertical-align: top; }
th { background: #eee; }
figure { margin: 1em 0 2em; }
img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
"""


def to_html(title: str, blocks: list[Block]) -> str:
    """One HTML page with the figures inlined as data URIs: nothing is fetched."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             CSP, f"<title>{e(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
             f"<h1>{e(title)}</h1>"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            parts.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, Pre):
            parts.append(f"<pre>{e(block.text)}</pre>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{e(c)}</th>" for c in block.header)
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                           for row in block.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            data = base64.b64encode(block.png).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{data}" '
                         f'alt="{e(block.title)}"><figcaption>{e(block.title)}</figcaption>'
                         "</figure>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _md_cell(text: str) -> str:
    """Markdown table cells: HTML-escaped (renderers pass inline HTML through), pipes
    escaped, one line."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def to_markdown(title: str, blocks: list[Block], figure_dir: str = "figures") -> str:
    """Markdown referencing each figure as ``<figure_dir>/<name>.png``."""
    parts = [f"# {_md_cell(title)}"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {_md_cell(block.text)}")
        elif isinstance(block, Text):
            parts.append(html.escape(block.text, quote=False))
        elif isinstance(block, Pre):
            fence = "`" * max(3, _longest_backtick_run(block.text) + 1)
            parts.append(f"{fence}text\n{block.text}\n{fence}")
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md_cell(c) for c in block.header) + " |",
                     "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        else:
            parts.append(f"![{_md_cell(block.title)}]({figure_dir}/{block.name}.png)")
    return "\n\n".join(parts) + "\n"
