#!/usr/bin/env python3
"""gen_unidecode_table.py - build-time generator of the C transliteration table used by
engine/src/labels/lyrics.c (the lyric cleaner of the Jukebox priors, spec section 7.1).

The reference runs every lyric through Python's `unidecode` before deleting characters outside
the model's vocabulary, so the port needs the same per-code-point replacement strings. This
script reads them from an installed `unidecode` package (Debian 12: python3-unidecode 1.3.6,
which keeps one module unidecode/xNNN.py per 256-code-point section) and writes one C file:

    const char     jb_unidecode_version[];       package version, e.g. "1.3.6"
    const uint32_t jb_unidecode_n_sections;       sections 0 .. n-1 are indexed
    const int32_t  jb_unidecode_section_base[];   per section: first entry index, or -1 (no data)
    const uint32_t jb_unidecode_entries[];        (pool offset << 8) | length, or UINT32_MAX (none)
    const char     jb_unidecode_pool[];           all replacement strings, deduplicated

Usage:  gen_unidecode_table.py OUTPUT.c [--unidecode-dir DIR] [--legacy-unknown]

Only python3 and the unidecode package are needed. The package is found by `import unidecode`;
if that fails (e.g. a pyenv python3 first on PATH), the Debian location
/usr/lib/python3/dist-packages is tried, or pass --unidecode-dir (the directory that *contains*
the unidecode package). The package is scanned as data (each xNNN.py is executed in isolation),
so its own import machinery is not involved.

--legacy-unknown approximates unidecode <= 1.1.x (the version the reference pins, 1.1.1): until
1.2.0 most code points without a transliteration inside an existing section mapped to the
literal "[?]" (which survives the lyric cleaner as three tokens), where 1.2.0+ has None. This
is an approximation only (later versions also filled in or changed some entries); by default
the installed tables are reproduced exactly.
"""

import argparse
import os
import re
import sys

MAX_CODEPOINT = 0xEFFFF  # unidecode ignores everything above (private use planes)


def find_package_dir(explicit):
    if explicit:
        d = os.path.join(explicit, "unidecode")
        if not os.path.isdir(d):
            sys.exit(f"gen_unidecode_table: no unidecode package under {explicit}")
        return d
    try:
        import unidecode  # noqa: F401  (only to locate the package)
        return os.path.dirname(unidecode.__file__)
    except ImportError:
        pass
    for base in ("/usr/lib/python3/dist-packages", "/usr/local/lib/python3/dist-packages"):
        d = os.path.join(base, "unidecode")
        if os.path.isfile(os.path.join(d, "x000.py")):
            return d
    sys.exit("gen_unidecode_table: the unidecode package was not found "
             "(apt-get install python3-unidecode, or pass --unidecode-dir)")


def package_version(pkg_dir):
    # Debian and pip installs keep the version in the dist-info/egg-info next to the package.
    parent = os.path.dirname(pkg_dir)
    for name in sorted(os.listdir(parent)):
        m = re.match(r"(?i)unidecode-([0-9][0-9A-Za-z.]*?)(\.dist-info|\.egg-info)$", name)
        if m:
            return m.group(1)
    return "unknown"


def load_sections(pkg_dir):
    sections = {}
    for name in os.listdir(pkg_dir):
        m = re.fullmatch(r"x([0-9a-f]{3})\.py", name)
        if not m:
            continue
        sec = int(m.group(1), 16)
        if sec > (MAX_CODEPOINT >> 8):
            continue
        ns = {}
        with open(os.path.join(pkg_dir, name), encoding="utf-8") as f:
            exec(compile(f.read(), name, "exec"), ns)  # the module only defines `data`
        data = ns.get("data")
        if not isinstance(data, (tuple, list)) or len(data) > 256:
            sys.exit(f"gen_unidecode_table: unexpected table layout in {name}")
        sections[sec] = list(data) + [None] * (256 - len(data))
    if 0 not in sections:
        sys.exit(f"gen_unidecode_table: {pkg_dir} has no x000.py")
    return sections


def c_string_literal(s):
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "?":
            out.append("\\?")  # never form a trigraph (-std=c11 enables them)
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        else:
            out.append("\\%03o" % o)  # octal escapes are at most 3 digits: no run-on
    return '"' + "".join(out) + '"'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("output")
    ap.add_argument("--unidecode-dir")
    ap.add_argument("--legacy-unknown", action="store_true")
    args = ap.parse_args()

    pkg_dir = find_package_dir(args.unidecode_dir)
    version = package_version(pkg_dir)
    sections = load_sections(pkg_dir)
    n_sections = max(sections) + 1

    pool = []
    pool_index = {}
    pool_len = 0
    section_base = []
    entries = []
    for sec in range(n_sections):
        table = sections.get(sec)
        if table is None:
            section_base.append(-1)
            continue
        section_base.append(len(entries))
        for s in table:
            if s is None and args.legacy_unknown:
                s = "[?]"
            if s is None:
                entries.append(0xFFFFFFFF)
                continue
            if any(ord(c) >= 0x80 or ord(c) == 0 for c in s) or len(s) > 255:
                sys.exit(f"gen_unidecode_table: non-ASCII or overlong entry {s!r} in section {sec:#x}")
            off = pool_index.get(s)
            if off is None:
                off = pool_len
                pool_index[s] = off
                pool.append(s)
                pool_len += len(s)
            if off >= (1 << 24):
                sys.exit("gen_unidecode_table: string pool too large for the 24-bit offsets")
            entries.append((off << 8) | len(s))

    lines = []
    lines.append("/* Generated by tools/gen_unidecode_table.py from Python unidecode %s%s. Do not edit. */"
                 % (version, " (--legacy-unknown)" if args.legacy_unknown else ""))
    lines.append("#include <stdint.h>")
    lines.append("")
    lines.append("extern const char     jb_unidecode_version[];")
    lines.append("extern const uint32_t jb_unidecode_n_sections;")
    lines.append("extern const int32_t  jb_unidecode_section_base[];")
    lines.append("extern const uint32_t jb_unidecode_entries[];")
    lines.append("extern const char     jb_unidecode_pool[];")
    lines.append("")
    lines.append("const char jb_unidecode_version[] = %s;"
                 % c_string_literal(version + ("+legacy-unknown" if args.legacy_unknown else "")))
    lines.append("const uint32_t jb_unidecode_n_sections = %du;" % n_sections)
    lines.append("")
    lines.append("const int32_t jb_unidecode_section_base[%d] = {" % n_sections)
    for i in range(0, n_sections, 12):
        lines.append("    " + ", ".join(str(v) for v in section_base[i:i + 12]) + ",")
    lines.append("};")
    lines.append("")
    lines.append("const uint32_t jb_unidecode_entries[%d] = {" % max(len(entries), 1))
    for i in range(0, len(entries), 8):
        lines.append("    " + ", ".join("0x%08xu" % v for v in entries[i:i + 8]) + ",")
    if not entries:
        lines.append("    0")
    lines.append("};")
    lines.append("")
    # One string literal split over many lines; the pool holds no NULs, so the implicit
    # terminator is the only one.
    lines.append("const char jb_unidecode_pool[%d] =" % (pool_len + 1))
    chunk = ""
    for s in pool:
        chunk += s
        if len(chunk) >= 64:
            lines.append("    " + c_string_literal(chunk))
            chunk = ""
    lines.append("    " + c_string_literal(chunk) + ";")
    lines.append("")

    tmp = args.output + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(tmp, "w", encoding="ascii", newline="\n") as f:
        f.write("\n".join(lines))
    os.replace(tmp, args.output)


if __name__ == "__main__":
    main()
