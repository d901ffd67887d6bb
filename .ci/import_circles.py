#!/usr/bin/env python3
"""Import circles between the modules of src/ (DESIGN.md: an import only points down).

Reads every `use crate::/super::/self::` path and inline `crate::`/`super::` path,
builds the module graph, and prints each circle (strongly connected component).
A module and its own submodules count as one unit. Exits 1 if there is a circle.

    python3 .ci/import_circles.py [src]
"""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
mods = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.join(d, f)
        rel = os.path.relpath(p, root)[:-3].split(os.sep)
        if rel[-1] == 'mod': rel = rel[:-1]
        if rel in (['lib'], ['main']): rel = []
        mods[tuple(rel)] = p
def strip(src):
    # inline test modules (`#[cfg(test)] mod tests { … }` at the end of a file)
    i = re.search(r'#\[cfg\(test\)\]\s*mod\s+\w+\s*\{', src)
    if i: src = src[:i.start()]
    src = re.sub(r'//[^\n]*', '', src)
    src = re.sub(r'/\*.*?\*/', '', src, flags=re.S)
    src = re.sub(r'"(?:\\.|[^"\\])*"', '""', src)
    return src
def resolve(cur, path):
    # cur: module tuple; path: list of segments starting with crate/super/self
    segs = list(path)
    if segs[0] == 'crate': base = []; segs = segs[1:]
    else:
        base = list(cur)
        while segs and segs[0] in ('super', 'self'):
            if segs[0] == 'super': base = base[:-1]
            segs = segs[1:]
    full = base + segs
    # longest prefix that is a module
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in mods: return tuple(full[:n])
    return None
edges = {m: set() for m in mods}
for m, p in mods.items():
    src = strip(open(p).read())
    # expand use trees: crude, flatten braces
    for u in re.finditer(r'\buse\s+((?:crate|super|self)\b[^;]*);', src):
        tree = re.sub(r'\s+', '', u.group(1))
        def expand(prefix, t):
            out = []
            i = t.find('{')
            if i < 0: return [prefix + t]
            head = t[:i]; body = t[i+1:t.rfind('}')]
            depth = 0; cur = ''; parts = []
            for ch in body:
                if ch == '{': depth += 1
                if ch == '}': depth -= 1
                if ch == ',' and depth == 0: parts.append(cur); cur = ''
                else: cur += ch
            if cur: parts.append(cur)
            for part in parts: out += expand(prefix + head, part)
            return out
        for path in expand('', tree):
            segs = [s for s in path.split('::') if s]
            segs = [s.split(' as ')[0] for s in segs]
            if segs and segs[-1] == '*': segs = segs[:-1]
            t = resolve(m, segs)
            if t is not None and t != m: edges[m].add(t)
    # paths through child modules: `child::item`
    for ch in re.findall(r'\bmod\s+(\w+)\s*;', src):
        if re.search(r'(?<![\w:])' + ch + r'::', src): edges[m].add(m + (ch,))
    for x in re.finditer(r'(?<![\w:])((?:crate|super)(?:::\w+)+)', src):
        t = resolve(m, x.group(1).split('::'))
        if t is not None and t != m: edges[m].add(t)
# A module and its own submodules are one unit (a child that adds `impl`s to
# its parent's type uses the parent): only imports between modules where
# neither contains the other count.
def related(a, b):
    n = min(len(a), len(b))
    return a[:n] == b[:n]
for m in edges:
    edges[m] = {t for t in edges[m] if not related(m, t)}
# Then an import of a module's descendant is an import of the module's
# top-level unit below the common ancestor: lift both ends to the children
# of their common ancestor, so sibling folders that import each other show.
lifted = {m: set() for m in mods}
for a in mods:
    for b in edges[a]:
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]: k += 1
        ua, ub = a[:k+1], b[:k+1]
        if ua in lifted and ub in lifted and ua != ub: lifted[ua].add(ub)
edges = lifted
idx = {}; low = {}; st = []; on = set(); sccs = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
for v in mods:
    if v not in idx: sc(v)
name = lambda m: '::'.join(m) or 'crate'
scope = sys.argv[2:] 
for comp in sccs:
    if scope and not any(name(m).startswith(s) for m in comp for s in scope): continue
    print('CIRCLE:', ', '.join(sorted(name(m) for m in comp)))
    for a in comp:
        for b in sorted(edges[a]):
            if b in comp: print('   ', name(a), '->', name(b))
if '-v' in os.environ.get('EDGES', ''):
    for m in sorted(mods):
        if not scope or any(name(m).startswith(s) for s in scope):
            print(name(m), '->', ', '.join(sorted(name(t) for t in edges[m])))
sys.exit(1 if sccs else 0)
