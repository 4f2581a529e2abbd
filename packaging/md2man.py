#!/usr/bin/env python3
"""Turns a part of a Markdown document of docs/ into a manual page (roff),
so pam_diycloud(8) and diycloud.toml(5) say what the docs say.

    md2man.py DOC.md NAME SECTION "ONE-LINE SUMMARY" [--from HEADING] [--to HEADING]

--from and --to pick the `## ` sections from HEADING (included) up to the
next HEADING (excluded). Handles what the docs use: headings, paragraphs,
lists, code blocks, tables, inline code, bold and links.
"""
import re
import sys


def escape(text):
    text = text.replace("\\", "\\e")
    # A line starting with . or ' would be a request.
    return re.sub(r"^([.'])", r"\\&\1", text)


def inline(text):
    text = escape(text)
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", text)
    text = re.sub(r"`([^`]+)`", r"\\fB\1\\fR", text)
    return text.replace("-", "\\-")


def convert(lines):
    out = []
    paragraph = []
    in_code = False

    def flush():
        if paragraph:
            out.append(".PP")
            out.append(inline(" ".join(paragraph)))
            paragraph.clear()

    item = None
    in_table = False
    for raw in lines:
        line = raw.rstrip("\n")
        if line.startswith("```"):
            flush()
            if item is not None:
                out.append(inline(item))
                item = None
            if in_code:
                out.extend([".fi", ".RE"])
            else:
                out.extend([".RS 4", ".nf"])
            in_code = not in_code
            continue
        if in_code:
            out.append(escape(line))
            continue
        stripped = line.strip()
        if not stripped.startswith("|"):
            in_table = False
        # A list item ends at a blank line, a new item or a heading.
        if item is not None and (not stripped or stripped.startswith(("- ", "#", "|"))):
            out.append(inline(item))
            item = None
        if not stripped:
            flush()
        elif stripped.startswith("### "):
            flush()
            out.append(".SS " + inline(stripped[4:]))
        elif stripped.startswith("## "):
            flush()
            out.append(".SH " + inline(stripped[3:].upper()))
        elif stripped.startswith("# "):
            flush()
        elif stripped.startswith("- "):
            flush()
            depth = (len(line) - len(line.lstrip())) // 2
            out.append(".IP \\(bu %d" % (2 + 2 * depth))
            item = stripped[2:]
        elif stripped.startswith("|"):
            flush()
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            # The header row and the rule under it: the entries say enough.
            header = not in_table
            in_table = True
            if header or all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            out.append(".TP")
            out.append(inline(cells[0]))
            out.append(inline(" \u2014 ".join(c for c in cells[1:] if c)))
        elif item is not None:
            item += " " + stripped
        else:
            paragraph.append(stripped)
    flush()
    if item is not None:
        out.append(inline(item))
    return out


def main():
    args = sys.argv[1:]
    first, last = None, None
    if "--from" in args:
        i = args.index("--from")
        first = args[i + 1]
        del args[i : i + 2]
    if "--to" in args:
        i = args.index("--to")
        last = args[i + 1]
        del args[i : i + 2]
    doc, name, section, summary = args
    lines = open(doc, encoding="utf-8").readlines()
    if first is not None:
        start = next(i for i, l in enumerate(lines) if l.strip() == "## " + first)
        end = len(lines)
        if last is not None:
            end = next(i for i, l in enumerate(lines) if l.strip() == "## " + last)
        lines = lines[start:end]
    print('.TH %s %s "" "diycloud" "diycloud"' % (name.upper(), section))
    print(".SH NAME")
    print("%s \\- %s" % (name, inline(summary)))
    print("\n".join(convert(lines)))
    print(".SH SEE ALSO")
    print("\\fBslicectl\\fR(8), \\fBpam_diycloud\\fR(8), \\fBdiycloud.toml\\fR(5); "
          "/usr/share/doc/diycloud/")


if __name__ == "__main__":
    main()
