/** Documents, uploads and batches through the client, against the running Engram. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { InvalidRequestError, NotFoundError } from "@engram/client";
import { newUser, rejection } from "./support.js";

const GUIDE = [
  "# Bees",
  "",
  "Ann keeps three hives of bees behind the orchard.",
  "",
  "## Honey",
  "",
  "She harvests the honey in late August.",
].join("\n");

describe("documents", async () => {
  const { userId, engram } = await newUser("ts-doc");

  test("added with wait: ready, chunked, searchable, then deleted", async () => {
    const accepted = await engram.addDocuments(
      userId,
      [{ content: GUIDE, title: "bees.md", metadata: { kind: "guide" } }],
      { collection: "garden", wait: true },
    );
    const [document] = accepted.documents;
    assert.equal(document?.status, "ready");
    assert.equal(document?.collection, "garden");
    assert.equal(document?.batch_id, accepted.batch_id);

    const chunks = await engram.listChunks(userId, document!.id);
    assert.ok(chunks.length >= 1);
    assert.deepEqual(
      chunks.map((chunk) => chunk.chunk_index),
      chunks.map((_, index) => index),
    );
    assert.equal((await engram.getDocument(userId, document!.id)).chunk_count, chunks.length);

    const found = await engram.search(userId, { query: "when is the honey harvested?", types: ["chunk"], k: 1 });
    assert.equal(found.results[0]?.document_id, document!.id);
    assert.match(found.results[0]!.content, /August/);

    await engram.deleteDocument(userId, document!.id);
    assert.ok((await rejection(engram.getDocument(userId, document!.id))) instanceof NotFoundError);
  });

  test("added without wait: the batch is waited for until completed", async () => {
    const accepted = await engram.addDocuments(userId, [
      { content: "The boiler is serviced every October.", title: "boiler" },
      { content: "The roof was retiled in 2019.", title: "roof" },
    ]);
    const batch = await engram.waitForBatch(userId, accepted.batch_id, { intervalMs: 100 });
    assert.equal(batch.status, "completed");
    assert.deepEqual(batch.counts, { pending: 0, ready: 2, failed: 0, total: 2 });
    assert.equal((await engram.getBatch(userId, accepted.batch_id)).id, accepted.batch_id);
  });

  test("files uploaded: the type comes from the name; other types are a 422", async () => {
    const accepted = await engram.uploadFiles(
      userId,
      [
        { name: "notes.md", content: "# Notes\n\nThe spare key is under the blue pot." },
        new File(["<h1>Hours</h1><p>The shop opens at nine.</p><script>x()</script>"], "hours.html"),
        { name: "plain.txt", content: new TextEncoder().encode("Plain text, as bytes.") },
      ],
      { collection: "uploads", wait: true },
    );
    assert.deepEqual(
      accepted.documents.map((document) => [document.title, document.status, document.collection]),
      [
        ["notes.md", "ready", "uploads"],
        ["hours.html", "ready", "uploads"],
        ["plain.txt", "ready", "uploads"],
      ],
    );
    const [hours] = await engram.listChunks(userId, accepted.documents[1]!.id);
    assert.match(hours!.content, /# Hours/);
    assert.doesNotMatch(hours!.content, /x\(\)/);

    const error = await rejection(engram.uploadFiles(userId, [{ name: "photo.png", content: "not text" }]));
    assert.ok(error instanceof InvalidRequestError, String(error));
    assert.equal(error.status, 422);
  });

  test("listed to the end, filtered by collection", async () => {
    const uploads = await engram.listDocuments(userId, { collection: "uploads", limit: 2 }).toArray();
    assert.deepEqual(uploads.map((document) => document.title).sort(), ["hours.html", "notes.md", "plain.txt"]);
    const all = await engram.listDocuments(userId, { limit: 1 }).toArray();
    assert.equal(all.length, 5);
    assert.equal(new Set(all.map((document) => document.id)).size, 5);
  });
});
