"""Interactive work is encoded before bulk work: in a worker process the model's turns go
to interactive encodes first, and a bulk batch, encoded a slice at a time, stops for
interactive work waiting in the outbox and pauses while some is embedded elsewhere."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import numpy as np

from models.jobs.outbox import InteractiveWork
from models.types import Lane
from worker import embed

WORDS = ["river", "garden", "violin", "harbor", "winter", "piano", "lisbon", "chess", "bread"]


def test_an_interactive_encode_goes_before_the_rest_of_a_bulk_batch(embedder):
    rng = random.Random(3)
    texts = [" ".join(rng.choice(WORDS) for _ in range(150)) for _ in range(8 * embed.BULK_SLICE)]
    finished: list[str] = []

    async def scenario() -> tuple[np.ndarray, np.ndarray]:
        async def bulk() -> np.ndarray:
            vectors = await embed._encode_in_turn(embedder, texts, "bulk")
            finished.append("bulk")
            return vectors

        batch = asyncio.create_task(bulk())
        await asyncio.sleep(0.05)  # the batch's first slice is being encoded
        chat = await embed._encode_in_turn(embedder, ["what did alice order?"], "interactive")
        finished.append("interactive")
        return await batch, chat

    sliced, chat = asyncio.run(scenario())
    assert finished == ["interactive", "bulk"]
    # encoding in slices gives the vectors the whole batch would
    np.testing.assert_allclose(sliced, embedder.encode(texts), atol=1e-5)
    np.testing.assert_allclose(chat, embedder.encode(["what did alice order?"]), atol=1e-5)


def looks(*answers: InteractiveWork) -> tuple[Callable[[], Awaitable[InteractiveWork]], list[int]]:
    """A stand-in for the outbox's interactive lane: ``answers`` in turn, then quiet; and the
    number of looks taken."""
    taken = [0]

    async def look() -> InteractiveWork:
        taken[0] += 1
        return answers[taken[0] - 1] if taken[0] <= len(answers) else embed.QUIET

    return look, taken


WAITING = InteractiveWork(waiting=True, running=False)
RUNNING = InteractiveWork(waiting=False, running=True)


def test_a_bulk_batch_stops_between_slices_when_interactive_work_waits(embedder):
    """Interactive work waiting in the outbox ends a bulk batch before its next slice: its
    answer holds the vectors of the texts it encoded, and no more."""
    texts = [f"bulk text number {n} about rivers" for n in range(3 * embed.BULK_SLICE)]
    look, _ = looks(embed.QUIET, embed.QUIET, WAITING)  # before the third slice

    vectors = asyncio.run(embed._encode_in_turn(embedder, texts, "bulk", look))
    assert vectors.shape == (2 * embed.BULK_SLICE, 384)
    np.testing.assert_allclose(vectors, embedder.encode(texts[: 2 * embed.BULK_SLICE]), atol=1e-5)


def test_a_bulk_batch_pauses_while_interactive_work_is_embedded_elsewhere(embedder):
    texts = [f"bulk text number {n} about harbors" for n in range(2 * embed.BULK_SLICE)]
    # another process embeds a chat for three looks; before its first slice the batch
    # also finds one waiting that it may not stop for (it has encoded nothing yet)
    look, taken = looks(RUNNING, WAITING, RUNNING, RUNNING)

    vectors = asyncio.run(embed._encode_in_turn(embedder, texts, "bulk", look))
    assert taken[0] == 4 + 2  # a look before each slice, again after each pause
    np.testing.assert_allclose(vectors, embedder.encode(texts), atol=1e-5)


def test_a_bulk_batch_pauses_for_a_bounded_time_in_all(embedder, monkeypatch):
    """A claim that looks in flight for minutes (its worker was killed) cannot hold bulk
    work: after its pauses a batch goes on, and its first slice is always encoded."""
    monkeypatch.setattr(embed, "PAUSE_MAX_SECONDS", 5 * embed.PAUSE_SECONDS)
    texts = [f"bulk text number {n} about gardens" for n in range(2 * embed.BULK_SLICE)]

    async def forever_running() -> InteractiveWork:
        return RUNNING

    vectors = asyncio.run(embed._encode_in_turn(embedder, texts, "bulk", forever_running))
    np.testing.assert_allclose(vectors, embedder.encode(texts), atol=1e-5)

    async def forever_waiting() -> InteractiveWork:
        return WAITING

    vectors = asyncio.run(embed._encode_in_turn(embedder, texts, "bulk", forever_waiting))
    assert vectors.shape == (embed.BULK_SLICE, 384)  # the first slice, then it stops


def test_the_models_turns_go_to_interactive_encodes_first_and_survive_cancellation():
    async def scenario() -> list[str]:
        turns, order = embed.Turns(), []
        release = asyncio.Event()

        async def hold() -> None:
            async with turns.turn("bulk"):
                await release.wait()

        async def encode(name: str, lane: Lane) -> None:
            async with turns.turn(lane):
                order.append(name)

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        bulk = asyncio.create_task(encode("bulk", "bulk"))
        gone = asyncio.create_task(encode("gone", "interactive"))
        chat = asyncio.create_task(encode("chat", "interactive"))
        await asyncio.sleep(0)
        gone.cancel()  # a request cancelled while it waits gives up its place
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(holder, bulk, chat, gone, return_exceptions=True)
        async with turns.turn("bulk"):  # free again: taken at once
            order.append("after")
        return order

    assert asyncio.run(scenario()) == ["chat", "bulk", "after"]
