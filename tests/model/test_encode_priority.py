"""Within a worker process, interactive work is encoded before bulk work: a bulk batch is
encoded a slice at a time and lets an interactive encode go first between slices."""

from __future__ import annotations

import asyncio
import random

import numpy as np

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


def test_a_bulk_batch_stops_between_slices_when_asked(embedder):
    """Asked to stop (interactive work waits in the outbox), a bulk batch ends after the
    slice it is on: its answer holds the vectors of the texts it encoded, and no more."""
    texts = [f"bulk text number {n} about rivers" for n in range(3 * embed.BULK_SLICE)]
    asked = []

    async def stop() -> bool:
        asked.append(True)
        return len(asked) == 2  # before the third slice

    vectors = asyncio.run(embed._encode_in_turn(embedder, texts, "bulk", stop))
    assert vectors.shape == (2 * embed.BULK_SLICE, 384)
    np.testing.assert_allclose(vectors, embedder.encode(texts[: 2 * embed.BULK_SLICE]), atol=1e-5)
