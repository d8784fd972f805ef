#!/usr/bin/env python3
"""Check relative links in Markdown files: the file exists and, for #anchor, a heading with that GitHub slug."""
import re, os, sys, glob, collections
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) if len(sys.argv) < 2 else sys.argv[1]
def slug(h):
    h = re.sub(r'<[^>]+>', '', h.strip().lower())
    h = re.sub(r'[^\w\- ]', '', h)        # GitHub keeps letters, digits, _, -, spaces
    return h.replace(' ', '-')
def anchors(path):
    seen = collections.Counter(); out = set(); fence = False
    for l in open(path, encoding='utf-8'):
        if l.startswith('```'): fence = not fence; continue
        m = None if fence else re.match(r'^#{1,6} +(.*?)\s*#*\s*$', l)
        if m:
            s = slug(m.group(1)); n = seen[s]; seen[s] += 1
            out.add(s if n == 0 else f'{s}-{n}')
    return out
def links(path):
    fence = False
    for i, l in enumerate(open(path, encoding='utf-8'), 1):
        if l.startswith('```'): fence = not fence; continue
        if fence: continue
        l = re.sub(r'`[^`]*`', '', l)   # code spans are not links
        for m in re.finditer(r'\]\(([^)\s]+)\)', l):
            yield i, m.group(1)
files = sys.argv[2:] or [os.path.join(ROOT, 'README.md')] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))
total = broken = 0
for f in files:
    for line, target in links(f):
        if re.match(r'^[a-z]+:', target): continue       # http:, mailto:
        total += 1
        file, _, anchor = target.partition('#')
        dest = os.path.normpath(os.path.join(os.path.dirname(f), file)) if file else f
        err = None
        if not os.path.exists(dest): err = 'no such file'
        elif anchor:
            if os.path.isdir(dest) or not dest.endswith('.md'): err = 'anchor on a non-Markdown target'
            elif anchor not in anchors(dest): err = 'no heading with this slug'
        if err:
            broken += 1; print(f'{os.path.relpath(f, ROOT)}:{line}: {target}: {err}')
print(f'{total} links, {broken} broken')
sys.exit(1 if broken else 0)
