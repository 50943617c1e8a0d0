"""Retrieval quality on long conversations: LoCoMo's questions against Engram's search and
context, beside two baselines computed outside Engram on the same turns.

    make bench-quality FILE=path/to/locomo10.json          # every conversation of the file
    python bench/quality.py path/to/locomo10.json --conversations 1 --no-write

The data is not in this repository: LoCoMo (Maharana et al., ACL 2024) is CC BY-NC 4.0;
get ``data/locomo10.json`` from the snap-research/LoCoMo repository on GitHub and pass its
path (any file of the same format, such as a subset of its conversations, will do).

Starts embedded servers, one API and one worker process (or uses ``--url`` and
``--admin-key``). For each conversation it makes a user and a key, one Engram session per
LoCoMo session, and stores every turn as a message (``"wait": true``). Then, for every
question, it searches the user's memories (``k`` 10) in ``vector`` and in ``hybrid`` mode
and asks for a context of 1,000 tokens. With the stack stopped, it ranks the same texts
in this process by exact cosine over all-MiniLM-L6-v2 vectors and by BM25. Reports recall@5,
recall@10 and MRR of the evidence turns, and the share of questions whose every evidence
turn is in the context, overall and by category; writes docs/benchmarks-quality.json and a
section of docs/benchmarks.md.

Evidence ids are normalised: ``D:11:26`` is read as ``D11:26``, ``D30:05`` as ``D30:5``, and
``D8:6; D9:17`` as two ids; an id that names no turn of its conversation (or ``D`` alone) is
dropped, and a question left without evidence is left out. The counts are reported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bm25s
import httpx
import numpy as np
from sections import write_section
from soak import free_port, start_stack, stop_stack

from models.embedding.local import LocalEmbedder
from models.embedding.spaces import MINILM_384
from models.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
K = 10
CONTEXT_TOKENS = 1000
BM25_K1, BM25_B = 1.5, 0.75
# the categories as the dataset numbers them (its paper lists them in another order)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
# --sweep: the defaults' neighbours, each measured alone on the same stored conversations
SWEEP: dict[str, tuple[str, dict[str, Any]]] = {
    "hybrid, fusion by scores": ("search", {"mode": "hybrid"}),
    **{f"hybrid, fusion by ranks, k {k}": ("search", {"mode": "hybrid",
                                                      "fusion": {"method": "ranks", "k": k}})
       for k in (5, 60)},
    "hybrid, fusion by scores, text weight 2": ("search", {"mode": "hybrid",
                                                           "fusion": {"text": 2}}),
    "hybrid, fusion by scores, vector weight 2": ("search", {"mode": "hybrid",
                                                             "fusion": {"vector": 2}}),
    **{f"hybrid, nearby turns' lift {t}": ("search", {"mode": "hybrid", "fusion": {"turns": t}})
       for t in (0.0, 0.1, 0.5)},
    **{f"hybrid, reach {r}": ("search", {"mode": "hybrid", "fusion": {"reach": r}})
       for r in (1, 6)},
    "context, fusion by ranks": ("context", {"fusion": {"method": "ranks"}}),
    "context, nearby turns' lift 0.0": ("context", {"fusion": {"turns": 0.0}}),
    **{f"context, reach {r}": ("context", {"fusion": {"reach": r}}) for r in (1, 6)},
    **{f"context, neighbors {n}": ("context", {"neighbors": n}) for n in (0, 1, 2)},
    **{f"context, floor {f}": ("context", {"floor": f}) for f in (0.0, 0.25, 0.5)},
}  # fmt: skip
SCORED = (1, 2, 3, 4)  # category 5 asks about things never said: reported on its own
MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august",
               "september", "october", "november", "december")  # fmt: skip
MONTHS = {name: n for n, name in enumerate(MONTH_NAMES, start=1)}
LOCOMO_TIME = re.compile(r"(\d{1,2}):(\d{2})\s*([ap]m)\s+on\s+(\d{1,2})\s+([a-z]+),?\s+(\d{4})")
EVIDENCE_ID = re.compile(r"D:?0*(\d+):0*(\d+)")
ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:@-]")
WORD = re.compile(r"\w+")


# -- the data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    dia_id: str
    session: int
    speaker: str
    content: str
    occurred_at: datetime


@dataclass(frozen=True)
class Question:
    text: str
    category: int
    evidence: frozenset[str]


@dataclass
class Conversation:
    sample_id: str
    sessions: dict[int, list[Turn]]
    questions: list[Question]

    def turns(self) -> dict[str, Turn]:
        return {t.dia_id: t for turns in self.sessions.values() for t in turns}


Memories = dict[str, frozenset[str]]  # a memory's id -> the turns it stands for
Texts = dict[str, str]  # a memory's id -> its content as Engram stores it


@dataclass(frozen=True)
class Stored:
    """What Engram made of a conversation: its memories, with the turns each stands for
    and what each says."""

    turns: Memories
    texts: Texts


@dataclass
class EvidenceCounts:
    """What normalising the evidence ids did, over every question read."""

    ids_read: int = 0
    ids_rewritten: int = 0  # reformatted or split into several
    ids_dropped_malformed: int = 0
    ids_dropped_missing: int = 0  # well-formed, but no such turn
    questions_without_evidence: int = 0  # left out


def parse_locomo_time(text: str) -> datetime:
    """``"1:56 pm on 8 May, 2023"`` as a UTC datetime (the data has no time zones)."""
    found = LOCOMO_TIME.fullmatch(text.strip().lower())
    if not found or found[5] not in MONTHS:
        raise ValueError(f"not a LoCoMo date and time: {text!r}")
    hour, minute, half, day, month, year = found.groups()
    hour24 = int(hour) % 12 + (12 if half == "pm" else 0)
    return datetime(int(year), MONTHS[month], int(day), hour24, int(minute), tzinfo=UTC)


def normalise_evidence(raw: str) -> tuple[list[str], int]:
    """The well-formed ids ``raw`` stands for, and how many of its parts were malformed."""
    ids, malformed = [], 0
    for part in filter(None, re.split(r"[;,\s]+", raw)):
        found = EVIDENCE_ID.fullmatch(part)
        if found:
            ids.append(f"D{int(found[1])}:{int(found[2])}")
        else:
            malformed += 1
    return ids, malformed


def question_evidence(
    raw: Iterable[str], turns: set[str], counts: EvidenceCounts
) -> frozenset[str]:
    """The turns a question's evidence names, counting what was rewritten or dropped."""
    kept: set[str] = set()
    for entry in raw:
        counts.ids_read += 1
        ids, malformed = normalise_evidence(entry)
        counts.ids_dropped_malformed += malformed
        counts.ids_rewritten += ids != [entry]
        counts.ids_dropped_missing += sum(i not in turns for i in ids)
        kept.update(i for i in ids if i in turns)
    return frozenset(kept)


def turn_content(turn: dict[str, Any]) -> str:
    """The turn's text, with the photo it shares described as LoCoMo's captions do."""
    caption = turn.get("blip_caption")
    return f"{turn['text']} [shares {caption}]" if caption else str(turn["text"])


def read_conversation(sample: dict[str, Any], counts: EvidenceCounts) -> Conversation:
    talk = sample["conversation"]
    sessions: dict[int, list[Turn]] = {}
    for key, raw_turns in talk.items():
        if not (numbered := re.fullmatch(r"session_(\d+)", key)):
            continue
        n = int(numbered[1])
        started = parse_locomo_time(talk[f"session_{n}_date_time"])
        sessions[n] = [
            Turn(t["dia_id"], n, t["speaker"], turn_content(t), started + timedelta(seconds=i))
            for i, t in enumerate(raw_turns)
        ]
    conversation = Conversation(sample["sample_id"], dict(sorted(sessions.items())), [])
    ids = set(conversation.turns())
    for qa in sample["qa"]:
        evidence = question_evidence(qa.get("evidence", []), ids, counts)
        if not evidence:
            counts.questions_without_evidence += 1
            continue
        conversation.questions.append(Question(qa["question"], int(qa["category"]), evidence))
    return conversation


def load_conversations(path: Path, limit: int | None) -> tuple[list[Conversation], EvidenceCounts]:
    counts = EvidenceCounts()
    samples = json.loads(path.read_bytes())[:limit]
    return [read_conversation(sample, counts) for sample in samples], counts


def remembered(conversation: Conversation, memory_of: dict[str, str]) -> Memories:
    """Each memory, in the order said, with the turns it stands for (several, should Engram
    keep one memory of turns with the same text)."""
    grouped: dict[str, set[str]] = defaultdict(set)
    for dia_id in conversation.turns():
        grouped[memory_of[dia_id]].add(dia_id)
    return {memory: frozenset(ids) for memory, ids in grouped.items()}


# -- the measures -----------------------------------------------------------------------


def recall_at(ranked: Sequence[frozenset[str]], evidence: frozenset[str], k: int) -> float:
    """The share of the evidence turns that the first ``k`` results stand for."""
    found = set().union(*ranked[:k]) & evidence
    return len(found) / len(evidence)


def reciprocal_rank(ranked: Sequence[frozenset[str]], evidence: frozenset[str]) -> float:
    """1 / the rank of the first result that stands for an evidence turn; 0 if none does."""
    return next((1 / rank for rank, turns in enumerate(ranked, 1) if turns & evidence), 0.0)


def flat(text: str) -> str:
    return " ".join(text.split())


def in_context(context: str, evidence: Iterable[str], turns: dict[str, Turn]) -> bool:
    """Whether the text of every evidence turn is inside ``context``."""
    packed = flat(context)
    return all(flat(turns[i].content) in packed for i in evidence)


@dataclass
class Scores:
    """One system's figures for one question each."""

    recall5: list[float] = field(default_factory=list)
    recall10: list[float] = field(default_factory=list)
    rr: list[float] = field(default_factory=list)
    covered: list[bool] = field(default_factory=list)

    def add_ranking(self, ranked: Sequence[frozenset[str]], evidence: frozenset[str]) -> None:
        self.recall5.append(recall_at(ranked, evidence, 5))
        self.recall10.append(recall_at(ranked, evidence, 10))
        self.rr.append(reciprocal_rank(ranked, evidence))

    def extend(self, other: Scores) -> None:
        self.recall5 += other.recall5
        self.recall10 += other.recall10
        self.rr += other.rr
        self.covered += other.covered

    def summary(self) -> dict[str, float | int | None]:
        def mean(values: Sequence[float]) -> float | None:
            return round(statistics.fmean(values), 4) if values else None

        return {
            "questions": max(len(self.rr), len(self.covered)),
            "recall@5": mean(self.recall5),
            "recall@10": mean(self.recall10),
            "mrr": mean(self.rr),
            "context_coverage": mean([float(c) for c in self.covered]),
        }


SYSTEMS = ("engram-vector", "engram-hybrid", "engram-context", "minilm-exact", "bm25")
Tally = dict[str, dict[int, Scores]]  # system -> category -> scores
Tallies = dict[str, Tally]  # conversation -> its tally


def new_tally() -> Tally:
    return {system: defaultdict(Scores) for system in SYSTEMS}


def merged(tallies: Tallies) -> Tally:
    """Every conversation's scores together."""
    out = new_tally()
    for tally in tallies.values():
        for system, by_category in tally.items():
            for category, scores in by_category.items():
                out[system][category].extend(scores)
    return out


def by_conversation(tallies: Tallies) -> dict[str, dict[str, Any]]:
    """Each conversation's overall figures, by system."""
    return {
        sample_id: {system: figures["overall"] for system, figures in summarise(t).items()}
        for sample_id, t in tallies.items()
    }


def summarise(tally: Tally) -> dict[str, dict[str, Any]]:
    """Each system's figures over the scored categories, and by category."""
    out: dict[str, dict[str, Any]] = {}
    for system, by_category in tally.items():
        overall = Scores()
        for category in SCORED:
            overall.extend(by_category.get(category, Scores()))
        out[system] = {
            "overall": overall.summary(),
            "by_category": {str(c): by_category[c].summary() for c in sorted(by_category)},
        }
    return out


# -- Engram -----------------------------------------------------------------------------


class Engram:
    """The few calls the benchmark makes, on one HTTP client."""

    def __init__(self, url: str, admin_key: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=300)
        self.admin = {"Authorization": f"Bearer {admin_key}"}
        self.answered_in = 0.0  # seconds: the round trip of the last call's answering request

    def call(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        while True:
            started = time.perf_counter()
            answer = self.http.request(method, path, json=body, headers=headers)
            self.answered_in = time.perf_counter() - started
            if answer.status_code != 429:  # a limit is not what is measured: wait it out
                break
            time.sleep(float(answer.headers.get("Retry-After", "1")))
        if answer.status_code >= 400:
            raise SystemExit(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json() if answer.content else None

    def new_user(self, user: str) -> dict[str, str]:
        """A key for ``user``, erased first so that a stack given by URL can run again."""
        self.call("DELETE", f"/v1/users/{user}", self.admin)
        key = self.call("POST", "/v1/keys", self.admin, {"user_id": user})["key"]
        return {"Authorization": f"Bearer {key}"}

    def settled_texts(self, user: str, headers: dict[str, str], ids: Iterable[str]) -> Texts:
        """The memories' texts as stored, once each is embedded; a failed one ends the run,
        since what it would have found would count as missed."""
        texts = {}
        for memory_id in ids:
            path = f"/v1/users/{user}/memories/{memory_id}"
            while (memory := self.call("GET", path, headers))["status"] == "pending":
                time.sleep(0.5)
            if memory["status"] == "failed":
                raise SystemExit(f"memory {memory_id} of {user} failed: {memory['error']}")
            texts[memory_id] = memory["content"]
        return texts

    def close(self) -> None:
        self.http.close()


def safe_id(text: str) -> str:
    """``text`` as an id Engram takes (``[A-Za-z0-9._:@-]``)."""
    return ID_UNSAFE.sub("-", text)


def message_body(conversation: Conversation, turn: Turn) -> dict[str, Any]:
    """A turn as a message: who said it, when, and an id of its own that names the turn."""
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"locomo:{conversation.sample_id}:{turn.dia_id}")),
        "role": "user",  # both speakers are people; the name tells them apart
        "name": turn.speaker,
        "content": turn.content,
        "occurred_at": turn.occurred_at.isoformat(),
        "metadata": {"dia_id": turn.dia_id},
    }


def store(engram: Engram, user: str, headers: dict[str, str], conversation: Conversation) -> Stored:
    """Every turn as a message of its session; what Engram made of them."""
    memory_of: dict[str, str] = {}
    texts: Texts = {}
    for n, turns in conversation.sessions.items():
        session = f"session-{n}"
        title = f"{conversation.sample_id} session {n}"
        started = turns[0].occurred_at.isoformat()
        engram.call("POST", f"/v1/users/{user}/sessions", headers,
                    {"id": session, "title": title, "started_at": started})  # fmt: skip
        answer = engram.call(
            "POST",
            f"/v1/users/{user}/sessions/{session}/messages",
            headers,
            {"messages": [message_body(conversation, t) for t in turns], "wait": True},
        )
        messages = answer["messages"]
        texts |= engram.settled_texts(user, headers, {m["memory_id"] for m in messages})
        for turn, message in zip(turns, messages, strict=True):
            memory_of[turn.dia_id] = message["memory_id"]
    return Stored(remembered(conversation, memory_of), texts)


def ask_engram(
    engram: Engram,
    user: str,
    headers: dict[str, str],
    conversation: Conversation,
    memories: Memories,
    tally: Tally,
    took_ms: dict[str, list[float]],
) -> None:
    """Every question through search in both modes and through context."""
    turns = conversation.turns()
    for question in conversation.questions:
        for mode in ("vector", "hybrid"):
            body = {"query": question.text, "k": K, "mode": mode, "types": ["memory"]}
            answer = engram.call("POST", f"/v1/users/{user}/search", headers, body)
            took_ms[mode].append(answer["took_ms"])
            ranked = [memories[hit["id"]] for hit in answer["results"]]
            tally[f"engram-{mode}"][question.category].add_ranking(ranked, question.evidence)
        context = engram.call("POST", f"/v1/users/{user}/context", headers,
                              {"query": question.text, "max_tokens": CONTEXT_TOKENS})  # fmt: skip
        took_ms["context (client)"].append(engram.answered_in * 1000)
        covered = in_context(context["text"], question.evidence, turns)
        tally["engram-context"][question.category].covered.append(covered)


def sweep_engram(
    engram: Engram,
    user: str,
    headers: dict[str, str],
    conversation: Conversation,
    memories: Memories,
    swept: dict[str, list[float]],
) -> None:
    """Every scored question again under each setting of ``SWEEP``: recall@10 of a search,
    coverage of a context."""
    turns = conversation.turns()
    for question in conversation.questions:
        if question.category not in SCORED:
            continue
        for name, (what, options) in SWEEP.items():
            if what == "search":
                body = {"query": question.text, "k": K, "types": ["memory"], **options}
                answer = engram.call("POST", f"/v1/users/{user}/search", headers, body)
                ranked = [memories[hit["id"]] for hit in answer["results"]]
                swept[name].append(recall_at(ranked, question.evidence, K))
            else:
                body = {"query": question.text, "max_tokens": CONTEXT_TOKENS, **options}
                context = engram.call("POST", f"/v1/users/{user}/context", headers, body)
                swept[name].append(float(in_context(context["text"], question.evidence, turns)))


def led_by_name(conversation: Conversation, stored: Stored) -> int:
    """How many memories say ``Speaker: text``: Engram's own way of remembering a turn."""
    turns = conversation.turns()
    return sum(
        stored.texts[memory].startswith(f"{turns[min(ids)].speaker}: ")
        for memory, ids in stored.turns.items()
    )


def run_engram(
    url: str, admin_key: str, conversations: list[Conversation], tallies: Tallies, *, sweep: bool
) -> tuple[dict[str, Any], dict[str, Stored]]:
    """Stores and asks every conversation: the time and latencies seen, and what Engram
    made of each conversation."""
    engram = Engram(url, admin_key)
    took_ms: dict[str, list[float]] = defaultdict(list)
    swept: dict[str, dict[str, list[float]]] = {}  # by conversation, by setting
    stored: dict[str, Stored] = {}
    started = time.perf_counter()
    try:
        for conversation in conversations:
            user = f"locomo-{safe_id(conversation.sample_id)}"
            headers = engram.new_user(user)
            stored[conversation.sample_id] = made = store(engram, user, headers, conversation)
            print(f"{conversation.sample_id}: {len(made.turns)} memories stored", flush=True)
            tally = tallies.setdefault(conversation.sample_id, new_tally())
            ask_engram(engram, user, headers, conversation, made.turns, tally, took_ms)
            if sweep:
                own = swept.setdefault(conversation.sample_id, defaultdict(list))
                sweep_engram(engram, user, headers, conversation, made.turns, own)
    finally:
        engram.close()
    figures = {
        "memories": sum(len(made.turns) for made in stored.values()),
        "memories_led_by_name": sum(
            led_by_name(c, stored[c.sample_id]) for c in conversations if c.sample_id in stored
        ),
        "seconds": round(time.perf_counter() - started, 1),
        "median_ms": {name: round(statistics.median(v), 2) for name, v in took_ms.items()},
    }
    if swept:
        by_conversation = {
            conversation: {name: [sum(v), len(v)] for name, v in by_setting.items()}
            for conversation, by_setting in swept.items()
        }
        figures["sweep"] = {name: round(v, 4) for name, v in pooled(by_conversation).items()}
        figures["sweep_by_conversation"] = by_conversation
    return figures, stored


# -- the baselines ----------------------------------------------------------------------


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def bm25_rankings(texts: list[str], queries: list[str]) -> list[list[int]]:
    """The best ``K`` of ``texts`` for each query by BM25 (ties in the texts' order)."""
    index = bm25s.BM25(k1=BM25_K1, b=BM25_B)  # Lucene's idf, bm25s's default
    index.index([words(t) for t in texts], show_progress=False)
    return [np.argsort(-index.get_scores(words(q)), kind="stable")[:K].tolist() for q in queries]


def cosine_rankings(
    embedder: LocalEmbedder, texts: list[str], queries: list[str]
) -> list[list[int]]:
    """The best ``K`` of ``texts`` for each query by exact cosine (vectors are unit length)."""
    scores = embedder.encode(queries) @ embedder.encode(texts).T
    return [np.argsort(-row, kind="stable")[:K].tolist() for row in scores]


def run_baselines(
    conversations: list[Conversation], stored: dict[str, Stored], tallies: Tallies
) -> None:
    """Ranks the texts of the memories Engram made, as it stores them, each conversation's
    on their own."""
    embedder = LocalEmbedder(MINILM_384, Settings.from_env().encoder)
    embedder.load()
    for conversation in conversations:
        made = stored[conversation.sample_id]
        ids = list(made.turns)
        units, texts = [made.turns[m] for m in ids], [made.texts[m] for m in ids]
        queries = [q.text for q in conversation.questions]
        tally = tallies.setdefault(conversation.sample_id, new_tally())
        for system, rankings in (
            ("minilm-exact", cosine_rankings(embedder, texts, queries)),
            ("bm25", bm25_rankings(texts, queries)),
        ):
            for question, ranking in zip(conversation.questions, rankings, strict=True):
                ranked = [units[i] for i in ranking]
                tally[system][question.category].add_ranking(ranked, question.evidence)


# -- the report -------------------------------------------------------------------------


def figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


LABELS = {
    "engram-vector": "Engram search, `vector`",
    "engram-hybrid": "Engram search, `hybrid`",
    "engram-context": f"Engram context, {CONTEXT_TOKENS:,} tokens",
    "minilm-exact": "baseline: MiniLM, exact cosine",
    "bm25": "baseline: BM25",
}


def overall_table(results: dict[str, dict[str, Any]]) -> str:
    rows = []
    for system in SYSTEMS:
        o = results[system]["overall"]
        rows.append(f"| {LABELS[system]} | {figure(o['recall@5'])} | {figure(o['recall@10'])} | "
                    f"{figure(o['mrr'])} | {figure(o['context_coverage'])} |")  # fmt: skip
    head = "| | recall@5 | recall@10 | MRR | context coverage |\n| --- | --- | --- | --- | --- |"
    return "\n".join([head, *rows])


def category_table(results: dict[str, dict[str, Any]], questions: dict[int, int]) -> str:
    ranked = ("engram-vector", "engram-hybrid", "minilm-exact", "bm25")
    head = ("| category | questions | recall@10: vector | hybrid | MiniLM | BM25 "
            "| MRR: vector | hybrid | MiniLM | BM25 | context coverage |\n"
            "| --- |" + " --- |" * 10)  # fmt: skip
    rows = []
    for category in sorted(questions):
        by = {s: results[s]["by_category"].get(str(category), {}) for s in SYSTEMS}
        cells = [figure(by[s].get("recall@10")) for s in ranked]
        cells += [figure(by[s].get("mrr")) for s in ranked]
        cells.append(figure(by["engram-context"].get("context_coverage")))
        label = f"{category} {CATEGORIES.get(category, '')}".strip()
        if category not in SCORED:
            label += " (not in the overall figures)"
        rows.append(f"| {label} | {questions[category]} | " + " | ".join(cells) + " |")
    return "\n".join([head, *rows])


def setting(result: dict[str, Any]) -> str:
    data, engram = result["data"], result["engram"]
    return (
        f"From `make bench-quality FILE=...` (`bench/quality.py`, {result['date']}) on "
        f"`{data['file']}` (sha256 `{data['sha256'][:12]}…`): {data['conversations']} "
        f"conversation{'s' * (data['conversations'] != 1)} of LoCoMo (Maharana et al., ACL "
        "2024; CC BY-NC 4.0, so not in this repository: `data/locomo10.json` of the "
        "snap-research/LoCoMo repository has all ten), "
        f"{data['turns']:,} turns in {data['sessions']} sessions, {data['questions_scored']:,} "
        f"questions of categories 1 to 4 and {data['questions_adversarial']} of category 5. "
        "Each conversation is one user, each LoCoMo session an Engram session, each turn a "
        "message: its text, with `[shares <caption>]` for a shared photo, its speaker as `name`, "
        "and as `occurred_at` its session's date and time plus one second a turn. They are "
        f"remembered as {engram['memories']:,} memories, {engram['memories_led_by_name']:,} of "
        "them led by the speaker's name (`Caroline: text`, as Engram remembers a named "
        "message); a result stands for every turn its memory holds. One API and one worker "
        f"process (the `{result['backend']}` encoder backend) on embedded PostgreSQL and "
        f"Redis, on the shared {result['machine']} machine."
    )


def method(result: dict[str, Any]) -> str:
    return (
        f'For each question: a search with `k` {K} and `types: ["memory"]`, in `vector` and '
        f"in `hybrid` mode, and a context of `max_tokens` {CONTEXT_TOKENS:,} without a session, "
        "so what the user's memory holds on the question and nothing recent, the service's "
        "defaults for the rest (docs/api.md, Context for the next prompt). Recall@k is the "
        "share of a question's evidence turns among the first k results, MRR the reciprocal "
        "rank of the first result that holds an evidence turn, both averaged over the "
        "questions; context coverage is the share of questions whose every evidence turn's "
        "text is inside the context's `text`. The baselines rank the very same texts (the "
        "memories' as Engram stores them, read back through the API) outside Engram, in this "
        "process: all-MiniLM-L6-v2 (the same model and backend) by exact "
        f"cosine, and BM25 (`bm25s` {result['bm25']['version']}, k1 {BM25_K1}, b {BM25_B}, "
        "Lucene's idf; lowercase `\\w+` word tokens, no stemming, no stop words)."
    )


def evidence_note(ev: dict[str, int]) -> str:
    return (
        f"Evidence ids: {ev['ids_read']:,} read, {ev['ids_rewritten']} rewritten (by the rule "
        "that reads `D:11:26` as `D11:26`, `D30:05` as `D30:5` and `D8:6; D9:17` as two ids), "
        f"{ev['ids_dropped_malformed']} dropped as malformed (such as `D` alone), "
        f"{ev['ids_dropped_missing']} dropped for naming no turn of its conversation; "
        f"{ev['questions_without_evidence']} questions left with no evidence are left out. "
        "Categories are numbered as in the data: 1 multi-hop, 2 temporal, 3 open-domain, "
        "4 single-hop, 5 adversarial. An adversarial question pins on one speaker what the "
        "other said, and its evidence is the turn where it was said: finding that turn is not "
        "answering the question, so category 5 is shown on its own and is not in the overall "
        "figures."
    )


def conversation_table(by_conversation: dict[str, dict[str, Any]]) -> str:
    """Each conversation's overall figures: how far apart conversations are."""
    head = ("| conversation | questions | recall@10: vector | hybrid | BM25 | context coverage |\n"
            "| --- |" + " --- |" * 5)  # fmt: skip
    rows = []
    for sample_id, systems in by_conversation.items():
        cells = [
            figure(systems[s]["recall@10"]) for s in ("engram-vector", "engram-hybrid", "bm25")
        ]
        cells.append(figure(systems["engram-context"]["context_coverage"]))
        questions = systems["engram-hybrid"]["questions"]
        rows.append(f"| {sample_id} | {questions} | " + " | ".join(cells) + " |")
    return "\n".join([head, *rows])


def agreement(systems: dict[str, dict[str, Any]]) -> str:
    """Whether Engram's vector search ranked as the exact baseline did: it should, since
    users of this size are searched exactly."""
    keys = ("recall@5", "recall@10", "mrr")
    ours, exact = systems["engram-vector"]["overall"], systems["minilm-exact"]["overall"]
    if all(ours[k] == exact[k] for k in keys):
        return (
            "Engram's `vector` search and the exact MiniLM baseline agree on every overall "
            "figure: users of this size are searched exactly, over vectors of the same model."
        )
    return (
        "Engram's `vector` search and the exact MiniLM baseline differ (recall@10 "
        f"{figure(ours['recall@10'])} against {figure(exact['recall@10'])}), though users of "
        "this size are searched exactly, over vectors of the same model."
    )


def sweep_table(swept: dict[str, float] | None) -> list[str]:
    """The defaults beside their neighbours (``--sweep``), if measured."""
    if not swept:
        return []
    rows = [f"| {name} | {value:.3f} |" for name, value in swept.items()]
    return [
        "The service's defaults beside their neighbours, each changed alone on the same stored "
        "conversations (categories 1 to 4; `make bench-quality ... SWEEP=1`): recall@10 for "
        "search, coverage for context. Defaults: fusion by scores (weights 1 and 1), "
        "nearby turns' lift 0.2, reach 3, neighbors 1, floor 0.25.",
        "\n".join(["| setting | figure |\n| --- | --- |", *rows]),
    ]


# the default of each kind of setting the sweep varies
SWEPT_DEFAULTS = {"hybrid": "hybrid, fusion by scores", "context": "context, floor 0.25"}


def held_out(
    by_conversation: dict[str, dict[str, list[float]]], kind: str
) -> list[tuple[str, str, float, float]]:
    """For each conversation, the setting of ``kind`` ("hybrid" or "context") that does
    best over the other conversations' questions: (conversation, that setting, its figure
    on this conversation, the default's figure on it). A default chosen by the sweep that
    a held-out conversation would not have chosen is one fitted to these conversations."""
    rows = []
    for conversation, own in by_conversation.items():
        others = pooled(by_conversation, leave_out=conversation)
        # the default first, so that a tie keeps it
        names = sorted(
            (n for n in others if n.startswith(kind + ",")), key=lambda n: n != SWEPT_DEFAULTS[kind]
        )
        chosen = max(names, key=others.__getitem__)
        here = pooled({conversation: own})
        rows.append((conversation, chosen, here[chosen], here[SWEPT_DEFAULTS[kind]]))
    return rows


def pooled(
    by_conversation: dict[str, dict[str, list[float]]], leave_out: str | None = None
) -> dict[str, float]:
    """Each setting's mean over the questions of every conversation but ``leave_out``, from
    each conversation's [sum of figures, questions]."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for conversation, settings in by_conversation.items():
        if conversation != leave_out:
            for name, (total, count) in settings.items():
                totals[name][0] += total
                totals[name][1] += count
    return {name: total / count for name, (total, count) in totals.items()}


def held_out_table(by_conversation: dict[str, dict[str, list[float]]] | None) -> list[str]:
    """The settings each conversation's neighbours would choose (``--sweep``), if measured."""
    if not by_conversation or len(by_conversation) < 2:
        return []
    rows, means = [], []
    for kind, what in (("hybrid", "recall@10"), ("context", "coverage")):
        chosen_total = default_total = questions = 0.0
        for conversation, chosen, figure_here, default in held_out(by_conversation, kind):
            rows.append(
                f"| {conversation} | {what} | {chosen} | {figure_here:.3f} | {default:.3f} |"
            )
            count = by_conversation[conversation][SWEPT_DEFAULTS[kind]][1]
            chosen_total += figure_here * count
            default_total += default * count
            questions += count
        means.append(
            f"{what} {chosen_total / questions:.3f} with the settings chosen on the others "
            f"against {default_total / questions:.3f} with the defaults"
        )
    return [
        "Each conversation held out in turn: the setting of the sweep that does best on the "
        "other conversations' questions, and its figure on the one held out beside the "
        "default's (a default that the held-out conversations would not choose would be "
        f"fitted to these conversations). Over all questions: {'; '.join(means)}.",
        "\n".join(
            [
                "| held out | figure | chosen on the others | its figure | the default's |",
                "| --- | --- | --- | --- | --- |",
                *rows,
            ]
        ),
    ]


def write_docs(result: dict[str, Any]) -> None:
    """docs/benchmarks-quality.json, and the section of docs/benchmarks.md before stall's."""
    (DOCS / "benchmarks-quality.json").write_text(json.dumps(result, indent=2) + "\n")
    questions = {int(c): n for c, n in result["data"]["questions_by_category"].items()}
    latency = ", ".join(f"{name} {ms:.1f} ms" for name, ms in result["engram"]["median_ms"].items())
    body = "\n\n".join(
        [
            "## Conversation memory quality (LoCoMo)",
            setting(result),
            method(result),
            evidence_note(result["evidence"]),
            "Categories 1 to 4:",
            overall_table(result["systems"]),
            "By category:",
            category_table(result["systems"], questions),
            "By conversation (categories 1 to 4):",
            conversation_table(result["by_conversation"]),
            agreement(result["systems"]),
            f"Median latency over the run: {latency} (search: the answer's `took_ms`; context: "
            "the client's round trip of the request that answered, not the rate limit's "
            "waits).",
            *sweep_table(result["engram"].get("sweep")),
            *held_out_table(result["engram"].get("sweep_by_conversation")),
        ]
    )
    write_section("quality", body + "\n", before="<!-- bench-stall -->")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("file", type=Path, help="a LoCoMo file, such as locomo10.json")
    parser.add_argument("--conversations", type=int, default=None, help="only the first n")
    parser.add_argument("--url", help="a running Engram instead of embedded servers")
    parser.add_argument("--admin-key", default="soak-admin", help="with --url")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/ alone")
    parser.add_argument(
        "--sweep", action="store_true", help="also each default's neighbours (SWEEP), measured"
    )
    args = parser.parse_args()
    conversations, evidence = load_conversations(args.file, args.conversations)
    tallies: Tallies = {}
    if args.url:
        engram, stored = run_engram(
            args.url, args.admin_key, conversations, tallies, sweep=args.sweep
        )
    else:
        home = Path(tempfile.mkdtemp(prefix="engram-bench-quality-"))
        procs, url, _, servers = start_stack(home, free_port(), workers=1)
        try:
            engram, stored = run_engram(url, "soak-admin", conversations, tallies, sweep=args.sweep)
        finally:
            stop_stack(procs, servers)
    run_baselines(conversations, stored, tallies)
    questions = Counter(q.category for c in conversations for q in c.questions)
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()}-core",
        "backend": Settings.from_env().encoder.backend,
        "data": {
            "file": args.file.name,
            "sha256": hashlib.sha256(args.file.read_bytes()).hexdigest(),
            "conversations": len(conversations),
            "sample_ids": [c.sample_id for c in conversations],
            "sessions": sum(len(c.sessions) for c in conversations),
            "turns": sum(len(c.turns()) for c in conversations),
            "questions_by_category": {str(c): n for c, n in sorted(questions.items())},
            "questions_scored": sum(n for c, n in questions.items() if c in SCORED),
            "questions_adversarial": questions.get(5, 0),
        },
        "evidence": asdict(evidence),
        "k": K,
        "context_max_tokens": CONTEXT_TOKENS,
        "bm25": {"version": bm25s.__version__, "k1": BM25_K1, "b": BM25_B, "tokens": r"\w+"},
        "engram": engram,
        "systems": summarise(merged(tallies)),
        "by_conversation": by_conversation(tallies),
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        write_docs(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
