#!/usr/bin/env python3
"""Validate every document in a chatsync store's work tree against the JSON Schemas in Store/schemas.

Usage: python3 Store/validate.py STORE_DIR
Prints one line per invalid file and a summary; exits 0 when every document is valid, 1 otherwise.
Needs the `jsonschema` package (pip install jsonschema).
"""
import json
import os
import re
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "schemas")
ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
SH = r"[0-9a-f]{2}"

# The layout of Store/FORMAT.md: path pattern -> schema.
LAYOUT = [
    (rf"chatsync\.json", "marker"),
    (rf"sessions/{SH}/{ID}\.json", "session"),
    (rf"chats/{SH}/{ID}/chat\.json", "chat"),
    (rf"chats/{SH}/{ID}/messages/[0-9a-f]/[0-9a-f]/[0-9a-f]/{ID}\.json", "message"),
    (rf"missions/{SH}/{ID}/mission\.json", "mission"),
    (rf"missions/{SH}/{ID}/hops/{ID}/hop\.json", "hop"),
    (rf"missions/{SH}/{ID}/hops/{ID}/steps/{ID}\.json", "tool_step"),
    (rf"assets/{SH}/{ID}\.json", "asset"),
    (rf"conflicts/{SH}/{ID}\.json", "conflict"),
]


def load_validators():
    resources = []
    for name in os.listdir(SCHEMAS):
        if name.endswith(".schema.json"):
            with open(os.path.join(SCHEMAS, name)) as f:
                schema = json.load(f)
            resources.append((schema["$id"], Resource.from_contents(schema)))
    registry = Registry().with_resources(resources)
    validators = {}
    for kind in {k for _, k in LAYOUT}:
        with open(os.path.join(SCHEMAS, f"{kind}.schema.json")) as f:
            schema = json.load(f)
        validators[kind] = Draft202012Validator(schema, registry=registry)
    return validators


def main(store):
    validators = load_validators()
    counts, problems = {}, []
    for root, dirs, files in os.walk(store):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            path = os.path.relpath(os.path.join(root, name), store)
            if path.startswith("."):
                continue
            kind = next((k for pattern, k in LAYOUT if re.fullmatch(pattern, path)), None)
            if kind is None:
                problems.append(f"{path}: not a place the layout puts a document")
                continue
            with open(os.path.join(store, path), "rb") as f:
                raw = f.read()
            try:
                doc = json.loads(raw)
            except ValueError as e:
                problems.append(f"{path}: not JSON: {e}")
                continue
            for err in validators[kind].iter_errors(doc):
                where = "/".join(str(p) for p in err.absolute_path) or "(document)"
                problems.append(f"{path}: {kind}: {where}: {err.message}")
            canonical = (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
            if kind != "marker" and canonical != raw:
                problems.append(f"{path}: bytes are not the canonical form")
            counts[kind] = counts.get(kind, 0) + 1
    for p in problems:
        print(p)
    total = sum(counts.values())
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"{total} documents ({summary}); {len(problems)} problem(s)")
    return 0 if not problems and total > 0 else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
