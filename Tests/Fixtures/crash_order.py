#!/usr/bin/env python3
"""Checks, from an strace of chatsync, that a crash at any moment could not lose what was
acknowledged nor leave the branch naming objects that are gone.

    crash_order.py TRACE GITDIR BRANCH COMMITS_BEFORE ACK

TRACE is the output of `strace -f -y -s 256 -qq -e trace=... -o TRACE` (see the test). GITDIR
is the repository's .git folder, BRANCH its branch, COMMITS_BEFORE the number of commits on the
branch when the traced process started, and ACK what an acknowledgement is: `stdout` (the
command line prints its result once the change is made), `http201` (the server answers a
change with 201) or `none` (a command that makes no change, such as `compact`).

The model is that of a file system that keeps nothing that was not fsynced: a file's data is
durable once an fsync of it started after its last write ended and has returned; a name in a
folder (a file created, renamed or linked there, a folder made there) is durable once an fsync
of that folder started after the operation returned and has returned. Rules checked:

1. When the branch moves (the rename, or link, of its lock file onto it), the lock file's data and every
   pack, pack index or loose object put in place so far are durable, names included (objects
   are durable before the branch may name them), and so are the repository's HEAD and config.
   Packs that merge others (made by a thread that removes packs) are left to rule 2: their
   objects are all in the packs they replace.
2. When a thread removes a pack, pack index or loose object, every one it put in place is
   durable (a merged pack is durable before the packs it replaces go).
3. When a change is acknowledged, the branch as durably recorded (its name, and the folders
   above it, included) has at least as many commits as changes acknowledged so far (nothing
   acknowledged is lost).

Files written through a shared writable mapping (`mmap`) count as written when mapped.

Prints each violation and exits 1 when there is one; prints a summary otherwise.
"""
import os
import re
import subprocess
import sys

TRACE, GITDIR, BRANCH, BEFORE, ACK = sys.argv[1:6]
GITDIR = os.path.realpath(GITDIR)
BEFORE = int(BEFORE)
REF = os.path.join(GITDIR, "refs/heads", BRANCH)
OBJECT = re.compile(re.escape(GITDIR) + r"/objects/(pack/pack-[0-9a-f]{40}\.(pack|idx)|[0-9a-f]{2}/[0-9a-f]{38})$")

line_re = re.compile(r"^(\d+)\s+(.*)$")
# Threads that remove packs or objects (merging, compaction): found before the replay.
mergers = set()
with open(TRACE, encoding="utf-8", errors="replace") as t:
    for raw in t:
        m = re.match(r"^(\d+)\s+(?:unlink|unlinkat)\(.*?\"([^\"]+)\"", raw)
        if m and OBJECT.search(m.group(2)):
            mergers.add(m.group(1))
start_re = re.compile(r"^([a-z0-9_]+)\((.*)$")
resumed_re = re.compile(r"^<\.\.\. ([a-z0-9_]+) resumed>(.*)$")
result_re = re.compile(r"\)\s+=\s+(-?\d+|\?)[^=]*$")
quoted_re = re.compile(r'"((?:[^"\\]|\\.)*)"')
fdpath_re = re.compile(r"^-?\d+<([^>]*)>")


def unescape(s):
    return bytes(s, "utf-8").decode("unicode_escape")


class File:
    def __init__(self, preexisting):
        self.epoch = 0            # bumped when a write ends
        self.dirty_epoch = -1 if preexisting else 0
        self.synced_epoch = 0 if preexisting else -1
        self.in_flight = 0
        self.content = b""

    @property
    def durable(self):
        return self.in_flight == 0 and self.dirty_epoch <= self.synced_epoch


class Folder:
    def __init__(self):
        self.epoch = 0
        self.pending = {}         # name -> epoch of the operation that made it
        self.synced = 0           # epochs up to this one are durable

    def add(self, name):
        self.epoch += 1
        self.pending[name] = self.epoch
        return self.epoch


files = {}        # path -> File
folders = {}      # path -> Folder
made_folders = set()
put_by = {}       # thread -> [paths of objects it put in place]
tips = []         # (epoch of the branch's name in refs/heads, file object moved in)
count_cache = {}  # tip -> commits
acks = 0
violations = []
calls = {}        # thread -> (name, args) of a call not yet returned
fsync_snap = {}   # thread -> snapshot taken when its fsync started


def folder(path):
    return folders.setdefault(path, Folder())


def file(path):
    if path not in files:
        files[path] = File(preexisting=True)
    return files[path]


def name_durable(path):
    parent, name = os.path.split(path)
    f = folders.get(parent)
    if f and name in f.pending and f.pending[name] > f.synced:
        return False
    if parent in made_folders:
        return name_durable(parent)
    return True


def durable(path):
    return (path not in files or files[path].durable) and name_durable(path)


def is_dir(path, args):
    return "O_DIRECTORY" in args or os.path.isdir(path)


def durable_commits():
    """Commits on the branch as a crash now would leave it (the last durable move)."""
    refs = folders.get(os.path.dirname(REF))
    best = None
    for epoch, obj in tips:
        if (refs is None or epoch <= refs.synced) and obj.durable and name_durable(os.path.dirname(REF)):
            best = obj
    if best is None:
        return BEFORE
    oid = best.content.decode().strip()
    if oid in count_cache:
        return count_cache[oid]
    out = subprocess.run(["git", "--git-dir", GITDIR, "rev-list", "--count", oid], capture_output=True, text=True)
    if out.returncode != 0:
        violations.append(f"durable tip {oid} is not in the repository: {out.stderr.strip()}")
        return BEFORE
    count_cache[oid] = int(out.stdout)
    return count_cache[oid]


def check_objects(threads, tid, what):
    for t in threads:
        for p in put_by.get(t, []):
            if p in files and not durable(p):
                state = "data" if not files[p].durable else "name"
                violations.append(f"thread {tid}: {what} while {os.path.relpath(p, GITDIR)} ({state}, put by thread {t}) is not durable")


def on_start(tid, name, args):
    global acks
    if name in ("fsync", "fdatasync"):
        m = fdpath_re.match(args)
        if m:
            p = m.group(1).replace(" (deleted)", "")
            if is_dir(p, ""):
                fsync_snap[tid] = ("dir", p, folder(p).epoch)
            elif p in files:
                fsync_snap[tid] = ("file", p, files[p].epoch)
    elif name == "syncfs":
        fsync_snap[tid] = ("all", {p: f.epoch for p, f in files.items()}, {p: d.epoch for p, d in folders.items()})
    elif name in ("sendmsg", "sendto"):
        if ACK == "http201" and "HTTP/1.1 201" in args:
            acks += 1
            check_acks(f"201 answer {acks}")
    elif name in ("write", "pwrite64", "writev", "pwritev", "ftruncate", "fallocate"):
        m = fdpath_re.match(args)
        if m:
            p = m.group(1)
            if ACK == "stdout" and args.startswith("1<") and name in ("write", "writev"):
                acks += 1
                check_acks(f"stdout write {acks}")
            elif ACK == "http201" and ("socket:" in p or "TCP" in p) and "HTTP/1.1 201" in args:
                acks += 1
                check_acks(f"201 answer {acks}")
            elif p.startswith("/") and not p.endswith("(deleted)"):
                file(p).in_flight += 1
    elif name in ("rename", "renameat", "renameat2", "link", "linkat"):
        # libgit2 creates a new branch by linking its lock file to the branch's name.
        q = [unescape(s) for s in quoted_re.findall(args)]
        if len(q) >= 2 and REF in (q[0], q[1]):
            src = q[0] if q[1] == REF else q[1]
            if src.endswith(".lock") and os.path.basename(src).startswith(BRANCH):
                if not file(src).durable:
                    violations.append(f"thread {tid}: the branch moved to a value not yet durable ({os.path.relpath(src, GITDIR)})")
                check_objects([t for t in put_by if t not in mergers], tid, "the branch moved")
                for p in (os.path.join(GITDIR, "HEAD"), os.path.join(GITDIR, "config")):
                    if not durable(p):
                        violations.append(f"thread {tid}: the branch moved while {os.path.relpath(p, GITDIR)} is not durable")
    elif name in ("unlink", "unlinkat"):
        q = [unescape(s) for s in quoted_re.findall(args)]
        if q and OBJECT.search(q[0]):
            check_objects([tid], tid, f"removed {os.path.relpath(q[0], GITDIR)}")
    elif name == "mmap":
        m = re.search(r"PROT_WRITE.*MAP_SHARED.*?, (-?\d+)<([^>]*)>", args)
        if m and m.group(2) in files:
            f = files[m.group(2)]; f.epoch += 1; f.dirty_epoch = f.epoch


def check_acks(what):
    n = durable_commits() - BEFORE
    if acks > n:
        violations.append(f"{what}: {acks} change(s) acknowledged, {n} commit(s) durable")


def on_end(tid, name, args, result):
    ok = result not in ("?",) and not result.startswith("-")
    if name in ("openat", "open", "creat"):
        q = [unescape(s) for s in quoted_re.findall(args)]
        if ok and q and ("O_CREAT" in args or name == "creat"):
            p = q[0]
            if p not in files:
                files[p] = File(preexisting=False)
                files[p].synced_epoch = 0
                files[p].dirty_epoch = 0
                folder(os.path.dirname(p)).add(os.path.basename(p))
            elif "O_TRUNC" in args:
                f = files[p]; f.epoch += 1; f.dirty_epoch = f.epoch
    elif name in ("write", "pwrite64", "writev", "pwritev", "ftruncate", "fallocate"):
        m = fdpath_re.match(args)
        if m:
            p = m.group(1)
            if p.startswith("/") and not p.endswith("(deleted)") and p in files and files[p].in_flight > 0:
                f = files[p]
                f.in_flight -= 1
                f.epoch += 1
                f.dirty_epoch = f.epoch
                if name in ("write", "pwrite64") and ok:
                    data = quoted_re.search(args)
                    if data:
                        f.content = unescape(data.group(1)).encode("latin-1")
    elif name in ("fsync", "fdatasync"):
        snap = fsync_snap.pop(tid, None)
        if ok and snap:
            kind, p, epoch = snap
            if kind == "dir":
                d = folder(p)
                d.synced = max(d.synced, epoch)
            elif p in files:
                f = files[p]
                f.synced_epoch = max(f.synced_epoch, epoch)
    elif name == "syncfs":
        snap = fsync_snap.pop(tid, None)
        if ok and snap:
            _, fe, de = snap
            for p, e in fe.items():
                if p in files: files[p].synced_epoch = max(files[p].synced_epoch, e)
            for p, e in de.items():
                folders[p].synced = max(folders[p].synced, e)
    elif name in ("rename", "renameat", "renameat2", "link", "linkat"):
        q = [unescape(s) for s in quoted_re.findall(args)]
        if not ok or len(q) < 2:
            return
        a, b = q[0], q[1]
        if name.startswith("link"):
            files[b] = file(a)
        elif "RENAME_EXCHANGE" in args:
            fa, fb = file(a), file(b)
            files[a], files[b] = fb, fa
            epoch_a = folder(os.path.dirname(a)).add(os.path.basename(a))
            if a == REF:
                tips.append((epoch_a, files[a]))
        else:
            files[b] = file(a)
            files.pop(a, None)
        epoch = folder(os.path.dirname(b)).add(os.path.basename(b))
        if OBJECT.search(b):
            put_by.setdefault(tid, []).append(b)
        if b == REF:
            tips.append((epoch, files[b]))
    elif name in ("unlink", "unlinkat"):
        q = [unescape(s) for s in quoted_re.findall(args)]
        if ok and q:
            files.pop(q[0], None)
    elif name in ("mkdir", "mkdirat"):
        q = [unescape(s) for s in quoted_re.findall(args)]
        if ok and q:
            p = q[0].rstrip("/")
            made_folders.add(p)
            folder(os.path.dirname(p)).add(os.path.basename(p))


calls_seen = 0
with open(TRACE, encoding="utf-8", errors="replace") as trace:
    for raw in trace:
        m = line_re.match(raw.rstrip("\n"))
        if not m:
            continue
        tid, rest = m.group(1), m.group(2)
        r = resumed_re.match(rest)
        if r:
            name, args0 = calls.pop(tid, (r.group(1), ""))
            args = args0 + r.group(2)
            res = result_re.search(r.group(2))
            on_end(tid, name, args, res.group(1) if res else "?")
            continue
        s = start_re.match(rest)
        if not s:
            continue
        name, args = s.group(1), s.group(2)
        calls_seen += 1
        on_start(tid, name, args)
        if args.endswith("<unfinished ...>"):
            calls[tid] = (name, args[: -len("<unfinished ...>")])
        else:
            res = result_re.search(args)
            on_end(tid, name, args, res.group(1) if res else "?")

moves = len(tips)
puts = sum(len(v) for v in put_by.values())
for v in dict.fromkeys(violations):
    print("VIOLATION:", v)
print(f"{calls_seen} calls, {moves} branch moves, {puts} objects put in place, {acks} acknowledgements, {len(dict.fromkeys(violations))} violations")
sys.exit(1 if violations else 0)
