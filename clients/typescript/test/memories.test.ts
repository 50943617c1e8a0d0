/** Memories, search and context through the client, against the running Engram. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";
import { NotFoundError, type Memory } from "@engram/client";
import { newUser, rejection } from "./support.js";

describe("memories", async () => {
  const { userId, engram } = await newUser("ts-mem");

  test("added with wait: answered in order, embedded, and a repeat is the same memory", async () => {
    const added = await engram.addMemories(
      userId,
      ["Alice drinks her coffee black.", { content: "Alice's cat is called Miso.", metadata: { topic: "pets" } }],
      { wait: true },
    );
    assert.deepEqual(
      added.map((memory) => [memory.content, memory.status, memory.duplicate]),
      [
        ["Alice drinks her coffee black.", "ready", false],
        ["Alice's cat is called Miso.", "ready", false],
      ],
    );
    assert.deepEqual(added[1]?.metadata, { topic: "pets" });
    const again = await engram.addMemories(userId, ["Alice drinks her coffee black."]);
    assert.equal(again[0]?.id, added[0]?.id);
    assert.equal(again[0]?.duplicate, true);
  });

  test("added without wait, then waited for: pending or ready at first, ready in the end", async () => {
    const added = await engram.addMemories(userId, ["Alice flies to Oslo on Friday."]);
    assert.ok(["pending", "ready"].includes(added[0]!.status));
    const settled = await engram.waitForMemories(userId, added.map((memory) => memory.id));
    assert.deepEqual(
      settled.map((memory) => [memory.id, memory.status]),
      [[added[0]!.id, "ready"]],
    );
  });

  test("read back by id, changed, and deleted", async () => {
    const [memory] = await engram.addMemories(userId, [{ content: "Alice owns a red bike.", importance: 0.3 }], {
      wait: true,
    });
    const id = memory!.id;
    assert.equal((await engram.getMemory(userId, id)).content, "Alice owns a red bike.");

    const kept = await engram.updateMemory(userId, id, { metadata: { colour: "red" }, importance: null });
    assert.deepEqual([kept.metadata, kept.importance, kept.status], [{ colour: "red" }, null, "ready"]);

    const changed = await engram.updateMemory(userId, id, { content: "Alice owns a blue bike." });
    assert.equal(changed.content, "Alice owns a blue bike.");
    const [embedded] = await engram.waitForMemories(userId, [id]);
    assert.equal(embedded?.status, "ready");
    const waited = await engram.updateMemory(userId, id, { content: "Alice owns a green bike.", wait: true });
    assert.equal(waited.status, "ready");

    await engram.deleteMemory(userId, id);
    const error = await rejection(engram.getMemory(userId, id));
    assert.ok(error instanceof NotFoundError, String(error));
    assert.equal(error.status, 404);
    assert.equal(error.code, "not_found");
  });

  test("replaced and deleted in one batch; listed by a metadata filter", async () => {
    const { userId: owner, engram: client } = await newUser("ts-replace");
    const id = randomUUID();
    await client.addMemories(owner, [{ id, content: "The gate code is 1234.", metadata: { kind: "code" } }]);
    const [kept] = await client.addMemories(owner, [{ content: "The shed is blue.", metadata: { kind: "shed" } }]);
    const replaced = await client.addMemories(
      owner,
      [{ id, content: "The gate code is 9876.", metadata: { kind: "code" } }],
      { replace: true, delete: [kept!.id], wait: true },
    );
    assert.deepEqual(
      replaced.map((memory) => [memory.id, memory.content, memory.status]),
      [[id, "The gate code is 9876.", "ready"]],
    );
    assert.ok((await rejection(client.getMemory(owner, kept!.id))) instanceof NotFoundError);

    const chore = { content: "Bins go out on Monday.", metadata: { kind: "chore" } };
    await client.addMemories(owner, ["A note without a kind.", chore]);
    const filter = { kind: { $in: ["code", "chore"] } };
    const found = await client.listMemories(owner, { filter, limit: 1 }).toArray();
    assert.deepEqual(
      found.map((memory) => memory.content),
      ["Bins go out on Monday.", "The gate code is 9876."],
    );
    const only = await client.addMemories(owner, [], { delete: [id] });
    assert.deepEqual(only, []);
    assert.deepEqual(
      (await client.listMemories(owner, { filter: { kind: "code" } }).toArray()).map((memory) => memory.id),
      [],
    );
  });

  test("listed to the end, a page at a time, newest first", async () => {
    const { userId: owner, engram: client } = await newUser("ts-list");
    const contents = Array.from({ length: 7 }, (_, i) => `Listed memory number ${i}.`);
    for (const content of contents) {
      await client.addMemories(owner, [content]); // one by one: each newer than the last
    }
    const listing = client.listMemories(owner, { limit: 3 });
    const pages: Memory[][] = [];
    for await (const page of listing.pages()) {
      pages.push(page);
    }
    assert.deepEqual(
      pages.map((page) => page.length),
      [3, 3, 1],
    );
    assert.deepEqual(
      pages.flat().map((memory) => memory.content),
      [...contents].reverse(),
    );
    const seen: string[] = [];
    for await (const memory of client.listMemories(owner, { limit: 2 })) {
      seen.push(memory.content);
    }
    assert.deepEqual(seen, [...contents].reverse());
    assert.equal((await client.listMemories(owner, { status: "failed" }).toArray()).length, 0);
  });

  test("searched by text, by filter, and in hybrid mode", async () => {
    const found = await engram.search(userId, { query: "what does Alice drink?", k: 1 });
    assert.equal(found.results[0]?.content, "Alice drinks her coffee black.");
    assert.equal(found.results[0]?.type, "memory");
    assert.ok(found.spaces.length >= 1);

    const pets = await engram.search(userId, { query: "drinks", filter: { topic: "pets" } });
    assert.deepEqual(
      pets.results.map((hit) => hit.content),
      ["Alice's cat is called Miso."],
    );
    const hybrid = await engram.search(userId, { query: "Miso", mode: "hybrid", k: 1 });
    assert.equal(hybrid.results[0]?.content, "Alice's cat is called Miso.");
  });

  test("context packs what was found as text for a prompt", async () => {
    const context = await engram.context(userId, { query: "What is the cat's name?", max_tokens: 200 });
    assert.match(context.text, /Miso/);
    assert.ok(context.tokens <= 200);
    assert.ok(context.memories.some((memory) => memory.content.includes("Miso")));
  });
});
